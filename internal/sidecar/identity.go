package sidecar

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
)

const (
	// defaultBundleRefresh is used until the control plane says otherwise.
	defaultBundleRefresh = 30 * time.Second
	// maxSignerJitter bounds the delay before renewing a leaf whose signer
	// is no longer the CA's: soon, but not the whole fleet at once.
	maxSignerJitter = 3 * time.Second
	// maxSignerMismatches stops renewing for a signer change after this
	// many leaves in a row came from another issuer than announced.
	maxSignerMismatches = 2
	// maxRenewBackoff caps the wait between failed renewals;
	// urgentRenewBackoff when the certificate expires within a minute.
	maxRenewBackoff    = 30 * time.Second
	urgentRenewBackoff = 2 * time.Second
)

// identity owns the sidecar's private key, its current SVID and its trust
// bundle. It implements proxy.Identity: the proxy reads the certificate and
// bundle on every handshake (lock-free), so a rotation or a new bundle
// never touches open connections.
//
//	join ─► fetch (CSR ─► chain + bundle + signer)
//	rotate loop ─┬─ at about half-life ─────────────► fetch
//	             ├─ every bundle refresh ─► GET /v1/ca/bundle ─► new roots swapped in
//	             │                            └─ signer ≠ our leaf's issuer ─► fetch within a few seconds
//	             └─ failed fetch ─► retry with backoff; the old SVID serves until it expires
type identity struct {
	client    *api.Client
	namespace string
	workload  string
	logger    *slog.Logger

	key *ecdsa.PrivateKey

	mu    sync.Mutex // serialises writers of svid and trust
	svid  atomic.Pointer[svidState]
	trust atomic.Pointer[trustState]
}

// svidState is one installed SVID. Immutable once stored.
type svidState struct {
	cert   *tls.Certificate
	chain  []*x509.Certificate // leaf first
	issuer string              // fingerprint of the certificate that signed the leaf
	// mismatches counts consecutive leaves whose issuer was not the signer
	// the CA named with them (a race with a root's activation): a signer
	// change renews the leaf, but never in a loop.
	mismatches int
	received   time.Time
	renewAt    time.Time
	rotations  int
}

// trustState is one installed trust bundle. Immutable once stored.
type trustState struct {
	bundle  *x509bundle.Bundle
	roots   []*x509.Certificate
	updated time.Time // when the roots last changed
	signer  string    // what the CA signs with, as last heard
	refresh time.Duration
}

func newIdentity(client *api.Client, namespace, workload string, logger *slog.Logger) (*identity, error) {
	key, err := ca.NewKey()
	if err != nil {
		return nil, fmt.Errorf("make key: %w", err)
	}
	return &identity{client: client, namespace: namespace, workload: workload, logger: logger, key: key}, nil
}

// Certificate implements proxy.Identity.
func (id *identity) Certificate() (*tls.Certificate, error) {
	s := id.svid.Load()
	if s == nil {
		return nil, errors.New("no certificate yet")
	}
	return s.cert, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (id *identity) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	t := id.trust.Load()
	if t == nil {
		return nil, errors.New("no trust bundle yet")
	}
	return t.bundle.GetX509BundleForTrustDomain(td)
}

// Leaf returns the current leaf certificate, or nil.
func (id *identity) Leaf() *x509.Certificate {
	if s := id.svid.Load(); s != nil {
		return s.chain[0]
	}
	return nil
}

// Rotations counts certificates obtained after the first.
func (id *identity) Rotations() int {
	if s := id.svid.Load(); s != nil {
		return s.rotations
	}
	return 0
}

