// Package ca is Trellis's certificate authority: it keeps the mesh's roots
// and turns sidecars' CSRs into SPIFFE X.509 SVIDs. The sidecar side (key,
// CSR, PEM chains, fingerprints) lives here too and needs no CA.
//
//	control plane                                          sidecar
//	─────────────                                          ───────
//	LoadOrCreate ◄──► store record CARoot trellis-system/root   NewKey ─► NewCSR(key, id)
//	                  {roots: [{cert, key, activeFrom,              │ (key never leaves)
//	                            trustedUntil}]}                     ▼
//	LoadOperator ◄─── --ca-cert/--ca-key/--ca-bundle files
//	     │
//	     ├─ Rotate: new root, trusted at once, signing after a delay;
//	     │          the old roots trusted until the end of the overlap
//	     ├─ Sign(csr, id, ttl) ──► [leaf, signer chain] ──► EncodeChainPEM / ParseChainPEM
//	     └─ Bundle / BundlePEM ──► every root still trusted (SDS "ROOTCA")
//
// A generated CA keeps its roots in the store. Which root signs is a matter
// of time, not of a flag someone must flip: the root with the latest
// activeFrom not in the future signs, and a root is trusted until its
// trustedUntil (or its expiry). So a rotation needs no timer, survives a
// control plane restart, and is tested with a fake clock.
package ca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trellis-mesh/trellis/internal/store"
)

// Where the roots live in the store.
const (
	RootKind      = "CARoot"
	RootNamespace = "trellis-system"
	RootName      = "root"
)

const (
	// DefaultTrustDomain is used when Options.TrustDomain is empty.
	DefaultTrustDomain = "cluster.local"
	// DefaultTTL is the leaf lifetime when neither Sign nor Options sets one.
	DefaultTTL = 24 * time.Hour
	// DefaultBundleRefresh is how often sidecars fetch the trust bundle.
	DefaultBundleRefresh = 30 * time.Second
	// clockSkew is how far before "now" a certificate becomes valid.
	clockSkew = time.Minute
)

// Options configure a CA. The zero value is valid.
type Options struct {
	TrustDomain string        // default "cluster.local"
	TTL         time.Duration // default leaf TTL 24h
	// BundleRefresh is how often sidecars fetch the trust bundle (default
	// 30 s). A rotated root starts signing only once every sidecar had the
	// time to fetch it.
	BundleRefresh time.Duration
	Now           func() time.Time // for tests; default time.Now
}

// CA signs workload certificates: with the active generated root (kept in
// the store), or with an operator's root or intermediate (read from files).
type CA struct {
	td      spiffeid.TrustDomain
	ttl     time.Duration
	refresh time.Duration
	now     func() time.Time

	store    store.Store // generated CA: where the roots live
	operator *issuer     // operator CA: the fixed signer (nil for a generated CA)

	mu    sync.Mutex // serialises Rotate
	roots atomic.Pointer[rootSet]
}

// rootSet is an immutable list of roots and the store revision it was read
// at or written with (0 for an operator CA).
type rootSet struct {
	roots    []root // ordered by activeFrom
	revision uint64
}

// LoadOrCreate loads the roots from the store or, on first start, creates a
// self-signed ECDSA P-256 root and persists it. A record written before
// rotation existed (one root) is read as a list of one. When two control
// planes start at once, both end up with the root that was stored first.
func LoadOrCreate(ctx context.Context, st store.Store, opts Options) (*CA, error) {
	td, opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	rec, err := st.Get(ctx, RootKind, RootNamespace, RootName)
	if err == nil {
		return fromRecord(rec, st, td, opts)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("load CA roots: %w", err)
	}

	now := opts.Now()
	cert, key, err := newRoot(td, now)
	if err != nil {
		return nil, err
	}
	roots := []root{{cert: cert, key: key, activeFrom: cert.NotBefore}}
	data, err := encodeRoots(roots)
	if err != nil {
		return nil, err
	}
	rec = store.Record{Kind: RootKind, Namespace: RootNamespace, Name: RootName, Data: data}
	if rec, err = st.Create(ctx, rec); err == nil {
		return newCA(td, opts, st, roots, rec.Revision), nil
	}
	if !errors.Is(err, store.ErrConflict) {
		return nil, fmt.Errorf("store new CA root: %w", err)
	}
	// Another control plane stored its root first: use that one.
	rec, err = st.Get(ctx, RootKind, RootNamespace, RootName)
	if err != nil {
		return nil, fmt.Errorf("load CA roots after creating one: %w", err)
	}
	return fromRecord(rec, st, td, opts)
}

