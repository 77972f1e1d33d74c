package sidecar

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/store/embedded"
)

func TestRenewAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name          string
		notBefore     time.Time
		notAfter      time.Time
		received      time.Time
		earliest, end time.Time // renewal must fall in [earliest, end]
	}{
		{"24h cert", now, now.Add(24 * time.Hour), now, now.Add(12 * time.Hour), now.Add(12*time.Hour + 144*time.Minute)},
		{"backdated 30s cert renews at 15s after arrival, not at once", now.Add(-time.Minute), now.Add(30 * time.Second), now,
			now.Add(15 * time.Second), now.Add(18 * time.Second)},
		{"expired cert renews now", now.Add(-time.Hour), now.Add(-time.Minute), now, now, now},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 100 { // jitter
				got := renewAt(&x509.Certificate{NotBefore: tc.notBefore, NotAfter: tc.notAfter}, tc.received)
				if got.Before(tc.earliest) || got.After(tc.end) {
					t.Fatalf("renewAt = %v, want within [%v, %v]", got, tc.earliest, tc.end)
				}
			}
		})
	}
}

func TestClampRefresh(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		0: defaultBundleRefresh, -time.Second: defaultBundleRefresh, time.Millisecond: 500 * time.Millisecond,
		time.Second: time.Second, time.Hour: 10 * time.Minute,
	} {
		if got := clampRefresh(in); got != want {
			t.Errorf("clampRefresh(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestNextBackoff(t *testing.T) {
	tests := []struct {
		backoff, remaining, want time.Duration
	}{
		{time.Second, time.Hour, 2 * time.Second},
		{20 * time.Second, time.Hour, maxRenewBackoff},
		{20 * time.Second, 30 * time.Second, urgentRenewBackoff},
		{20 * time.Second, -time.Minute, urgentRenewBackoff},
		{500 * time.Millisecond, -time.Minute, time.Second},
	}
	for _, tt := range tests {
		if got := nextBackoff(tt.backoff, tt.remaining); got != tt.want {
			t.Errorf("nextBackoff(%v, %v) = %v, want %v", tt.backoff, tt.remaining, got, tt.want)
		}
	}
}

// fakeCA serves the two control plane endpoints a sidecar's identity uses,
// backed by a real CA. signer, when set, overrides the signer it announces.
type fakeCA struct {
	ca     *ca.CA
	signs  atomic.Int64
	mu     sync.Mutex
	signer string
	bundle []byte // overrides the bundle when set
}

func (f *fakeCA) announced() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.signer != "" {
		return f.signer
	}
	s, _, err := f.ca.Signer()
	if err != nil {
		return ""
	}
	return ca.Fingerprint(s)
}

func (f *fakeCA) bundlePEM() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bundle != nil {
		return string(f.bundle)
	}
	return string(f.ca.BundlePEM())
}

func (f *fakeCA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	refresh := api.Duration(f.ca.BundleRefresh())
	switch r.URL.Path {
	case "/v1/ca/bundle":
		_ = json.NewEncoder(w).Encode(api.BundleResponse{Bundle: f.bundlePEM(), Signer: f.announced(), BundleRefresh: refresh})
	case "/v1/certificates":
		var req api.CertificateRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		block, _ := pem.Decode([]byte(req.CSR))
		id, _ := ca.WorkloadID(f.ca.TrustDomain(), "default", req.Workload)
		chain, err := f.ca.Sign(block.Bytes, id, 0)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.signs.Add(1)
		_ = json.NewEncoder(w).Encode(api.CertificateResponse{
			Chain: string(ca.EncodeChainPEM(chain)), Bundle: f.bundlePEM(), Signer: f.announced(), BundleRefresh: refresh,
		})
	default:
		http.NotFound(w, r)
	}
}