// fetch sends a CSR for the workload's identity and installs the answer:
// the chain once it verifies against the bundle that came with it.
func (id *identity) fetch(ctx context.Context, spiffeID spiffeid.ID) error {
	csr, err := ca.NewCSR(id.key, spiffeID)
	if err != nil {
		return fmt.Errorf("make CSR: %w", err)
	}
	resp, err := id.client.Sign(ctx, api.CertificateRequest{
		Namespace: id.namespace,
		Workload:  id.workload,
		CSR:       string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
	})
	if err != nil {
		return fmt.Errorf("sign CSR: %w", err)
	}
	chain, err := ca.ParseChainPEM([]byte(resp.Chain))
	if err != nil {
		return fmt.Errorf("parse issued chain: %w", err)
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffeID.String() {
		return fmt.Errorf("issued certificate does not carry %s", spiffeID)
	}
	roots, err := ca.ParseChainPEM([]byte(resp.Bundle))
	if err != nil {
		return fmt.Errorf("parse trust bundle: %w", err)
	}
	bundle := x509bundle.FromX509Authorities(spiffeID.TrustDomain(), roots)
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		raw[i] = c.Raw
	}
	if _, _, err := x509svid.Verify(chain, bundle); err != nil {
		return fmt.Errorf("issued certificate does not verify against the trust bundle: %w", err)
	}
	now := time.Now()
	next := &svidState{
		cert:     &tls.Certificate{Certificate: raw, PrivateKey: id.key, Leaf: leaf},
		chain:    chain,
		issuer:   issuerOf(leaf, chain[1:], roots),
		received: now,
		renewAt:  renewAt(leaf, now),
	}
	id.mu.Lock()
	prev := id.svid.Load()
	if prev != nil {
		next.rotations = prev.rotations + 1
	}
	if resp.Signer != "" && resp.Signer != next.issuer {
		next.mismatches = 1
		if prev != nil {
			next.mismatches += prev.mismatches
		}
	}
	id.svid.Store(next)
	id.installTrustLocked(spiffeID.TrustDomain(), roots, resp.Signer, time.Duration(resp.BundleRefresh), now)
	id.mu.Unlock()
	id.logger.Info("certificate installed", "identity", spiffeID.String(), "serial", leaf.SerialNumber.Text(16),
		"notAfter", leaf.NotAfter, "issuer", shortFP(next.issuer), "renewAt", next.renewAt)
	return nil
}

