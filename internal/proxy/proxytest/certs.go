// Package proxytest holds test helpers for the proxy: a throwaway SPIFFE CA
// issuing P-256 SVIDs, a rotating Identity, and builders for the xDS
// resources of the Trellis contract.
package proxytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// CA is a test certificate authority for one trust domain.
type CA struct {
	TrustDomain spiffeid.TrustDomain
	Cert        *x509.Certificate
	key         *ecdsa.PrivateKey
}

// NewCA creates a self-signed root for trust domain td.
func NewCA(t testing.TB, td string) *CA {
	t.Helper()
	trust, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		t.Fatalf("trust domain: %v", err)
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{"trellis test"}, CommonName: "test root " + td},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{trust.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create root: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse root: %v", err)
	}
	return &CA{TrustDomain: trust, Cert: cert, key: key}
}

// Bundle returns the CA's trust bundle.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.TrustDomain, []*x509.Certificate{ca.Cert})
}

// SVID issues a leaf for the SPIFFE ID id (which must be in the CA's trust
// domain for peers to accept it).
func (ca *CA) SVID(t testing.TB, id string) *tls.Certificate {
	t.Helper()
	return ca.SVIDUntil(t, id, time.Now().Add(12*time.Hour))
}

// SVIDUntil issues a leaf for id that expires at notAfter.
func (ca *CA) SVIDUntil(t testing.TB, id string, notAfter time.Time) *tls.Certificate {
	t.Helper()
	sid, err := spiffeid.FromString(id)
	if err != nil {
		t.Fatalf("spiffe id: %v", err)
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{sid.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("create leaf: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse leaf: %v", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// Identity returns an Identity holding a fresh SVID for id and this CA's
// bundle.
func (ca *CA) Identity(t testing.TB, id string) *Identity {
	t.Helper()
	return &Identity{cert: ca.SVID(t, id), bundles: x509bundle.NewSet(ca.Bundle())}
}

// Identity is a rotatable proxy.Identity for tests.
type Identity struct {
	mu      sync.Mutex
	cert    *tls.Certificate
	bundles *x509bundle.Set
}

// Certificate returns the current SVID.
func (i *Identity) Certificate() (*tls.Certificate, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.cert, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (i *Identity) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.bundles.GetX509BundleForTrustDomain(td)
}

// Rotate replaces the SVID.
func (i *Identity) Rotate(cert *tls.Certificate) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.cert = cert
}

// ClientTLS returns a plain crypto/tls client config presenting cert and
// trusting ca, for tests that talk to an inbound listener directly.
func ClientTLS(cert *tls.Certificate, ca *CA, alpn ...string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := &tls.Config{RootCAs: pool, NextProtos: alpn, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true} //nolint:gosec // test client
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("key: %v", err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		t.Fatalf("serial: %v", err)
	}
	return n
}
