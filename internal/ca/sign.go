package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// issuer is what signs leaves at one moment.
type issuer struct {
	cert  *x509.Certificate // signs the leaves
	key   crypto.Signer
	chain [][]byte // DER certificates served after each leaf
	// notAfter bounds every leaf: the earliest expiry in the chain up to
	// the root, and the root's end of trust.
	notAfter time.Time
	root     *x509.Certificate // the bundle root the leaves chain to
}

// issuerAt returns what signs at now: the operator's signer, or the
// generated root with the latest activeFrom not after now.
func (c *CA) issuerAt(now time.Time) (*issuer, error) {
	if c.operator != nil {
		if !now.Before(c.operator.notAfter) {
			return nil, fmt.Errorf("operator CA chain expired at %s", c.operator.notAfter.UTC().Format(time.RFC3339))
		}
		return c.operator, nil
	}
	var active *root
	set := c.roots.Load()
	for i := range set.roots {
		r := &set.roots[i]
		if !r.activeFrom.IsZero() && !r.activeFrom.After(now) {
			active = r
		}
	}
	switch {
	case active == nil:
		return nil, errors.New("no CA root can sign: none is active yet")
	case active.key == nil:
		return nil, fmt.Errorf("CA root %s signs now but its key is missing", Fingerprint(active.cert)[:16])
	case !now.Before(active.cert.NotAfter):
		return nil, fmt.Errorf("CA root expired at %s", active.cert.NotAfter.UTC().Format(time.RFC3339))
	case !active.trusted(now):
		return nil, fmt.Errorf("CA root %s signs now but left the bundle at %s", Fingerprint(active.cert)[:16], active.trustEnd().UTC().Format(time.RFC3339))
	}
	return &issuer{cert: active.cert, key: active.key, chain: [][]byte{active.cert.Raw}, notAfter: active.trustEnd(), root: active.cert}, nil
}

// Sign issues an X.509 SVID for id from a DER CSR. It checks the CSR's
// signature and requires an ECDSA P-256 key; the CSR's own subject and SANs
// are ignored. The leaf has exactly one URI SAN (id), is not a CA, and lives
// ttl (Options.TTL when ttl <= 0), capped so that it never outlives its
// chain nor its root's trust. It returns DER certificates: the leaf, then
// the signer's chain (the root for a generated CA; an operator's
// intermediates, without the root, which is in the bundle).
func (c *CA) Sign(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([][]byte, error) {
	if err := c.checkID(id); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	pub, err := parseCSR(csrDER)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", id, err)
	}
	now := c.now()
	iss, err := c.issuerAt(now)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", id, err)
	}
	leaf, err := c.signLeaf(iss, pub, id, ttl, now)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", id, err)
	}
	out := make([][]byte, 0, 1+len(iss.chain))
	out = append(out, leaf)
	for _, der := range iss.chain {
		out = append(out, bytes.Clone(der))
	}
	return out, nil
}

func (c *CA) signLeaf(iss *issuer, pub crypto.PublicKey, id spiffeid.ID, ttl time.Duration, now time.Time) ([]byte, error) {
	if ttl <= 0 {
		ttl = c.ttl
	}
	notAfter := now.Add(ttl)
	if notAfter.After(iss.notAfter) {
		notAfter = iss.notAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("CA chain expired at %s", iss.notAfter.UTC().Format(time.RFC3339))
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{id.URL()},
	}
	leaf, err := x509.CreateCertificate(rand.Reader, tmpl, iss.cert, pub, iss.key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	return leaf, nil
}

// checkID accepts workload IDs of this CA's trust domain.
func (c *CA) checkID(id spiffeid.ID) error {
	switch {
	case id.IsZero():
		return errors.New("SPIFFE ID is empty")
	case id.TrustDomain() != c.td:
		return fmt.Errorf("%s: trust domain %q is not this CA's %q", id, id.TrustDomain(), c.td)
	case id.Path() == "":
		return fmt.Errorf("%s: names the trust domain, not a workload (no path)", id)
	}
	return nil
}

// parseCSR returns the CSR's public key once its signature checks out and
// it is ECDSA P-256.
func parseCSR(der []byte) (*ecdsa.PublicKey, error) {
	if len(der) == 0 {
		return nil, errors.New("CSR is empty")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR signature: %w", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("CSR key is %s (%T), want ECDSA P-256", csr.PublicKeyAlgorithm, csr.PublicKey)
	}
	if pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("CSR key is ECDSA %s, want P-256", pub.Curve.Params().Name)
	}
	return pub, nil
}
