package ca

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/trellis-mesh/trellis/internal/store"
)

// Errors of Rotate the admin API maps to 409 Conflict.
var (
	// ErrOperatorCA: the CA signs with operator files; rotating means
	// restarting the control plane with new ones.
	ErrOperatorCA = errors.New("the CA is operator-supplied (--ca-cert): rotate by restarting the control plane with the new files, keeping the old root trusted in --ca-bundle")
	// ErrRotationInProgress: the root of the last rotation does not sign yet.
	ErrRotationInProgress = errors.New("a rotation is in progress")
)

// OptionsError is a rotation refused for its options: unsafe durations
// (the admin API answers 400).
type OptionsError struct{ msg string }

func (e *OptionsError) Error() string { return e.msg }

func optionsErrorf(format string, args ...any) error {
	return &OptionsError{msg: fmt.Sprintf(format, args...)}
}

// RotateOptions shape a rotation. Zero durations take the defaults.
type RotateOptions struct {
	// ActivateAfter is how long the new root is only trusted before it
	// starts signing. Default: twice the bundle refresh period, so every
	// sidecar trusts the new root before any peer presents a leaf from it.
	ActivateAfter time.Duration
	// Overlap is how long the old roots stay trusted. Default and minimum:
	// the leaf TTL plus ActivateAfter, so every leaf the old root signed
	// has expired before the root leaves the bundle. (Renewing early is not
	// enough: a resumed TLS session keeps the peer certificate of its first
	// handshake, and Go resumes it until that certificate expires.)
	Overlap time.Duration
	// Force accepts an ActivateAfter shorter than the bundle refresh
	// period and an Overlap shorter than the minimum.
	Force bool
}

// Rotation says what Rotate did.
type Rotation struct {
	Root          RootInfo  // the new root
	ActivateAt    time.Time // when it starts signing
	OldTrustedEnd time.Time // when the previous roots leave the bundle
}

// Rotate adds a new root: trusted at once, signing after ActivateAfter; the
// current roots stay trusted until now+Overlap. Roots whose trust has ended
// are dropped, and so are the keys of roots that will never sign again.
func (c *CA) Rotate(ctx context.Context, opts RotateOptions) (*Rotation, error) {
	if c.operator != nil {
		return nil, ErrOperatorCA
	}
	activate, overlap, err := c.rotationTimes(opts)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	set := c.roots.Load()
	for _, r := range set.roots {
		if r.activeFrom.After(now) {
			return nil, fmt.Errorf("%w: root %s starts signing at %s; rotate again after that",
				ErrRotationInProgress, Fingerprint(r.cert)[:16], r.activeFrom.UTC().Format(time.RFC3339))
		}
	}
	cert, key, err := newRoot(c.td, now)
	if err != nil {
		return nil, err
	}
	activeAt, oldEnd := now.Add(activate), now.Add(overlap)
	current, err := c.issuerAt(now)
	if err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	roots := make([]root, 0, len(set.roots)+1)
	for _, r := range set.roots {
		if !r.trusted(now) {
			continue // its trust ended: gone from the bundle already
		}
		if r.trustEnd().After(oldEnd) {
			r.trustedUntil = oldEnd
		}
		if !r.cert.Equal(current.cert) {
			r.key = nil // superseded: it will never sign again
		}
		roots = append(roots, r)
	}
	roots = append(roots, root{cert: cert, key: key, activeFrom: activeAt})
	slices.SortStableFunc(roots, func(a, b root) int { return a.activeFrom.Compare(b.activeFrom) })
	data, err := encodeRoots(roots)
	if err != nil {
		return nil, err
	}
	rec, err := c.store.Put(ctx, store.Record{Kind: RootKind, Namespace: RootNamespace, Name: RootName, Revision: set.revision, Data: data})
	if err != nil {
		return nil, fmt.Errorf("store rotated CA roots: %w", err)
	}
	c.roots.Store(&rootSet{roots: roots, revision: rec.Revision})
	return &Rotation{
		Root:          RootInfo{Cert: cert, HasKey: true, ActiveFrom: activeAt, TrustedUntil: cert.NotAfter, Trusted: true},
		ActivateAt:    activeAt,
		OldTrustedEnd: oldEnd,
	}, nil
}

// rotationTimes applies the defaults and the safety checks.
func (c *CA) rotationTimes(opts RotateOptions) (activate, overlap time.Duration, err error) {
	if opts.ActivateAfter < 0 || opts.Overlap < 0 {
		return 0, 0, optionsErrorf("rotate: negative --activate-after or --overlap")
	}
	activate = opts.ActivateAfter
	if activate == 0 {
		activate = 2 * c.refresh
	}
	minOverlap := c.ttl + activate
	overlap = opts.Overlap
	if overlap == 0 {
		overlap = minOverlap
	}
	if overlap <= activate {
		// Even --force cannot allow this: no trusted root could sign in between.
		return 0, 0, optionsErrorf("rotate: --overlap %v must be longer than --activate-after %v: the old root would leave the bundle before the new one signs", overlap, activate)
	}
	if opts.Force {
		return activate, overlap, nil
	}
	if activate < c.refresh {
		return 0, 0, optionsErrorf("rotate: --activate-after %v is shorter than the sidecars' bundle refresh period (%v): a sidecar that has not fetched the new root yet would refuse leaves it signs; use at least %v (default %v), or --force",
			activate, c.refresh, c.refresh, 2*c.refresh)
	}
	if overlap < minOverlap {
		return 0, 0, optionsErrorf("rotate: --overlap %v is shorter than the leaf TTL (%v) plus --activate-after (%v): a leaf the old root signs just before the switch is valid for %v, and peers would refuse it (and TLS sessions resumed with it) once the old root leaves the bundle; use at least %v, or --force",
			overlap, c.ttl, activate, c.ttl, minOverlap)
	}
	return activate, overlap, nil
}
