package registry

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store/embedded"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func workload(name string) *model.Workload {
	return &model.Workload{ObjectMeta: model.ObjectMeta{Name: name}, Spec: model.WorkloadSpec{
		Service: "reviews", Labels: map[string]string{"version": "v1"},
		Ports: []model.WorkloadPort{{Port: 9080, Protocol: model.ProtocolHTTP, App: "127.0.0.1:9081", Inbound: "127.0.0.1:9082"}},
	}}
}

func healthOf(t *testing.T, r *Registry, name string) (ready, healthy bool) {
	t.Helper()
	w, err := r.Get(context.Background(), "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return w.Status.Ready, w.Status.Healthy
}

func TestHealth(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := embedded.Open(filepath.Join(dir, "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := New(st, Options{TTL: 15 * time.Second, Now: clk.Now})

	if err := r.Register(ctx, workload("reviews-v1")); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name        string
		do          func() error
		ready, heal bool
	}{
		{"registered, no heartbeat yet: not ready", func() error { return nil }, false, false},
		{"heartbeat ready", func() error { return r.Heartbeat(ctx, "default", "reviews-v1", true) }, true, true},
		{"still within TTL", func() error { clk.Add(14 * time.Second); return nil }, true, true},
		{"TTL passed without heartbeat", func() error { clk.Add(2 * time.Second); return nil }, true, false},
		{"heartbeat again", func() error { return r.Heartbeat(ctx, "default", "reviews-v1", true) }, true, true},
		{"heartbeat not ready (app down)", func() error { return r.Heartbeat(ctx, "default", "reviews-v1", false) }, false, false},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if ready, healthy := healthOf(t, r, "reviews-v1"); ready != s.ready || healthy != s.heal {
			t.Errorf("%s: ready=%v healthy=%v, want %v %v", s.name, ready, healthy, s.ready, s.heal)
		}
	}

	if err := r.Heartbeat(ctx, "default", "nobody", true); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("heartbeat of unknown workload: %v, want ErrNotRegistered", err)
	}
	if err := r.Deregister(ctx, "default", "reviews-v1"); err != nil {
		t.Fatal(err)
	}
	if ws, _ := r.Workloads(ctx); len(ws) != 0 {
		t.Errorf("after deregister: %d workloads", len(ws))
	}
	if err := r.Deregister(ctx, "default", "reviews-v1"); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("second deregister: %v, want ErrNotRegistered", err)
	}
	_ = st.Close()
}

// A restarted control plane knows registrations (durable) but not liveness:
// workloads stay healthy for one TTL while their sidecars reconnect.
func TestRestartGrace(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	st, err := embedded.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := New(st, Options{TTL: 15 * time.Second, Now: clk.Now}).Register(ctx, workload("reviews-v1")); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()

	st, err = embedded.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New(st, Options{TTL: 15 * time.Second, Now: clk.Now})
	if _, healthy := healthOf(t, r, "reviews-v1"); !healthy {
		t.Error("right after restart: unhealthy, want the grace period")
	}
	clk.Add(16 * time.Second)
	if _, healthy := healthOf(t, r, "reviews-v1"); healthy {
		t.Error("after the grace period without heartbeat: still healthy")
	}
}

func TestRegisterRejectsInvalid(t *testing.T) {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New(st, Options{})
	bad := workload("Not_A_DNS_Label")
	if err := r.Register(context.Background(), bad); err == nil {
		t.Fatal("invalid workload name accepted")
	}
	if ws, _ := r.Workloads(context.Background()); len(ws) != 0 {
		t.Errorf("rejected registration stored %d workloads", len(ws))
	}
}