func (o Options) withDefaults() (spiffeid.TrustDomain, Options, error) {
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	td, err := spiffeid.TrustDomainFromString(o.TrustDomain)
	if err != nil {
		return spiffeid.TrustDomain{}, o, fmt.Errorf("CA trust domain %q: %w", o.TrustDomain, err)
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.BundleRefresh <= 0 {
		o.BundleRefresh = DefaultBundleRefresh
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return td, o, nil
}

func newCA(td spiffeid.TrustDomain, opts Options, st store.Store, roots []root, revision uint64) *CA {
	c := &CA{td: td, ttl: opts.TTL, refresh: opts.BundleRefresh, now: opts.Now, store: st}
	c.roots.Store(&rootSet{roots: roots, revision: revision})
	return c
}

// fromRecord parses and checks stored roots: every root must belong to td,
// and one must be able to sign now.
func fromRecord(rec store.Record, st store.Store, td spiffeid.TrustDomain, opts Options) (*CA, error) {
	where := fmt.Sprintf("load CA roots %s/%s (revision %d)", rec.Namespace, rec.Name, rec.Revision)
	roots, err := decodeRoots(rec.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	now := opts.Now()
	for i, r := range roots {
		if err := checkRoot(r, td); err != nil {
			return nil, fmt.Errorf("%s: root %d (%s): %w", where, i+1, Fingerprint(r.cert)[:16], err)
		}
	}
	c := newCA(td, opts, st, roots, rec.Revision)
	if _, err := c.issuerAt(now); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return c, nil
}

// TrustDomain is the trust domain this CA signs for.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// TTL is the default leaf lifetime.
func (c *CA) TTL() time.Duration { return c.ttl }

// BundleRefresh is how often sidecars are told to fetch the trust bundle.
func (c *CA) BundleRefresh() time.Duration { return c.refresh }

// Operator reports whether the CA signs with operator-supplied files.
func (c *CA) Operator() bool { return c.operator != nil }

// trustedRoots are the roots in the bundle now.
func (c *CA) trustedRoots(now time.Time) []*x509.Certificate {
	set := c.roots.Load()
	out := make([]*x509.Certificate, 0, len(set.roots))
	for _, r := range set.roots {
		if r.trusted(now) {
			out = append(out, r.cert)
		}
	}
	return out
}

// Bundle is the trust bundle (every root still trusted) as a go-spiffe
// bundle. Each call returns a new bundle the caller may change.
func (c *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(c.td, c.trustedRoots(c.now()))
}

// BundlePEM is the trust bundle as PEM certificates, oldest root first.
func (c *CA) BundlePEM() []byte {
	var out []byte
	for _, cert := range c.trustedRoots(c.now()) {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw})...)
	}
	return out
}

// RootInfo describes one root for status output.
type RootInfo struct {
	Cert *x509.Certificate
	// HasKey: this CA holds the root's private key (a generated root that
	// signs, or will; keys of superseded roots are dropped).
	HasKey bool
	// ActiveFrom is when a generated root starts signing (zero for an
	// operator's root).
	ActiveFrom time.Time
	// TrustedUntil is when the root leaves the bundle: the end of a
	// rotation's overlap, or its expiry.
	TrustedUntil time.Time
	// Active: leaves issued now chain to this root.
	Active bool
	// Trusted: the root is in the bundle now.
	Trusted bool
}

// Roots describes every root the CA knows, trusted or not (yet), ordered by
// when they started signing.
func (c *CA) Roots() []RootInfo {
	now := c.now()
	var anchor *x509.Certificate
	if iss, err := c.issuerAt(now); err == nil {
		anchor = iss.root
	}
	set := c.roots.Load()
	out := make([]RootInfo, 0, len(set.roots))
	for _, r := range set.roots {
		out = append(out, RootInfo{
			Cert: r.cert, HasKey: r.key != nil || (c.operator != nil && c.operator.cert.Equal(r.cert)), ActiveFrom: r.activeFrom, TrustedUntil: r.trustEnd(),
			Active: anchor != nil && anchor.Equal(r.cert), Trusted: r.trusted(now),
		})
	}
	return out
}

// Signer is the certificate that signs leaves now (the active root, or the
// operator's root or intermediate) and the chain served after each leaf.
func (c *CA) Signer() (*x509.Certificate, []*x509.Certificate, error) {
	iss, err := c.issuerAt(c.now())
	if err != nil {
		return nil, nil, err
	}
	chain := make([]*x509.Certificate, 0, len(iss.chain))
	for _, der := range iss.chain {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("CA signer chain: %w", err)
		}
		chain = append(chain, cert)
	}
	return iss.cert, chain, nil
}
