package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trellis-mesh/trellis/internal/store"
)

// clock is a settable fake clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// signAt signs a fresh CSR for id.
func signAt(t *testing.T, c *CA, id spiffeid.ID) [][]byte {
	t.Helper()
	chain, err := c.Sign(mustCSR(t, mustKey(t), id), id, 0)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return chain
}

// verifies reports whether chain verifies as id against c's bundle at at.
func verifies(c *CA, chain [][]byte, id spiffeid.ID, at time.Time) error {
	got, _, err := x509svid.ParseAndVerify(chain, c.Bundle(), x509svid.WithTime(at))
	if err != nil {
		return err
	}
	if got != id {
		return errors.New("verified as " + got.String())
	}
	return nil
}

func bundleHas(c *CA, cert *x509.Certificate) bool {
	for _, r := range c.Bundle().X509Authorities() {
		if r.Equal(cert) {
			return true
		}
	}
	return false
}

// TestRotationTimeline walks a rotation with a fake clock: the new root is
// trusted at once and signs after ActivateAfter; the old root stays trusted
// until the end of the overlap, by which time every leaf it signed expired.
func TestRotationTimeline(t *testing.T) {
	clk := &clock{now: t0}
	st := openStore(t, t.TempDir())
	opts := Options{TTL: time.Hour, BundleRefresh: 30 * time.Second, Now: clk.Now}
	c, err := LoadOrCreate(context.Background(), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	id := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	oldRoot := activeRoot(t, c)
	oldLeaf := signAt(t, c, id)

	clk.Set(t0.Add(10 * time.Minute))
	rot, err := c.Rotate(context.Background(), RotateOptions{})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	start := t0.Add(10 * time.Minute)
	activate, overlap := time.Minute, time.Hour+time.Minute // defaults: 2×refresh, TTL+activate
	if !rot.ActivateAt.Equal(start.Add(activate)) || !rot.OldTrustedEnd.Equal(start.Add(overlap)) {
		t.Fatalf("rotation at %v: activate %v, old trusted until %v; want %v and %v",
			start, rot.ActivateAt, rot.OldTrustedEnd, start.Add(activate), start.Add(overlap))
	}
	newRoot := rot.Root.Cert

	steps := []struct {
		at         time.Duration // after the rotation
		signer     *x509.Certificate
		oldTrusted bool
	}{
		{0, oldRoot, true},
		{activate - time.Second, oldRoot, true},
		{activate, newRoot, true},
		{overlap - time.Second, newRoot, true},
		{overlap, newRoot, false},
	}
	var lastOldLeaf [][]byte
	for _, s := range steps {
		now := start.Add(s.at)
		clk.Set(now)
		if !bundleHas(c, newRoot) {
			t.Errorf("+%v: the new root is not in the bundle", s.at)
		}
		if got := bundleHas(c, oldRoot); got != s.oldTrusted {
			t.Errorf("+%v: old root in the bundle = %v, want %v", s.at, got, s.oldTrusted)
		}
		chain := signAt(t, c, id)
		if issuer := chain[len(chain)-1]; string(issuer) != string(s.signer.Raw) {
			t.Errorf("+%v: signed by the wrong root (new=%v)", s.at, s.signer == newRoot)
		}
		if err := verifies(c, chain, id, now); err != nil {
			t.Errorf("+%v: a fresh leaf does not verify: %v", s.at, err)
		}
		if s.signer == oldRoot {
			lastOldLeaf = chain
			if err := verifies(c, oldLeaf, id, now); err != nil && now.Before(t0.Add(time.Hour)) {
				t.Errorf("+%v: a leaf of the old root, still valid, does not verify: %v", s.at, err)
			}
		}
	}
	// The last leaf the old root signed expired before the root left the bundle.
	leaf, err := x509.ParseCertificate(lastOldLeaf[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.NotAfter.After(start.Add(overlap)) {
		t.Errorf("the old root's last leaf lives until %v, after the old root leaves the bundle at %v", leaf.NotAfter, start.Add(overlap))
	}

	// The rotation is in the store: a restarted control plane sees the same roots.
	again, err := LoadOrCreate(context.Background(), st, opts)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := activeRoot(t, again); !got.Equal(newRoot) {
		t.Errorf("after reload the signer is not the new root")
	}
	if bundleHas(again, oldRoot) {
		t.Errorf("after reload the old root is trusted past its overlap")
	}
}

func TestRotateWhileInProgress(t *testing.T) {
	clk := &clock{now: t0}
	c := newTestCA(t, Options{Now: clk.Now, TTL: time.Hour})
	if _, err := c.Rotate(context.Background(), RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(30 * time.Second))
	_, err := c.Rotate(context.Background(), RotateOptions{})
	if !errors.Is(err, ErrRotationInProgress) || !strings.Contains(err.Error(), "starts signing at") {
		t.Fatalf("second Rotate before activation: %v, want ErrRotationInProgress", err)
	}
	// Once the first rotation's root signs, a second rotation is fine, and
	// the first root (superseded twice) loses its key while staying trusted
	// until its own overlap ends.
	clk.Set(t0.Add(2 * time.Minute))
	if _, err := c.Rotate(context.Background(), RotateOptions{}); err != nil {
		t.Fatalf("Rotate after activation: %v", err)
	}
	roots := c.Roots()
	if len(roots) != 3 {
		t.Fatalf("%d roots, want 3", len(roots))
	}
	if roots[0].HasKey || !roots[1].HasKey || !roots[2].HasKey {
		t.Errorf("keys held: %v %v %v, want only the signer's and the next signer's", roots[0].HasKey, roots[1].HasKey, roots[2].HasKey)
	}
	if !roots[1].Active || roots[0].Active || roots[2].Active {
		t.Errorf("active: %v %v %v, want the second root", roots[0].Active, roots[1].Active, roots[2].Active)
	}
	// The first root's overlap (TTL + 1m from t0) is not extended by the
	// second rotation.
	if want := t0.Add(time.Hour + time.Minute); !roots[0].TrustedUntil.Equal(want) {
		t.Errorf("first root trusted until %v, want %v", roots[0].TrustedUntil, want)
	}
	// After every overlap, the next rotation prunes the roots no longer trusted.
	clk.Set(t0.Add(3 * time.Hour))
	if _, err := c.Rotate(context.Background(), RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Roots()); n != 2 {
		t.Errorf("%d roots after the overlaps ended, want 2 (signer and new)", n)
	}
}

func TestRotateOptions(t *testing.T) {
	tests := []struct {
		name         string
		opts         RotateOptions
		wantActivate time.Duration
		wantOverlap  time.Duration
		wantErr      string
	}{
		{"defaults", RotateOptions{}, time.Minute, time.Hour + time.Minute, ""},
		{"explicit", RotateOptions{ActivateAfter: 2 * time.Minute, Overlap: 5 * time.Hour}, 2 * time.Minute, 5 * time.Hour, ""},
		{"overlap defaults to TTL plus activation", RotateOptions{ActivateAfter: 10 * time.Minute}, 10 * time.Minute, time.Hour + 10*time.Minute, ""},
		{"overlap too short", RotateOptions{Overlap: 30 * time.Minute}, 0, 0, "shorter than the leaf TTL (1h0m0s) plus --activate-after (1m0s)"},
		{"overlap too short, forced", RotateOptions{Overlap: 30 * time.Minute, Force: true}, time.Minute, 30 * time.Minute, ""},
		{"activation before sidecars refresh", RotateOptions{ActivateAfter: 10 * time.Second}, 0, 0, "shorter than the sidecars' bundle refresh period (30s)"},
		{"activation before sidecars refresh, forced", RotateOptions{ActivateAfter: 10 * time.Second, Force: true}, 10 * time.Second, time.Hour + 10*time.Second, ""},
		{"overlap within activation, even forced", RotateOptions{ActivateAfter: time.Minute, Overlap: time.Minute, Force: true}, 0, 0, "must be longer than --activate-after"},
		{"negative", RotateOptions{Overlap: -time.Second}, 0, 0, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{now: t0}
			c := newTestCA(t, Options{Now: clk.Now, TTL: time.Hour, BundleRefresh: 30 * time.Second})
			rot, err := c.Rotate(context.Background(), tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Rotate error = %v, want one containing %q", err, tt.wantErr)
				}
				if n := len(c.Roots()); n != 1 {
					t.Errorf("a refused rotation left %d roots", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			if got := rot.ActivateAt.Sub(t0); got != tt.wantActivate {
				t.Errorf("activate after %v, want %v", got, tt.wantActivate)
			}
			if got := rot.OldTrustedEnd.Sub(t0); got != tt.wantOverlap {
				t.Errorf("overlap %v, want %v", got, tt.wantOverlap)
			}
		})
	}
}

// TestForcedShortOverlapCapsLeaves: with --force and an overlap shorter
// than the TTL, the old root's leaves end with its trust, never after.
func TestForcedShortOverlapCapsLeaves(t *testing.T) {
	clk := &clock{now: t0}
	c := newTestCA(t, Options{Now: clk.Now, TTL: time.Hour})
	if _, err := c.Rotate(context.Background(), RotateOptions{ActivateAfter: time.Minute, Overlap: 10 * time.Minute, Force: true}); err != nil {
		t.Fatal(err)
	}
	id := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	leaf, err := x509.ParseCertificate(signAt(t, c, id)[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(10 * time.Minute); !leaf.NotAfter.Equal(want) {
		t.Errorf("leaf NotAfter = %v, want the old root's end of trust %v", leaf.NotAfter, want)
	}
}

// TestLegacyRecordMigrates: a single-root record from before rotation
// loads as one active root, and the first rotation writes the list form.
func TestLegacyRecordMigrates(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	data := legacyRootData(t, "cluster.local", t0)
	if _, err := st.Put(ctx, store.Record{Kind: RootKind, Namespace: RootNamespace, Name: RootName, Data: data}); err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: t0.Add(time.Hour)}
	c, err := LoadOrCreate(ctx, st, Options{Now: clk.Now, TTL: time.Hour})
	if err != nil {
		t.Fatalf("load legacy record: %v", err)
	}
	var legacy storedRoots
	mustUnmarshal(t, data, &legacy)
	old, err := ParseChainPEM([]byte(legacy.Cert))
	if err != nil {
		t.Fatal(err)
	}
	roots := c.Roots()
	if len(roots) != 1 || !roots[0].Cert.Equal(old[0]) || !roots[0].Active || !roots[0].Trusted || !roots[0].HasKey {
		t.Fatalf("legacy record loaded as %+v, want one active, trusted root with its key", roots)
	}
	id := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	verifySVIDAt(t, signAt(t, c, id), c, id, clk.Now())
	if _, err := c.Rotate(ctx, RotateOptions{}); err != nil {
		t.Fatalf("rotate a legacy CA: %v", err)
	}
	rec, err := st.Get(ctx, RootKind, RootNamespace, RootName)
	if err != nil {
		t.Fatal(err)
	}
	var written storedRoots
	mustUnmarshal(t, rec.Data, &written)
	if len(written.Roots) != 2 || written.Cert != "" {
		t.Errorf("record after rotation: %d roots, legacy cert %v; want the list form with 2 roots", len(written.Roots), written.Cert != "")
	}
}

// TestRotateConflict: a record changed behind the CA's back is not
// overwritten.
func TestRotateConflict(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	c, err := LoadOrCreate(ctx, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := st.Get(ctx, RootKind, RootNamespace, RootName)
	if err != nil {
		t.Fatal(err)
	}
	rec.Revision = 0
	if _, err := st.Put(ctx, rec); err != nil { // same data, new revision
		t.Fatal(err)
	}
	if _, err := c.Rotate(ctx, RotateOptions{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Rotate over a changed record: %v, want a conflict", err)
	}
	if n := len(c.Roots()); n != 1 {
		t.Errorf("a failed rotation changed the CA: %d roots", n)
	}
}
