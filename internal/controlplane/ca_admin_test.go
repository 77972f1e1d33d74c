package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/model"
)

// runCP starts a control plane on loopback ports for the test's lifetime.
func runCP(t *testing.T, cfg Config) *ControlPlane {
	t.Helper()
	cfg.DataDir = t.TempDir()
	cfg.AdminAddr, cfg.XDSAddr, cfg.Logger = "127.0.0.1:0", "127.0.0.1:0", quietLogger()
	ctx, cancel := context.WithCancel(context.Background())
	cp, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return cp
}

func statusCode(err error) int {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	if err == nil {
		return http.StatusOK
	}
	return -1
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		addr      string
		withToken bool
		wantErr   string
	}{
		{"127.0.0.1:15080", false, ""},
		{"[::1]:15080", false, ""},
		{"localhost:15080", false, ""},
		{"0.0.0.0:15080", false, "not a loopback address"},
		{"10.1.2.3:15080", false, "--admin-token-file"},
		{":15080", false, "not a loopback address"},
		{"0.0.0.0:15080", true, ""},
		{"10.1.2.3:15080", true, ""},
		{"no-port", false, "missing port"},
	}
	for _, tt := range tests {
		err := checkLoopback(tt.addr, tt.withToken)
		if tt.wantErr == "" && err != nil {
			t.Errorf("checkLoopback(%q, %v) = %v, want nil", tt.addr, tt.withToken, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("checkLoopback(%q, %v) = %v, want an error containing %q", tt.addr, tt.withToken, err, tt.wantErr)
		}
	}
}

func TestReadAdminToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{"none", "", ""},
		{"good, trailing newline", write("good", "0123456789abcdef0123\n"), ""},
		{"short", write("short", "secret\n"), "at least 16"},
		{"spaces", write("spaces", "0123456789 abcdef0123"), "without spaces"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum, err := readAdminToken(tt.path, quietLogger())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tt.path == "") != (sum == nil) {
				t.Errorf("digest %x for file %q", sum, tt.path)
			}
		})
	}
}

// TestAdminToken: with --admin-token-file, operator routes need the token,
// sidecar routes their join token, /v1/info either, /healthz nothing.
func TestAdminToken(t *testing.T) {
	const token = "s3cr3t-admin-token-0123456789"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cp := runCP(t, Config{AdminTokenFile: file})
	ctx := context.Background()
	join, err := cp.CreateToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	none, wrong := api.NewClient(cp.AdminURL(), ""), api.NewClient(cp.AdminURL(), token+"x")
	admin, sidecar := api.NewClient(cp.AdminURL(), token), api.NewClient(cp.AdminURL(), join)

	operatorCalls := map[string]func(c *api.Client) error{
		"status":    func(c *api.Client) error { _, err := c.Status(ctx); return err },
		"apply":     func(c *api.Client) error { _, err := c.Apply(ctx, []byte("{}"), "t", true); return err },
		"get":       func(c *api.Client) error { _, err := c.Get(ctx, "vs", "", ""); return err },
		"tokens":    func(c *api.Client) error { _, err := c.CreateToken(ctx); return err },
		"ca status": func(c *api.Client) error { _, err := c.CAStatus(ctx); return err },
		"xds dump":  func(c *api.Client) error { _, err := c.ConfigDump(ctx, "default", "nope"); return err },
	}
	for name, call := range operatorCalls {
		for who, c := range map[string]*api.Client{"no token": none, "wrong token": wrong, "join token": sidecar} {
			if code := statusCode(call(c)); code != http.StatusUnauthorized {
				t.Errorf("%s with %s: %d, want 401", name, who, code)
			}
		}
		if code := statusCode(call(admin)); code == http.StatusUnauthorized || code == -1 {
			t.Errorf("%s with the admin token: %d", name, code)
		}
	}
	// An unknown route is not revealed to a caller without the token.
	if code := statusCode(none.Delete(ctx, "nothing", "a", "b")); code != http.StatusUnauthorized {
		t.Errorf("unknown route without token: %d, want 401", code)
	}
	// Sidecar routes: the join token, and only it.
	if _, err := sidecar.Bundle(ctx); err != nil {
		t.Errorf("bundle with the join token: %v", err)
	}
	for who, c := range map[string]*api.Client{"no token": none, "admin token": admin} {
		if code := statusCode(func() error { _, err := c.Bundle(ctx); return err }()); code != http.StatusUnauthorized {
			t.Errorf("bundle with %s: %d, want 401", who, code)
		}
	}
	// /v1/info: join token or admin token.
	for who, c := range map[string]*api.Client{"join token": sidecar, "admin token": admin} {
		if _, err := c.Info(ctx); err != nil {
			t.Errorf("info with %s: %v", who, err)
		}
	}
	if _, err := none.Info(ctx); statusCode(err) != http.StatusUnauthorized {
		t.Errorf("info without a token: %v, want 401", err)
	}
	resp, err := http.Get(cp.AdminURL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz without token: %d", resp.StatusCode)
	}
}

