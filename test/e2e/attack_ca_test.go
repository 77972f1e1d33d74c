package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// attackCA is the mesh's root CA, made by the test so that it can sign
// leaves with any defect; the control plane gets it as an operator CA.
type attackCA struct {
	root *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newAttackCA(t testing.TB) *attackCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	td, _ := url.Parse("spiffe://cluster.local")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{Organization: []string{"Trellis"}, CommonName: "attack test root"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLen: 1,
		URIs: []*url.URL{td},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &attackCA{root: root, key: key, pool: pool}
}

func (c *attackCA) pems(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.root.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// install makes m's control plane (not started yet) use this root, as an
// operator-supplied CA (--ca-cert, --ca-key).
func (c *attackCA) install(t testing.TB, m *mesh) {
	t.Helper()
	certPEM, keyPEM := c.pems(t)
	m.controlArg = append(m.controlArg,
		"--ca-cert", writeFile(t, "root.pem", string(certPEM)), "--ca-key", writeFile(t, "root-key.pem", string(keyPEM)))
}

// checkInUse fails the test unless the mesh's certificates chain to this
// root: every leaf attack would otherwise prove nothing.
func (c *attackCA) checkInUse(t *testing.T, m *mesh) {
	t.Helper()
	cert, _ := meshCert(t, m, "ca-check", "client")
	if err := cert.Leaf.CheckSignatureFrom(c.root); err != nil {
		t.Fatalf("the control plane does not sign with the test's root: %v", err)
	}
}

// leafSpec describes a leaf certificate to sign. Zero values give a valid
// SVID: one URI SAN, not a CA, valid for an hour.
type leafSpec struct {
	uris      []string
	dns       []string
	isCA      bool
	notBefore time.Time
	notAfter  time.Time
}

// leaf signs a leaf for spec with the mesh root.
func (c *attackCA) leaf(t testing.TB, spec leafSpec) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: spec.isCA,
		DNSNames: spec.dns,
	}
	if spec.isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if !spec.notBefore.IsZero() {
		tmpl.NotBefore = spec.notBefore
	}
	if !spec.notAfter.IsZero() {
		tmpl.NotAfter = spec.notAfter
	}
	for _, s := range spec.uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, c.root.Raw}, PrivateKey: key, Leaf: leaf}
}

// verifyServer checks, as a mesh client would, that the server presents an
// SVID of the mesh with the SPIFFE ID want.
func (c *attackCA) verifyServer(want string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no server certificate")
		}
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
			return fmt.Errorf("server is %v, want %s", leaf.URIs, want)
		}
		return nil
	}
}

// peer is a genuine mesh client certificate for id.
func (c *attackCA) peer(t testing.TB, id string) tls.Certificate {
	return c.leaf(t, leafSpec{uris: []string{id}})
}
