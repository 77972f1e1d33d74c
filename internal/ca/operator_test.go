package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// pkiCert is a CA certificate made for a test, with its key.
type pkiCert struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// caTemplate is a valid CA template around t0; mutate changes it.
func caTemplate(t testing.TB, cn string, mutate func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	serial, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Example Corp"}, CommonName: cn},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if mutate != nil {
		mutate(tmpl)
	}
	return tmpl
}

// issueCA makes a CA certificate from tmpl, signed by parent (nil: self-signed).
func issueCA(t testing.TB, tmpl *x509.Certificate, parent *pkiCert) *pkiCert {
	t.Helper()
	key := mustKey(t)
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pkiCert{cert: cert, key: key}
}

// writePEM writes certificates (or a key) to a file in dir and returns its path.
func writeCerts(t testing.TB, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	var data []byte
	for _, c := range certs {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return writeBytes(t, dir, name, data)
}

func writeKey(t testing.TB, dir, name string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writeBytes(t, dir, name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func writeBytes(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOperatorCA: an operator root or intermediate signs leaves that carry
// the intermediates and verify against a bundle holding only the roots.
func TestOperatorCA(t *testing.T) {
	dir := t.TempDir()
	root := issueCA(t, caTemplate(t, "Example Root", nil), nil)
	otherRoot := issueCA(t, caTemplate(t, "Example Old Root", nil), nil)
	inter := issueCA(t, caTemplate(t, "Example Mesh Intermediate", func(c *x509.Certificate) {
		c.URIs = []*url.URL{{Scheme: "spiffe", Host: "cluster.local"}}
	}), root)
	mid := issueCA(t, caTemplate(t, "Example Issuing", nil), root)
	leafCA := issueCA(t, caTemplate(t, "Example Mesh Issuing", nil), mid)
	tests := []struct {
		name         string
		files        OperatorFiles
		wantChain    []*x509.Certificate // after the leaf
		wantBundle   []*x509.Certificate
		wantAnchor   *x509.Certificate
		wantNotAfter time.Time
	}{
		{"self-signed root", OperatorFiles{Cert: writeCerts(t, dir, "root.pem", root.cert), Key: writeKey(t, dir, "root.key", root.key)},
			[]*x509.Certificate{root.cert}, []*x509.Certificate{root.cert}, root.cert, t0.Add(24 * time.Hour)},
		{"intermediate, root in the bundle", OperatorFiles{
			Cert: writeCerts(t, dir, "inter.pem", inter.cert), Key: writeKey(t, dir, "inter.key", inter.key),
			Bundle: writeCerts(t, dir, "bundle.pem", root.cert)},
			[]*x509.Certificate{inter.cert}, []*x509.Certificate{root.cert}, root.cert, t0.Add(24 * time.Hour)},
		{"intermediate, root last in the chain file", OperatorFiles{
			Cert: writeCerts(t, dir, "inter-root.pem", inter.cert, root.cert), Key: writeKey(t, dir, "inter2.key", inter.key)},
			[]*x509.Certificate{inter.cert}, []*x509.Certificate{root.cert}, root.cert, t0.Add(24 * time.Hour)},
		{"two levels, old root kept trusted", OperatorFiles{
			Cert: writeCerts(t, dir, "two.pem", leafCA.cert, mid.cert), Key: writeKey(t, dir, "two.key", leafCA.key),
			Bundle: writeCerts(t, dir, "both.pem", otherRoot.cert, root.cert)},
			[]*x509.Certificate{leafCA.cert, mid.cert}, []*x509.Certificate{otherRoot.cert, root.cert}, root.cert, t0.Add(24 * time.Hour)},
	}
	id := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadOperator(tt.files, Options{Now: fixedNow(t0)})
			if err != nil {
				t.Fatalf("LoadOperator: %v", err)
			}
			chain, err := c.Sign(mustCSR(t, mustKey(t), id), id, 0)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if len(chain) != 1+len(tt.wantChain) {
				t.Fatalf("chain of %d certificates, want leaf + %d", len(chain), len(tt.wantChain))
			}
			for i, want := range tt.wantChain {
				if string(chain[1+i]) != string(want.Raw) {
					t.Errorf("chain[%d] is not %s", 1+i, want.Subject)
				}
			}
			bundle := c.Bundle().X509Authorities()
			if len(bundle) != len(tt.wantBundle) {
				t.Fatalf("bundle has %d roots, want %d", len(bundle), len(tt.wantBundle))
			}
			for i, want := range tt.wantBundle {
				if !bundle[i].Equal(want) {
					t.Errorf("bundle[%d] = %s, want %s", i, bundle[i].Subject, want.Subject)
				}
			}
			leaf, err := x509.ParseCertificate(chain[0])
			if err != nil {
				t.Fatal(err)
			}
			checkLeaf(t, leaf, id, tt.wantNotAfter)
			if _, _, err := x509svid.ParseAndVerify(chain, c.Bundle(), x509svid.WithTime(t0)); err != nil {
				t.Errorf("leaf does not verify against the bundle: %v", err)
			}
			var active int
			for _, r := range c.Roots() {
				if r.Active {
					active++
					if !r.Cert.Equal(tt.wantAnchor) {
						t.Errorf("active root %s, want %s", r.Cert.Subject, tt.wantAnchor.Subject)
					}
				}
			}
			if active != 1 {
				t.Errorf("%d active roots, want 1", active)
			}
			if _, err := c.Rotate(context.Background(), RotateOptions{}); !errors.Is(err, ErrOperatorCA) {
				t.Errorf("Rotate on an operator CA: %v, want ErrOperatorCA", err)
			}
		})
	}
}

// TestOperatorLeafCappedByChain: no leaf outlives the intermediate.
func TestOperatorLeafCappedByChain(t *testing.T) {
	dir := t.TempDir()
	root := issueCA(t, caTemplate(t, "Root", nil), nil)
	inter := issueCA(t, caTemplate(t, "Short Intermediate", func(c *x509.Certificate) { c.NotAfter = t0.Add(2 * time.Hour) }), root)
	c, err := LoadOperator(OperatorFiles{
		Cert: writeCerts(t, dir, "i.pem", inter.cert, root.cert), Key: writeKey(t, dir, "i.key", inter.key),
	}, Options{Now: fixedNow(t0)})
	if err != nil {
		t.Fatal(err)
	}
	id := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	chain, err := c.Sign(mustCSR(t, mustKey(t), id), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(chain[0])
	if want := t0.Add(2 * time.Hour); !leaf.NotAfter.Equal(want) {
		t.Errorf("leaf NotAfter %v, want the intermediate's %v", leaf.NotAfter, want)
	}
}

// TestOperatorRejects: bad files are refused with a reason naming the file.
func TestOperatorRejects(t *testing.T) {
	dir := t.TempDir()
	root := issueCA(t, caTemplate(t, "Root", nil), nil)
	inter := issueCA(t, caTemplate(t, "Intermediate", nil), root)
	strangerRoot := issueCA(t, caTemplate(t, "Stranger Root", nil), nil)
	pathLenZeroRoot := issueCA(t, caTemplate(t, "PathLen0 Root", func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 0, true }), nil)
	underPathLenZero := issueCA(t, caTemplate(t, "Too Deep", nil), pathLenZeroRoot)
	notCA := issueCA(t, caTemplate(t, "Not A CA", func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature }), root)
	noCertSign := issueCA(t, caTemplate(t, "No CertSign", func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCRLSign }), root)
	expired := issueCA(t, caTemplate(t, "Expired", func(c *x509.Certificate) { c.NotAfter = t0.Add(-time.Minute) }), root)
	future := issueCA(t, caTemplate(t, "Future", func(c *x509.Certificate) { c.NotBefore = t0.Add(time.Hour) }), root)
	otherTD := issueCA(t, caTemplate(t, "Other TD", func(c *x509.Certificate) {
		c.URIs = []*url.URL{{Scheme: "spiffe", Host: "evil.example"}}
	}), root)

	rootPEM := writeCerts(t, dir, "root.pem", root.cert)
	interKey := writeKey(t, dir, "inter.key", inter.key)
	tests := []struct {
		name    string
		files   OperatorFiles
		wantErr []string
	}{
		{"key of another certificate", OperatorFiles{Cert: writeCerts(t, dir, "a.pem", inter.cert), Key: writeKey(t, dir, "root.key", root.key), Bundle: rootPEM},
			[]string{"--ca-key", "root.key", "does not match"}},
		{"not a CA", OperatorFiles{Cert: writeCerts(t, dir, "notca.pem", notCA.cert), Key: writeKey(t, dir, "notca.key", notCA.key), Bundle: rootPEM},
			[]string{"--ca-cert", "notca.pem", "not a CA"}},
		{"no CertSign", OperatorFiles{Cert: writeCerts(t, dir, "nocs.pem", noCertSign.cert), Key: writeKey(t, dir, "nocs.key", noCertSign.key), Bundle: rootPEM},
			[]string{"nocs.pem", "CertSign"}},
		{"expired", OperatorFiles{Cert: writeCerts(t, dir, "exp.pem", expired.cert), Key: writeKey(t, dir, "exp.key", expired.key), Bundle: rootPEM},
			[]string{"exp.pem", "expired at"}},
		{"not yet valid", OperatorFiles{Cert: writeCerts(t, dir, "fut.pem", future.cert), Key: writeKey(t, dir, "fut.key", future.key), Bundle: rootPEM},
			[]string{"fut.pem", "not valid before"}},
		{"other trust domain", OperatorFiles{Cert: writeCerts(t, dir, "td.pem", otherTD.cert), Key: writeKey(t, dir, "td.key", otherTD.key), Bundle: rootPEM},
			[]string{"td.pem", `certificate is for trust domain "evil.example"`}},
		{"chain in the wrong order", OperatorFiles{Cert: writeCerts(t, dir, "order.pem", root.cert, inter.cert), Key: writeKey(t, dir, "order.key", root.key)},
			[]string{"order.pem", "is not signed by certificate 2", "signing CA first"}},
		{"intermediate without its root", OperatorFiles{Cert: writeCerts(t, dir, "alone.pem", inter.cert), Key: interKey},
			[]string{"alone.pem", "not self-signed", "--ca-bundle"}},
		{"bundle of another root", OperatorFiles{Cert: writeCerts(t, dir, "i.pem", inter.cert), Key: interKey, Bundle: writeCerts(t, dir, "stranger.pem", strangerRoot.cert)},
			[]string{"i.pem", "does not chain to a root of --ca-bundle", "stranger.pem"}},
		{"path length forbids the intermediate", OperatorFiles{Cert: writeCerts(t, dir, "deep.pem", underPathLenZero.cert, pathLenZeroRoot.cert), Key: writeKey(t, dir, "deep.key", underPathLenZero.key)},
			[]string{"deep.pem"}},
		{"expired root in the bundle", OperatorFiles{Cert: writeCerts(t, dir, "i2.pem", inter.cert), Key: interKey,
			Bundle: writeCerts(t, dir, "oldbundle.pem", root.cert, issueCA(t, caTemplate(t, "Old", func(c *x509.Certificate) { c.NotAfter = t0.Add(-time.Hour) }), nil).cert)},
			[]string{"--ca-bundle", "oldbundle.pem", "certificate 2", "expired"}},
		{"key file is a certificate", OperatorFiles{Cert: rootPEM, Key: rootPEM}, []string{"--ca-key", "root.pem", `"CERTIFICATE"`}},
		{"encrypted key", OperatorFiles{Cert: rootPEM, Key: writeBytes(t, dir, "enc.key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}))},
			[]string{"enc.key", "encrypted"}},
		{"cert file is not PEM", OperatorFiles{Cert: writeBytes(t, dir, "junk.pem", []byte("hello")), Key: interKey}, []string{"--ca-cert", "junk.pem", "not PEM"}},
		{"missing file", OperatorFiles{Cert: filepath.Join(dir, "nope.pem"), Key: interKey}, []string{"--ca-cert", "nope.pem", "no such file"}},
		{"key without cert", OperatorFiles{Key: interKey}, []string{"go together"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadOperator(tt.files, Options{Now: fixedNow(t0)})
			if err == nil {
				t.Fatal("LoadOperator accepted the files")
			}
			t.Log(err)
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestParseKeyPEM(t *testing.T) {
	key := mustKey(t)
	sec1, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	rsaK := rsaKey(t)
	good := map[string][]byte{
		"PKCS#8": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		"SEC 1 with parameters": append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...),
		"PKCS#1": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaK)}),
	}
	for name, data := range good {
		if _, err := ParseKeyPEM(data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := map[string]string{
		"empty":      "no private key",
		"two keys":   string(good["PKCS#8"]) + string(good["PKCS#8"]),
		"trailing":   string(good["PKCS#8"]) + "junk",
		"not base64": "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
	}
	for name, data := range bad {
		if name == "empty" {
			data = ""
		}
		if _, err := ParseKeyPEM([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
