package controlplane

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/compile"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// compileLog collects the proxies the reconcile loop compiles.
type compileLog struct {
	mu    sync.Mutex
	names map[string]bool
}

func (l *compileLog) hook(names []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range names {
		l.names[n] = true
	}
}

func (l *compileLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.names))
	for n := range l.names {
		out = append(out, n)
	}
	sort.Strings(out)
	l.names = map[string]bool{}
	return out
}

func clientNames(cs []*simClient) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.name)
	}
	sort.Strings(out)
	return out
}

// TestIncrementalRecompile checks that each kind of change recompiles, and
// pushes to, exactly the connected proxies that call the changed service.
func TestIncrementalRecompile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const services = 12
	m := newMeshSim(t, ctx, services, 2)
	log := &compileLog{names: map[string]bool{}}
	m.cp.compiledHook = log.hook
	m.start(t, ctx, services)
	m.settle(t)
	log.take()
	admin := api.NewClient(m.cp.AdminURL(), "")

	const target = 5
	cluster := compile.ClusterName(80, "", svcName(target))
	affected := m.affectedClients(target)
	if len(affected) == 0 || len(affected) == len(m.clients) {
		t.Fatalf("topology: %d of %d proxies call %s; want some, not all", len(affected), len(m.clients), svcName(target))
	}
	newcomer := m.workload(target, 9)
	hub := m.affectedClients(0)
	route := "outbound|80|" + svcName(0)

	cases := []struct {
		name     string
		affected []*simClient
		match    func(*resources.Set) bool
		change   func() error
		compiled []string // besides the affected proxies
	}{
		{"health flips to unhealthy", affected,
			func(s *resources.Set) bool {
				h, ok := endpointHealth(s, cluster, inboundAddr(target, 1))
				return ok && !h
			},
			func() error {
				return m.cp.registry.Heartbeat(ctx, model.DefaultNamespace, workloadName(target, 1), false)
			}, nil},
		{"health flips back", affected,
			func(s *resources.Set) bool {
				h, ok := endpointHealth(s, cluster, inboundAddr(target, 1))
				return ok && h
			},
			func() error {
				return m.cp.registry.Heartbeat(ctx, model.DefaultNamespace, workloadName(target, 1), true)
			}, nil},
		{"registration", affected,
			func(s *resources.Set) bool { _, ok := endpointHealth(s, cluster, inboundAddr(target, 9)); return ok },
			func() error { return m.cp.registry.Register(ctx, newcomer) },
			nil}, // the newcomer's sidecar is not connected: not compiled
		{"deregistration", affected,
			func(s *resources.Set) bool { _, ok := endpointHealth(s, cluster, inboundAddr(target, 9)); return !ok },
			func() error { return m.cp.registry.Deregister(ctx, model.DefaultNamespace, newcomer.Name) }, nil},
		{"VirtualService apply", hub,
			func(s *resources.Set) bool { return routeTimeout(s, route) == 3*time.Second },
			func() error { _, err := admin.Apply(ctx, vsYAML(svcName(0), 3*time.Second), "test", false); return err }, nil},
		{"VirtualService delete", hub,
			func(s *resources.Set) bool { _, ok := s.Routes[route]; return ok && routeTimeout(s, route) == 0 },
			func() error { return admin.Delete(ctx, model.KindVirtualService, model.DefaultNamespace, svcName(0)) }, nil},
		{"DestinationRule apply", affected,
			func(s *resources.Set) bool {
				_, ok := s.Clusters[compile.ClusterName(80, "v1", svcName(target))]
				return ok
			},
			func() error { _, err := admin.Apply(ctx, drYAML(svcName(target)), "test", false); return err }, nil},
		{"DestinationRule delete", affected,
			func(s *resources.Set) bool {
				_, ok := s.Clusters[compile.ClusterName(80, "v1", svcName(target))]
				return !ok
			},
			func() error {
				return admin.Delete(ctx, model.KindDestinationRule, model.DefaultNamespace, svcName(target))
			}, nil},
	}
	for _, tc := range cases {
		r := m.measure(t, tc.affected, tc.match, tc.change, 10*time.Second, 300*time.Millisecond)
		if len(r.missing) > 0 {
			t.Errorf("%s: never reached %v", tc.name, r.missing)
		}
		want := append(clientNames(tc.affected), tc.compiled...)
		sort.Strings(want)
		if diff := cmp.Diff(want, log.take()); diff != "" {
			t.Errorf("%s: compiled proxies (-want +got):\n%s", tc.name, diff)
		}
		if r.pushed != len(tc.affected) {
			t.Errorf("%s: %d proxies got a push, want %d", tc.name, r.pushed, len(tc.affected))
		}
	}
}

// TestRestartGrace checks that after a restart every stored workload stays
// healthy for one TTL, then turns unhealthy when no heartbeat came.
func TestRestartGrace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ttl = 1500 * time.Millisecond
	// The store already holds the workloads when the control plane starts,
	// and no sidecar has sent a heartbeat: the situation after a restart.
	created := time.Now()
	m := newMeshSimIn(t, ctx, t.TempDir(), ttl, 4, 2)
	m.start(t, ctx, 4)
	cluster := compile.ClusterName(80, "", svcName(0))
	c := m.clients[workloadName(1, 0)] // service 1 calls the hub
	c.mu.Lock()
	h, ok := endpointHealth(c.set, cluster, inboundAddr(0, 1))
	c.mu.Unlock()
	if !ok || !h {
		t.Fatalf("during the start-up grace: endpoint present %v healthy %v, want healthy", ok, h)
	}
	// A workload that heartbeats stays healthy past the grace.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(ttl / 5)
		defer tick.Stop()
		for {
			_ = m.cp.registry.Heartbeat(ctx, model.DefaultNamespace, workloadName(0, 0), true)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	probeStart := time.Now()
	r := m.measure(t, []*simClient{c}, func(s *resources.Set) bool {
		h, ok := endpointHealth(s, cluster, inboundAddr(0, 1))
		return ok && !h
	}, func() error { return nil }, 3*ttl, 0)
	if len(r.missing) > 0 {
		t.Fatalf("the silent workload never turned unhealthy after the grace")
	}
	if after := probeStart.Add(r.latencies[0]).Sub(created); after < ttl {
		t.Errorf("turned unhealthy %v after start, before the grace (%v) ended", after, ttl)
	}
	c.mu.Lock()
	h, ok = endpointHealth(c.set, cluster, inboundAddr(0, 0))
	c.mu.Unlock()
	if !ok || !h {
		t.Errorf("heartbeating workload: present %v healthy %v, want healthy", ok, h)
	}
}

func drYAML(host string) []byte {
	return []byte(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ` + host + `}
spec:
  host: ` + host + `
  subsets:
  - {name: v0, labels: {version: v0}}
  - {name: v1, labels: {version: v1}}
`)
}
