package ca

import (
	"bytes"
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

// Sign issues an X.509 SVID for id from a DER CSR. It checks the CSR's
// signature and requires an ECDSA P-256 key; the CSR's own subject and SANs
// are ignored. The leaf has exactly one URI SAN (id), is not a CA, and lives
// ttl (Options.TTL when ttl <= 0), capped at the root's expiry. It returns
// DER certificates: the leaf, then the root.
func (c *CA) Sign(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([][]byte, error) {
	if err := c.checkID(id); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	pub, err := parseCSR(csrDER)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", id, err)
	}
	now := c.now()
	if ttl <= 0 {
		ttl = c.ttl
	}
	notAfter := now.Add(ttl)
	if notAfter.After(c.root.NotAfter) {
		notAfter = c.root.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("sign %s: CA root expired at %s", id, c.root.NotAfter.UTC().Format(time.RFC3339))
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", id, err)
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
	leaf, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, pub, c.signer)
	if err != nil {
		return nil, fmt.Errorf("sign %s: create certificate: %w", id, err)
	}
	return [][]byte{leaf, bytes.Clone(c.rootDER)}, nil
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