// newFakeCA starts a fake control plane with a generated CA.
func newFakeCA(t *testing.T, opts ca.Options) (*fakeCA, *identity, spiffeid.ID) {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c, err := ca.LoadOrCreate(context.Background(), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCA{ca: c}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	id, err := newIdentity(api.NewClient(srv.URL, "join"), "default", "web", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	spiffeID, _ := ca.WorkloadID(c.TrustDomain(), "default", "web")
	return f, id, spiffeID
}

// runRotate runs the identity's loop for the test's lifetime.
func runRotate(t *testing.T, id *identity, spiffeID spiffeid.ID) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); id.rotate(ctx, spiffeID) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIdentityFollowsRootRotation: a rotated root reaches the sidecar's
// bundle at the next refresh, and once it signs, the sidecar renews its
// leaf from it long before half-life.
func TestIdentityFollowsRootRotation(t *testing.T) {
	f, id, spiffeID := newFakeCA(t, ca.Options{TTL: time.Hour, BundleRefresh: 500 * time.Millisecond})
	if err := id.fetch(context.Background(), spiffeID); err != nil {
		t.Fatal(err)
	}
	first := id.Leaf()
	runRotate(t, id, spiffeID)
	rot, err := f.ca.Rotate(context.Background(), ca.RotateOptions{ActivateAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	newFP := ca.Fingerprint(rot.Root.Cert)
	inBundle := func() bool {
		d, err := id.describe(time.Now())
		if err != nil {
			return false
		}
		for _, r := range d.Bundle {
			if r.Fingerprint == newFP {
				return true
			}
		}
		return false
	}
	waitFor(t, 2*time.Second, "new root in the sidecar's bundle", inBundle)
	if time.Now().After(rot.ActivateAt) {
		t.Fatalf("the bundle took until after activation")
	}
	if id.Leaf() != first {
		t.Fatalf("renewed before the new root signs")
	}
	// Activation at +1s; the next refresh (≤ 0.5 s) sees it; jitter ≤ 0.5 s.
	waitFor(t, 4*time.Second, "leaf renewed from the new root", func() bool {
		d, err := id.describe(time.Now())
		return err == nil && len(d.Chain) == 2 && d.Chain[1].Fingerprint == newFP
	})
	d, err := id.describe(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d.Rotations != 1 || d.Identity != spiffeID.String() || d.Signer != newFP || len(d.Bundle) != 2 {
		t.Errorf("describe after rotation: rotations %d, identity %s, signer %s, %d roots", d.Rotations, d.Identity, d.Signer, len(d.Bundle))
	}
	if !d.NextRotation.After(time.Now().Add(25 * time.Minute)) {
		t.Errorf("next rotation %v, want about half of the 1h TTL away", d.NextRotation)
	}
	if d.Chain[0].SPIFFEID != spiffeID.String() || d.Chain[0].Remaining <= 0 || d.Chain[1].Subject == "" {
		t.Errorf("chain description: %+v", d.Chain)
	}
}

// TestSignerMismatchDoesNotLoop: a CA that keeps announcing a signer its
// leaves do not come from gets at most maxSignerMismatches renewals.
func TestSignerMismatchDoesNotLoop(t *testing.T) {
	f, id, spiffeID := newFakeCA(t, ca.Options{TTL: time.Hour, BundleRefresh: 500 * time.Millisecond})
	f.mu.Lock()
	f.signer = strings.Repeat("ab", 32)
	f.mu.Unlock()
	if err := id.fetch(context.Background(), spiffeID); err != nil {
		t.Fatal(err)
	}
	runRotate(t, id, spiffeID)
	time.Sleep(4 * time.Second) // eight refreshes
	if n := f.signs.Load(); n > 1+maxSignerMismatches {
		t.Errorf("%d certificates signed, want at most %d", n, 1+maxSignerMismatches)
	}
}

// TestFetchRejectsUntrustedChain: a chain that does not verify against the
// bundle sent with it is not installed.
func TestFetchRejectsUntrustedChain(t *testing.T) {
	f, id, spiffeID := newFakeCA(t, ca.Options{})
	st, err := embedded.Open(filepath.Join(t.TempDir(), "other"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	other, err := ca.LoadOrCreate(context.Background(), st, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.bundle = other.BundlePEM()
	f.mu.Unlock()
	err = id.fetch(context.Background(), spiffeID)
	if err == nil || !strings.Contains(err.Error(), "does not verify against the trust bundle") {
		t.Fatalf("fetch: %v, want a verification error", err)
	}
	if id.Leaf() != nil {
		t.Errorf("an unverifiable certificate was installed")
	}
}
