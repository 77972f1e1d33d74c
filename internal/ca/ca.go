// Package ca is Trellis's certificate authority: it keeps one root in the
// store and turns sidecars' CSRs into SPIFFE X.509 SVIDs. The sidecar side
// (key, CSR, PEM chains) lives here too and needs no CA.
//
//	control plane                                   sidecar
//	─────────────                                   ───────
//	LoadOrCreate ◄── store record CARoot             NewKey ─► NewCSR(key, id)
//	     │            trellis-system/root                          │ (key never leaves)
//	     ▼                                                         ▼
//	   CA.Sign(csr, id, ttl) ──► [leaf DER, root DER] ──► EncodeChainPEM / ParseChainPEM
//	   CA.Bundle / BundlePEM ──► trust bundle (SDS "ROOTCA")
package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trellis-mesh/trellis/internal/store"
)

// Where the root lives in the store.
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
	// clockSkew is how far before "now" a certificate becomes valid.
	clockSkew = time.Minute
)

// Options configure a CA. The zero value is valid.
type Options struct {
	TrustDomain string           // default "cluster.local"
	TTL         time.Duration    // default leaf TTL 24h
	Now         func() time.Time // for tests; default time.Now
}

// CA signs workload certificates with a root kept in the store.
type CA struct {
	td      spiffeid.TrustDomain
	root    *x509.Certificate
	rootDER []byte
	signer  crypto.Signer
	ttl     time.Duration
	now     func() time.Time
}

// LoadOrCreate loads the root CA from the store or, on first start, creates
// a self-signed ECDSA P-256 root and persists it. When two control planes
// start at once, both end up with the root that was stored first.
func LoadOrCreate(ctx context.Context, st store.Store, opts Options) (*CA, error) {
	td, opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	rec, err := st.Get(ctx, RootKind, RootNamespace, RootName)
	if err == nil {
		return fromRecord(rec, td, opts)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("load CA root: %w", err)
	}

	cert, key, err := newRoot(td, opts.Now())
	if err != nil {
		return nil, err
	}
	data, err := encodeRoot(cert, key)
	if err != nil {
		return nil, err
	}
	rec = store.Record{Kind: RootKind, Namespace: RootNamespace, Name: RootName, Data: data}
	if _, err = st.Create(ctx, rec); err == nil {
		return newCA(td, cert, key, opts), nil
	}
	if !errors.Is(err, store.ErrConflict) {
		return nil, fmt.Errorf("store new CA root: %w", err)
	}
	// Another control plane stored its root first: use that one.
	rec, err = st.Get(ctx, RootKind, RootNamespace, RootName)
	if err != nil {
		return nil, fmt.Errorf("load CA root after creating it: %w", err)
	}
	return fromRecord(rec, td, opts)
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
	if o.Now == nil {
		o.Now = time.Now
	}
	return td, o, nil
}

func newCA(td spiffeid.TrustDomain, root *x509.Certificate, key crypto.Signer, opts Options) *CA {
	return &CA{td: td, root: root, rootDER: root.Raw, signer: key, ttl: opts.TTL, now: opts.Now}
}

// fromRecord parses and checks a stored root.
func fromRecord(rec store.Record, td spiffeid.TrustDomain, opts Options) (*CA, error) {
	cert, key, err := decodeRoot(rec.Data)
	if err != nil {
		return nil, fmt.Errorf("load CA root %s/%s (revision %d): %w", rec.Namespace, rec.Name, rec.Revision, err)
	}
	if err := checkRoot(cert, key, td, opts.Now()); err != nil {
		return nil, fmt.Errorf("load CA root %s/%s (revision %d): %w", rec.Namespace, rec.Name, rec.Revision, err)
	}
	return newCA(td, cert, key, opts), nil
}

// checkRoot verifies that a loaded root can sign for td.
func checkRoot(cert *x509.Certificate, key crypto.Signer, td spiffeid.TrustDomain, now time.Time) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("certificate is not a CA")
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("certificate lacks the CertSign key usage")
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("private key does not match the certificate")
	}
	for _, u := range cert.URIs {
		id, err := spiffeid.FromURI(u)
		if err != nil {
			continue // not a SPIFFE ID: allowed on a brought-in root
		}
		if id.TrustDomain() != td {
			return fmt.Errorf("root is for trust domain %q, this CA is configured for %q", id.TrustDomain(), td)
		}
	}
	if !now.Before(cert.NotAfter) {
		return fmt.Errorf("root expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// TrustDomain is the trust domain this CA signs for.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// Bundle is the trust bundle (the root) as a go-spiffe bundle. Each call
// returns a new bundle the caller may change.
func (c *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(c.td, []*x509.Certificate{c.root})
}

// BundlePEM is the trust bundle as PEM certificates.
func (c *CA) BundlePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: c.rootDER})
}