// refreshBundle polls the control plane for the trust bundle and the
// current signer. It reports whether the leaf should be renewed because
// another certificate signs now.
func (id *identity) refreshBundle(ctx context.Context, td spiffeid.TrustDomain) (renew bool, err error) {
	resp, err := id.client.Bundle(ctx)
	if err != nil {
		return false, fmt.Errorf("fetch trust bundle: %w", err)
	}
	roots, err := ca.ParseChainPEM([]byte(resp.Bundle))
	if err != nil {
		return false, fmt.Errorf("parse trust bundle: %w", err)
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	id.installTrustLocked(td, roots, resp.Signer, time.Duration(resp.BundleRefresh), time.Now())
	s := id.svid.Load()
	return s != nil && resp.Signer != "" && resp.Signer != s.issuer && s.mismatches < maxSignerMismatches, nil
}

// installTrustLocked swaps in a bundle whose roots changed, and records the
// signer and refresh period. id.mu is held.
func (id *identity) installTrustLocked(td spiffeid.TrustDomain, roots []*x509.Certificate, signer string, refresh time.Duration, now time.Time) {
	prev := id.trust.Load()
	next := &trustState{roots: roots, updated: now, signer: signer, refresh: clampRefresh(refresh)}
	if prev != nil && sameCerts(prev.roots, roots) {
		next.bundle, next.roots, next.updated = prev.bundle, prev.roots, prev.updated
	} else {
		next.bundle = x509bundle.FromX509Authorities(td, roots)
		if prev != nil {
			fps := make([]string, len(roots))
			for i, r := range roots {
				fps[i] = shortFP(ca.Fingerprint(r))
			}
			id.logger.Info("trust bundle updated", "roots", fps)
		}
	}
	id.trust.Store(next)
}

// expedite moves the next renewal to at, if that is sooner.
func (id *identity) expedite(at time.Time) {
	id.mu.Lock()
	defer id.mu.Unlock()
	s := id.svid.Load()
	if s == nil || !at.Before(s.renewAt) {
		return
	}
	next := *s
	next.renewAt = at
	id.svid.Store(&next)
}

func (id *identity) nextRenewal() time.Time {
	if s := id.svid.Load(); s != nil {
		return s.renewAt
	}
	return time.Now()
}

func (id *identity) refreshPeriod() time.Duration {
	if t := id.trust.Load(); t != nil {
		return t.refresh
	}
	return defaultBundleRefresh
}

// rotate keeps the SVID and the bundle fresh until ctx ends: it renews at
// about half-life, polls the bundle every refresh period, and renews within
// a few seconds when the CA's signer is no longer the one of the leaf (a
// root rotation). A failed renewal is retried with backoff; the old
// certificate stays in use until it expires, after which handshakes fail
// closed (never plaintext).
func (id *identity) rotate(ctx context.Context, spiffeID spiffeid.ID) {
	refresh := time.NewTimer(id.refreshPeriod())
	defer refresh.Stop()
	backoff := 500 * time.Millisecond
	refreshFailing := false // log the first failure of a run as a warning, the rest as debug
	for {
		renew := time.NewTimer(max(time.Until(id.nextRenewal()), 0))
		select {
		case <-ctx.Done():
			renew.Stop()
			return
		case <-refresh.C:
			renew.Stop()
			signerChanged, err := id.refreshBundle(ctx, spiffeID.TrustDomain())
			switch {
			case err != nil && ctx.Err() == nil && !refreshFailing:
				id.logger.Warn("trust bundle refresh failed; keeping the current bundle", "err", err)
			case err != nil:
				id.logger.Debug("trust bundle refresh failed again", "err", err)
			case refreshFailing:
				id.logger.Info("trust bundle refresh works again")
			}
			refreshFailing = err != nil
			if signerChanged {
				jitter := time.Duration(rand.Int64N(int64(min(maxSignerJitter, id.refreshPeriod())) + 1))
				id.expedite(time.Now().Add(jitter))
			}
			refresh.Reset(id.refreshPeriod())
		case <-renew.C:
			if err := id.fetch(ctx, spiffeID); err != nil {
				if ctx.Err() != nil {
					return
				}
				expires := id.Leaf().NotAfter
				id.logger.Warn("certificate renewal failed; retrying", "err", err, "in", backoff, "expires", expires)
				id.postpone(time.Now().Add(backoff))
				backoff = nextBackoff(backoff, time.Until(expires))
				continue
			}
			backoff = 500 * time.Millisecond
		}
	}
}

// nextBackoff doubles the wait between failed renewals up to
// maxRenewBackoff, but keeps it short once the certificate is about to
// expire or has: then the sidecar carries no traffic, and it should be
// back as soon as the control plane is.
func nextBackoff(backoff, remaining time.Duration) time.Duration {
	limit := maxRenewBackoff
	if remaining < 2*maxRenewBackoff {
		limit = urgentRenewBackoff
	}
	return min(backoff*2, limit)
}

// postpone sets the next renewal to at (after a failure).
func (id *identity) postpone(at time.Time) {
	id.mu.Lock()
	defer id.mu.Unlock()
	if s := id.svid.Load(); s != nil {
		next := *s
		next.renewAt = at
		id.svid.Store(&next)
	}
}

// renewAt is when to ask for the next certificate: at about half-life, with
// jitter so that a fleet issued together does not renew together. The life
// counts from when the certificate arrived, not from NotBefore: CAs backdate
// NotBefore for clock skew, which would make a short-lived certificate look
// half-used on arrival.
func renewAt(leaf *x509.Certificate, received time.Time) time.Time {
	start := received
	if leaf.NotBefore.After(start) {
		start = leaf.NotBefore
	}
	life := leaf.NotAfter.Sub(start)
	if life <= 0 {
		return received // already expired: renew now
	}
	jitter := time.Duration(rand.Int64N(int64(life/10) + 1))
	return start.Add(life/2 + jitter)
}

// issuerOf is the fingerprint of the certificate (among the chain's and the
// roots) whose key signed leaf; "" if none did.
func issuerOf(leaf *x509.Certificate, candidates ...[]*x509.Certificate) string {
	for _, list := range candidates {
		for _, c := range list {
			if leaf.CheckSignatureFrom(c) == nil {
				return ca.Fingerprint(c)
			}
		}
	}
	return ""
}

// clampRefresh keeps a control plane's refresh period sane.
func clampRefresh(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return defaultBundleRefresh
	case d < 500*time.Millisecond:
		return 500 * time.Millisecond
	case d > 10*time.Minute:
		return 10 * time.Minute
	}
	return d
}

func sameCerts(a, b []*x509.Certificate) bool {
	return slices.EqualFunc(a, b, func(x, y *x509.Certificate) bool { return x.Equal(y) })
}

func shortFP(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}
