package ca

import (
	"crypto"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestSign(t *testing.T) {
	web := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	tests := []struct {
		name         string
		opts         Options
		csr          func(t *testing.T) []byte
		id           spiffeid.ID
		ttl          time.Duration
		wantNotAfter time.Time
	}{
		{"default TTL", Options{}, func(t *testing.T) []byte { return mustCSR(t, mustKey(t), web) }, web, 0, t0.Add(24 * time.Hour)},
		{"explicit TTL", Options{}, func(t *testing.T) []byte { return mustCSR(t, mustKey(t), web) }, web, time.Hour, t0.Add(time.Hour)},
		{"negative TTL uses Options.TTL", Options{TTL: 2 * time.Hour}, func(t *testing.T) []byte { return mustCSR(t, mustKey(t), web) }, web, -time.Second, t0.Add(2 * time.Hour)},
		{"TTL capped by the root", Options{}, func(t *testing.T) []byte { return mustCSR(t, mustKey(t), web) }, web, 20 * 365 * 24 * time.Hour, t0.AddDate(10, 0, 0)},
		{"CSR subject and SANs ignored", Options{}, func(t *testing.T) []byte { return csrWithKey(t, mustKey(t)) }, web, 0, t0.Add(24 * time.Hour)},
		{"other trust domain configured", Options{TrustDomain: "prod.example"},
			func(t *testing.T) []byte { return mustCSR(t, mustKey(t), web) },
			mustID(t, "spiffe://prod.example/ns/payments/sa/api"), 0, t0.Add(24 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Now = fixedNow(t0)
			c := newTestCA(t, tt.opts)
			chain, err := c.Sign(tt.csr(t), tt.id, tt.ttl)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if len(chain) != 2 {
				t.Fatalf("chain has %d certificates, want leaf and root", len(chain))
			}
			if string(chain[1]) != string(activeRoot(t, c).Raw) {
				t.Errorf("chain[1] is not the root")
			}
			leaf, err := x509.ParseCertificate(chain[0])
			if err != nil {
				t.Fatalf("parse leaf: %v", err)
			}
			checkLeaf(t, leaf, tt.id, tt.wantNotAfter)
			// Verify at a time inside the leaf's validity.
			verifySVIDAt(t, chain, c, tt.id, t0.Add(time.Minute))
		})
	}
}

// checkLeaf checks the shape of an issued SVID.
func checkLeaf(t *testing.T, leaf *x509.Certificate, id spiffeid.ID, wantNotAfter time.Time) {
	t.Helper()
	if len(leaf.URIs) != 1 {
		t.Fatalf("leaf has %d URI SANs, want exactly 1", len(leaf.URIs))
	}
	if u := leaf.URIs[0]; u.Scheme != "spiffe" || u.String() != id.String() {
		t.Errorf("URI SAN = %s, want %s", u, id)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf has other SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.Subject.CommonName != "" || len(leaf.Subject.Organization) != 0 {
		t.Errorf("leaf subject = %q, want the CSR's subject ignored", leaf.Subject)
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		t.Errorf("basic constraints valid=%v CA=%v, want a non-CA", leaf.BasicConstraintsValid, leaf.IsCA)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage = %v, want DigitalSignature only", leaf.KeyUsage)
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if diff := cmp.Diff(wantEKU, leaf.ExtKeyUsage); diff != "" {
		t.Errorf("ext key usage (-want +got):\n%s", diff)
	}
	if want := t0.Add(-time.Minute); !leaf.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %v, want %v", leaf.NotBefore, want)
	}
	if !leaf.NotAfter.Equal(wantNotAfter) {
		t.Errorf("NotAfter = %v, want %v", leaf.NotAfter, wantNotAfter)
	}
	if n := leaf.SerialNumber; n.Sign() <= 0 || n.BitLen() > 128 {
		t.Errorf("serial %v, want a positive 128-bit number", n)
	}
}

func TestSignSerialsDiffer(t *testing.T) {
	c := newTestCA(t, Options{})
	id := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	csr := mustCSR(t, mustKey(t), id)
	seen := map[string]bool{}
	for range 20 {
		chain, err := c.Sign(csr, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(chain[0])
		if err != nil {
			t.Fatal(err)
		}
		if seen[leaf.SerialNumber.String()] {
			t.Fatalf("serial %v issued twice", leaf.SerialNumber)
		}
		seen[leaf.SerialNumber.String()] = true
	}
}

func TestSignRejects(t *testing.T) {
	c := newTestCA(t, Options{Now: fixedNow(t0)})
	web := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	good := mustCSR(t, mustKey(t), web)
	tests := []struct {
		name    string
		csr     []byte
		id      spiffeid.ID
		wantErr string
	}{
		{"foreign trust domain", good, mustID(t, "spiffe://evil.example/ns/default/sa/web"), `trust domain "evil.example" is not this CA's`},
		{"empty ID", good, spiffeid.ID{}, "SPIFFE ID is empty"},
		{"trust domain ID", good, mustID(t, "spiffe://cluster.local"), "no path"},
		{"bad CSR signature", badSignature(good), web, "CSR signature"},
		{"RSA key", csrWithKey(t, rsaKey(t)), web, "want ECDSA P-256"},
		{"P-384 key", csrWithKey(t, p384Key(t)), web, "want P-256"},
		{"empty CSR", nil, web, "CSR is empty"},
		{"garbage CSR", []byte("not a CSR"), web, "parse CSR"},
		{"certificate instead of CSR", activeRoot(t, c).Raw, web, "parse CSR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain, err := c.Sign(tt.csr, tt.id, 0)
			if err == nil {
				t.Fatalf("Sign succeeded with %d certificates, want an error", len(chain))
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestSignAfterRootExpiry(t *testing.T) {
	c := newTestCA(t, Options{Now: fixedNow(t0)})
	c.now = fixedNow(t0.AddDate(11, 0, 0))
	id := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	if _, err := c.Sign(mustCSR(t, mustKey(t), id), id, 0); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Sign after root expiry: error = %v, want one saying the root expired", err)
	}
}

func TestNewCSR(t *testing.T) {
	id := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	csr, err := x509.ParseCertificateRequest(mustCSR(t, mustKey(t), id))
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("CSR signature: %v", err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() {
		t.Errorf("CSR URIs = %v, want [%s]", csr.URIs, id)
	}
	if _, err := NewCSR(nil, id); err == nil {
		t.Errorf("NewCSR(nil key): no error")
	}
	if _, err := NewCSR(mustKey(t), spiffeid.ID{}); err == nil {
		t.Errorf("NewCSR(empty ID): no error")
	}
}

// FuzzSignCSR feeds arbitrary CSR bytes and service accounts to an
// operator intermediate CA: Sign must never panic, and whatever it issues
// must be an SVID for the requested identity (never the CSR's), for the
// CSR's own key, not a CA, chaining through the intermediate to the bundle.
func FuzzSignCSR(f *testing.F) {
	f.Add(mustCSR(f, mustKey(f), mustID(f, "spiffe://cluster.local/ns/default/sa/web")), "web")
	f.Add(csrWithKey(f, mustKey(f)), "admin")
	dir := f.TempDir()
	root := issueCA(f, caTemplate(f, "Fuzz Root", nil), nil)
	inter := issueCA(f, caTemplate(f, "Fuzz Intermediate", nil), root)
	c, err := LoadOperator(OperatorFiles{
		Cert: writeCerts(f, dir, "inter.pem", inter.cert, root.cert), Key: writeKey(f, dir, "inter.key", inter.key),
	}, Options{Now: fixedNow(t0)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, csr []byte, sa string) {
		id, err := WorkloadID(c.TrustDomain(), "default", sa)
		if err != nil {
			return
		}
		chain, err := c.Sign(csr, id, time.Hour)
		if err != nil {
			return
		}
		if len(chain) != 2 || string(chain[1]) != string(inter.cert.Raw) {
			t.Fatalf("chain of %d certificates, want [leaf, intermediate]", len(chain))
		}
		verifySVIDAt(t, chain, c, id, t0)
		leaf, err := x509.ParseCertificate(chain[0])
		if err != nil {
			t.Fatal(err)
		}
		checkLeaf(t, leaf, id, t0.Add(time.Hour))
		req, err := x509.ParseCertificateRequest(csr)
		if err != nil {
			t.Fatalf("Sign accepted a CSR that does not parse: %v", err)
		}
		if pub, ok := req.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
			t.Fatalf("the leaf's key is not the CSR's")
		}
	})
}