// TestCAAdminAPI: status, rotate with its safety checks, and what sidecars
// see through the bundle and certificate endpoints.
func TestCAAdminAPI(t *testing.T) {
	cp := runCP(t, Config{CertTTL: 10 * time.Second, BundleRefresh: time.Second})
	ctx := context.Background()
	c := api.NewClient(cp.AdminURL(), "")
	st, err := c.CAStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Source != api.CASourceGenerated || len(st.Roots) != 1 || !st.Roots[0].Active || !st.Roots[0].Trusted ||
		st.Signer.Fingerprint != st.Roots[0].Fingerprint || time.Duration(st.LeafTTL) != 10*time.Second {
		t.Fatalf("initial status: %+v", st)
	}
	oldFP := st.Roots[0].Fingerprint

	_, err = c.RotateCA(ctx, api.RotateRequest{Overlap: api.Duration(5 * time.Second), ActivateAfter: api.Duration(3 * time.Second)})
	if statusCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "shorter than the leaf TTL") {
		t.Fatalf("rotate with a short overlap: %v, want 400", err)
	}
	rot, err := c.RotateCA(ctx, api.RotateRequest{Overlap: api.Duration(20 * time.Second), ActivateAfter: api.Duration(3 * time.Second)})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if len(rot.Status.Roots) != 2 || rot.Status.Signer.Fingerprint != oldFP {
		t.Fatalf("after rotate: %d roots, signer %s; want 2 and the old root still signing", len(rot.Status.Roots), rot.Status.Signer.Fingerprint)
	}
	if d := time.Until(rot.ActivateAt); d < 2*time.Second || d > 3*time.Second {
		t.Errorf("new root signs in %v, want about 3s", d)
	}
	if _, err := c.RotateCA(ctx, api.RotateRequest{}); statusCode(err) != http.StatusConflict {
		t.Errorf("second rotate during activation: %v, want 409", err)
	}

	join, err := cp.CreateToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := api.NewClient(cp.AdminURL(), join)
	b, err := sc.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := ca.ParseChainPEM([]byte(b.Bundle))
	if err != nil || len(roots) != 2 || b.Signer != oldFP || time.Duration(b.BundleRefresh) != time.Second {
		t.Fatalf("bundle: %d roots (%v), signer %s, refresh %v; want 2, the old root, 1s", len(roots), err, b.Signer, b.BundleRefresh)
	}

	// A registered workload's CSR is signed; the answer names the signer.
	w := &model.Workload{}
	w.Kind, w.APIVersion, w.Name, w.Namespace = model.KindWorkload, model.APIVersionTrellis, "web-1", "default"
	w.Spec.Service = "web"
	w.Spec.Ports = []model.WorkloadPort{{Port: 80, Protocol: model.ProtocolHTTP, App: "127.0.0.1:1", Inbound: "127.0.0.1:2"}}
	if _, err := sc.Register(ctx, w); err != nil {
		t.Fatal(err)
	}
	key, err := ca.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := ca.WorkloadID(cp.ca.TrustDomain(), "default", "web")
	csr, err := ca.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := sc.Sign(ctx, api.CertificateRequest{Workload: "web-1", CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.ParseChainPEM([]byte(cert.Chain))
	if err != nil || len(chain) != 2 || ca.Fingerprint(chain[1]) != cert.Signer || cert.Signer != oldFP {
		t.Errorf("certificate: chain of %d (%v), signer %s; want [leaf, old root]", len(chain), err, cert.Signer)
	}
}

// TestOperatorCAControlPlane: --ca-cert/--ca-key make an operator CA that
// the status shows and that refuses rotation.
func TestOperatorCAControlPlane(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeTestRoot(t, dir)
	cp := runCP(t, Config{CA: ca.OperatorFiles{Cert: certFile, Key: keyFile}})
	c := api.NewClient(cp.AdminURL(), "")
	st, err := c.CAStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Source != api.CASourceOperator || len(st.Roots) != 1 || st.Roots[0].Subject != "CN=Test Operator Root" {
		t.Errorf("status: %+v", st)
	}
	if _, err := c.RotateCA(context.Background(), api.RotateRequest{}); statusCode(err) != http.StatusConflict || !strings.Contains(err.Error(), "operator-supplied") {
		t.Errorf("rotate an operator CA: %v, want 409", err)
	}
	// A key without its certificate is refused at start.
	_, err = New(context.Background(), Config{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0",
		CA: ca.OperatorFiles{Key: keyFile}, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("--ca-key alone: %v", err)
	}
}

// writeTestRoot writes a self-signed P-256 root and its key.
func writeTestRoot(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Operator Root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "root.pem"), filepath.Join(dir, "root.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
