package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
)

// sidecarCerts reads a sidecar's admin /certs.
func sidecarCerts(admin string) (*api.SidecarCerts, error) {
	code, _, body, err := httpGet("http://" + admin + "/certs")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/certs: %d %s", code, body)
	}
	var c api.SidecarCerts
	return &c, json.Unmarshal([]byte(body), &c)
}

func hasFingerprint(certs []api.CertInfo, fp string) bool {
	for _, c := range certs {
		if c.Fingerprint == fp {
			return true
		}
	}
	return false
}

// cliJSON runs a trellis command with -o json against m and decodes its output.
func cliJSON(t *testing.T, m *mesh, out any, args ...string) {
	t.Helper()
	stdout, stderr, err := m.cli(append(args, "-o", "json")...)
	if err != nil {
		t.Fatalf("trellis %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		t.Fatalf("trellis %s -o json: %v\n%s", strings.Join(args, " "), err, stdout)
	}
}

// loadLoop sends requests through url from two clients until stop is
// closed, max requests were sent, or the time limit passes.
type loadLoop struct {
	max           int64
	total, failed atomic.Int64
	mu            sync.Mutex
	errs          []string
	stop          chan struct{}
	wg            sync.WaitGroup
}

func startLoad(url string, max int64, limit time.Duration) *loadLoop {
	l := &loadLoop{max: max, stop: make(chan struct{})}
	deadline := time.Now().Add(limit)
	for range 2 {
		l.wg.Go(func() {
			for time.Now().Before(deadline) {
				select {
				case <-l.stop:
					return
				default:
				}
				if l.total.Add(1) > max {
					return
				}
				code, _, body, err := httpGet(url)
				if err != nil || code != http.StatusOK {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, fmt.Sprintf("%s: %d %v %.200s", time.Now().Format("15:04:05.000"), code, err, body))
					}
					l.mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return l
}

func (l *loadLoop) finish() (total, failed int64, errs []string) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return min(l.total.Load(), l.max), l.failed.Load(), l.errs
}

// TestCertRootRotation rotates the root under continuous traffic with
// 10 s certificates, a 1 s bundle refresh, a 3 s activation delay and a
// 20 s overlap: no request fails; the new root reaches every sidecar before
// it signs; afterwards every leaf chains to it and the old root has left
// every bundle.
func TestCertRootRotation(t *testing.T) {
	m := startMesh(t, writeFile(t, "pair.yaml", twoWorkloads), "--cert-ttl", "10s", "--bundle-refresh", "1s")
	caller, details := m.workload("caller-v1"), m.workload("details-v1")
	admins := []string{caller.Admin, details.Admin}
	var before api.CAStatus
	cliJSON(t, m, &before, "ca", "status")
	oldFP := before.Signer.Fingerprint
	for _, a := range admins {
		c, err := sidecarCerts(a)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Chain) != 2 || c.Chain[1].Fingerprint != oldFP {
			t.Fatalf("%s: leaf not issued by the current root before the rotation", a)
		}
	}

	load := startLoad("http://"+caller.Upstreams["details"]+"/whoami", 20000, 45*time.Second)
	time.Sleep(time.Second) // traffic before the rotation

	var rot api.RotateResponse
	cliJSON(t, m, &rot, "ca", "rotate", "--overlap", "20s", "--activate-after", "3s")
	newFP := rot.NewRoot.Fingerprint
	if newFP == "" || newFP == oldFP || len(rot.Status.Roots) != 2 || rot.Status.Signer.Fingerprint != oldFP {
		t.Fatalf("rotate answered %+v", rot)
	}

	// Every sidecar trusts the new root before anyone presents a leaf from it.
	for _, a := range admins {
		for {
			c, err := sidecarCerts(a)
			if err == nil && hasFingerprint(c.Bundle, newFP) && hasFingerprint(c.Bundle, oldFP) {
				break
			}
			if time.Now().After(rot.ActivateAt) {
				t.Fatalf("%s: the new root was not in its bundle before it started signing (%v)", a, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Then every leaf is renewed from the new root within seconds of the
	// switch (not at half-life), and the old root leaves every bundle at
	// the end of the overlap.
	eventually(t, 10*time.Second, "leaves issued by the new root", func() error {
		for _, a := range admins {
			c, err := sidecarCerts(a)
			if err != nil {
				return err
			}
			if len(c.Chain) != 2 || c.Chain[1].Fingerprint != newFP {
				return fmt.Errorf("%s: leaf issued by %s", a, c.Chain[len(c.Chain)-1].Fingerprint[:16])
			}
		}
		return nil
	})
	eventually(t, time.Until(rot.OldTrustedUntil)+5*time.Second, "old root out of every bundle", func() error {
		for _, a := range admins {
			c, err := sidecarCerts(a)
			if err != nil {
				return err
			}
			if hasFingerprint(c.Bundle, oldFP) || !hasFingerprint(c.Bundle, newFP) || len(c.Bundle) != 1 {
				return fmt.Errorf("%s: bundle of %d roots, old root present: %v", a, len(c.Bundle), hasFingerprint(c.Bundle, oldFP))
			}
			if len(c.Chain) != 2 || c.Chain[1].Fingerprint != newFP {
				return fmt.Errorf("%s: leaf not from the new root", a)
			}
		}
		return nil
	})
	time.Sleep(2 * time.Second) // traffic after the old root left
	total, failed, errs := load.finish()
	t.Logf("%d requests, %d failed, across the rotation", total, failed)
	if failed != 0 || total < 500 {
		t.Fatalf("%d of %d requests failed across the root rotation: %v", failed, total, errs)
	}

	var after api.CAStatus
	cliJSON(t, m, &after, "ca", "status")
	var trusted []string
	for _, r := range after.Roots {
		if r.Trusted {
			trusted = append(trusted, r.Fingerprint)
		}
	}
	if after.Signer.Fingerprint != newFP || len(trusted) != 1 || trusted[0] != newFP {
		t.Errorf("ca status after the overlap: signer %s, trusted %v; want only the new root", after.Signer.Fingerprint, trusted)
	}
	// An overlap shorter than the TTL plus the activation delay is refused.
	if _, stderr, err := m.cli("ca", "rotate", "--overlap", "5s", "--activate-after", "3s"); err == nil || !strings.Contains(stderr, "shorter than the leaf TTL") {
		t.Errorf("rotate with a 5s overlap: %v %s, want a refusal naming the TTL", err, stderr)
	}
}

// testPKI is an operator's root and intermediate, written to files.
type testPKI struct {
	root, inter                   *x509.Certificate
	interFile, keyFile, rootsFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"Example Corp"}, CommonName: "Example Corp Root CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLen: 1,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	td, _ := url.Parse("spiffe://cluster.local")
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{Organization: []string{"Example Corp"}, CommonName: "Example Corp Mesh Intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
		URIs: []*url.URL{td},
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, root, &interKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ := x509.ParseCertificate(interDER)
	keyDER, _ := x509.MarshalECPrivateKey(interKey)
	p := &testPKI{root: root, inter: inter,
		interFile: filepath.Join(dir, "intermediate.pem"), keyFile: filepath.Join(dir, "intermediate.key"), rootsFile: filepath.Join(dir, "roots.pem")}
	for file, block := range map[string]*pem.Block{
		p.interFile: {Type: "CERTIFICATE", Bytes: interDER},
		p.keyFile:   {Type: "EC PRIVATE KEY", Bytes: keyDER},
		p.rootsFile: {Type: "CERTIFICATE", Bytes: rootDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestCertOperatorIntermediate runs the mesh on an operator's intermediate
// (files made here): traffic flows, leaves carry the intermediate, bundles
// hold the operator's root, and `trellis cert` shows it (JSON and table).
func TestCertOperatorIntermediate(t *testing.T) {
	pki := newTestPKI(t)
	m := startMesh(t, writeFile(t, "pair.yaml", twoWorkloads),
		"--ca-cert", pki.interFile, "--ca-key", pki.keyFile, "--ca-bundle", pki.rootsFile)
	if !strings.Contains(m.control.out.String(), "operator-supplied CA in use") {
		t.Errorf("the control plane did not log that it uses the operator's CA")
	}
	caller := m.workload("caller-v1")
	if err := allAnsweredBy("http://"+caller.Upstreams["details"]+"/whoami", "v1", 20); err != nil {
		t.Fatalf("traffic over the operator's intermediate: %v", err)
	}
	interFP, rootFP := ca.Fingerprint(pki.inter), ca.Fingerprint(pki.root)
	const callerID = "spiffe://cluster.local/ns/default/sa/caller"

	t.Run("json", func(t *testing.T) {
		var rep struct {
			Workload string `json:"workload"`
			api.SidecarCerts
		}
		cliJSON(t, m, &rep, "cert", "caller-v1")
		if rep.Workload != "caller-v1" || rep.Identity != callerID {
			t.Errorf("workload %q identity %q", rep.Workload, rep.Identity)
		}
		if len(rep.Chain) != 2 || rep.Chain[0].SPIFFEID != callerID || rep.Chain[1].Fingerprint != interFP || !rep.Chain[1].IsCA {
			t.Fatalf("chain %+v, want [leaf, the intermediate]", rep.Chain)
		}
		if rep.Chain[0].Issuer != pki.inter.Subject.String() || rep.Chain[1].Subject != pki.inter.Subject.String() {
			t.Errorf("leaf issuer %q, intermediate subject %q", rep.Chain[0].Issuer, rep.Chain[1].Subject)
		}
		if len(rep.Bundle) != 1 || rep.Bundle[0].Fingerprint != rootFP {
			t.Errorf("bundle %+v, want only the operator's root", rep.Bundle)
		}
		if rep.Signer != interFP || rep.NextRotation.Before(rep.LastRotation) || rep.Chain[0].Remaining <= 0 {
			t.Errorf("signer %s, last %v, next %v, remaining %v", rep.Signer, rep.LastRotation, rep.NextRotation, rep.Chain[0].Remaining)
		}
		var st api.CAStatus
		cliJSON(t, m, &st, "ca", "status")
		if st.Source != api.CASourceOperator || st.Signer.Fingerprint != interFP || len(st.Roots) != 1 || !st.Roots[0].Active {
			t.Errorf("ca status: %+v", st)
		}
		if _, stderr, err := m.cli("ca", "rotate"); err == nil || !strings.Contains(stderr, "operator-supplied") {
			t.Errorf("ca rotate with an operator CA: %v %s", err, stderr)
		}
	})

	t.Run("table", func(t *testing.T) {
		stdout, stderr, err := m.cli("cert", "caller-v1")
		if err != nil {
			t.Fatalf("trellis cert: %v\n%s", err, stderr)
		}
		c, err := sidecarCerts(caller.Admin)
		if err != nil {
			t.Fatal(err)
		}
		// The table names the SPIFFE ID and the expiry (unless the leaf
		// rotated in between, then its successor's; accept either).
		for _, want := range []string{callerID, "Example Corp Mesh Intermediate", rootFP[:16], "REMAINING"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("table lacks %q:\n%s", want, stdout)
			}
		}
		if !strings.Contains(stdout, c.NotAfter.UTC().Format(time.RFC3339)) && c.Rotations == 0 {
			t.Errorf("table lacks the expiry %s:\n%s", c.NotAfter.UTC().Format(time.RFC3339), stdout)
		}
		if _, stderr, err := m.cli("cert", "nobody"); err == nil || !strings.Contains(stderr, "unknown workload") {
			t.Errorf("cert of an unknown workload: %v %s", err, stderr)
		}
	})
}

// TestAdminTokenCLI: a control plane with --admin-token-file refuses the
// CLI without TRELLIS_ADMIN_TOKEN and serves it with; a non-loopback
// admin address without a token file is refused at start.
func TestAdminTokenCLI(t *testing.T) {
	token := "e2e-admin-token-0123456789abcdef"
	file := writeFile(t, "token", token+"\n")
	admin := freeAddr(t)
	start(t, "control", "control", "--data-dir", t.TempDir(), "--admin-addr", admin, "--xds-addr", freeAddr(t), "--admin-token-file", file)
	run := func(env string, args ...string) (string, error) {
		cmd := exec.Command(trellisBin, append(args, "--control", "http://"+admin)...)
		cmd.Env = append(os.Environ(), api.EnvAdminToken+"="+env)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	eventually(t, 20*time.Second, "control plane answers", func() error {
		_, err := api.NewClient("http://"+admin, "").Info(context.Background())
		var se *api.StatusError
		if errors.As(err, &se) && se.Code == http.StatusUnauthorized {
			return nil
		}
		return fmt.Errorf("info without a token: %v, want 401", err)
	})
	if out, err := run("", "status"); err == nil || !strings.Contains(out, api.EnvAdminToken) {
		t.Errorf("status without the token: %v %s", err, out)
	}
	if out, err := run("wrong-token-0123456789", "ca", "status"); err == nil || !strings.Contains(out, "invalid admin token") {
		t.Errorf("ca status with a wrong token: %v %s", err, out)
	}
	if out, err := run(token, "ca", "status"); err != nil || !strings.Contains(out, "Signer") {
		t.Errorf("ca status with the token: %v %s", err, out)
	}

	// 192.0.2.1 (TEST-NET-1) is not local: were the check missing, the bind
	// would fail too, but with another message.
	p := start(t, "open control", "control", "--data-dir", t.TempDir(), "--admin-addr", "192.0.2.1:15080", "--xds-addr", freeAddr(t))
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("a control plane on a non-loopback address without a token file did not refuse to start")
	}
	if !strings.Contains(p.out.String(), "--admin-token-file") {
		t.Errorf("refusal does not say how to fix it: %s", p.out.String())
	}
}
