package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"

	"github.com/trellis-mesh/trellis/internal/store/embedded"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }

// openStore opens an embedded store in a temporary directory.
func openStore(t testing.TB, dir string) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(filepath.Join(dir, "trellis.db"), nil)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func mustID(t testing.TB, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatalf("SPIFFE ID %q: %v", s, err)
	}
	return id
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func mustCSR(t testing.TB, key *ecdsa.PrivateKey, id spiffeid.ID) []byte {
	t.Helper()
	der, err := NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// csrWithKey makes a CSR signed by any key, with a subject and SANs of its
// own that Sign must ignore.
func csrWithKey(t testing.TB, key any) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "admin", Organization: []string{"evil"}},
		DNSNames:       []string{"example.com"},
		IPAddresses:    []net.IP{net.IPv4(127, 0, 0, 1)},
		EmailAddresses: []string{"root@example.com"},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "other.test", Path: "/ns/x/sa/y"}},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func p384Key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// badSignature returns der with the last byte of its signature flipped.
func badSignature(der []byte) []byte {
	out := append([]byte(nil), der...)
	out[len(out)-1] ^= 0xff
	return out
}

// legacyRootData is a CARoot record as written before rotation existed
// (one root, no list), for td, created at now.
func legacyRootData(t testing.TB, td string, now time.Time) []byte {
	t.Helper()
	cert, key, err := newRoot(spiffeid.RequireTrustDomainFromString(td), now)
	if err != nil {
		t.Fatal(err)
	}
	data, err := encodeRoots([]root{{cert: cert, key: key}})
	if err != nil {
		t.Fatal(err)
	}
	var list storedRoots
	mustUnmarshal(t, data, &list)
	return mustMarshal(t, storedRoots{Cert: list.Roots[0].Cert, Key: list.Roots[0].Key})
}

// activeRoot is the root that signs now.
func activeRoot(t testing.TB, c *CA) *x509.Certificate {
	t.Helper()
	iss, err := c.issuerAt(c.now())
	if err != nil {
		t.Fatal(err)
	}
	return iss.root
}

func mustUnmarshal(t testing.TB, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// verifySVID checks chain with go-spiffe against c's bundle and expects id.
func verifySVID(t testing.TB, chain [][]byte, c *CA, want spiffeid.ID) {
	t.Helper()
	got, _, err := x509svid.ParseAndVerify(chain, c.Bundle())
	if err != nil {
		t.Fatalf("x509svid.ParseAndVerify: %v", err)
	}
	if got != want {
		t.Errorf("verified ID = %s, want %s", got, want)
	}
}

// verifySVIDAt is verifySVID at a given time.
func verifySVIDAt(t testing.TB, chain [][]byte, c *CA, want spiffeid.ID, at time.Time) {
	t.Helper()
	got, _, err := x509svid.ParseAndVerify(chain, c.Bundle(), x509svid.WithTime(at))
	if err != nil {
		t.Fatalf("x509svid.ParseAndVerify: %v", err)
	}
	if got != want {
		t.Errorf("verified ID = %s, want %s", got, want)
	}
}
