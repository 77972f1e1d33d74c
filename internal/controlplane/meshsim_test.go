package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store"
	"github.com/trellis-mesh/trellis/internal/xds/client"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// meshSim is a simulated mesh for scale tests: services s0000…, each served
// by perService workloads "sNNNN-wK". Service 0 is the hub every other
// service calls; each workload also calls three more services.
//
//	control plane (real: store, registry, compile loop, xDS server on loopback)
//	   ▲ ADS streams
//	   └── simClient × connected (xds/client, one per proxy, in this process)
type meshSim struct {
	services, perService int
	cp                   *ControlPlane // nil when the control plane is another process
	proc                 *exec.Cmd     // that process
	xdsAddr, adminURL    string
	token                string
	clients              map[string]*simClient     // by workload name
	launch               func(ctx context.Context) // starts the control plane; it stops when ctx ends
	cancel               context.CancelFunc
	done                 chan error // the control plane's exit
}

func svcName(i int) string           { return fmt.Sprintf("s%04d", i) }
func workloadName(svc, k int) string { return fmt.Sprintf("%s-w%d", svcName(svc), k) }
func inboundAddr(svc, k int) string {
	return fmt.Sprintf("127.%d.%d.%d:15006", 1+k%200, svc/250, svc%250)
}
func (m *meshSim) clientList() []*simClient {
	out := make([]*simClient, 0, len(m.clients))
	for _, c := range m.clients {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// quietLogger discards logs, unless CPSCALE_DEBUG is set (then debug logs go to stderr).
func quietLogger() *slog.Logger {
	if os.Getenv("CPSCALE_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// upstreams are the services workloads of service i call: the hub and three others.
func (m *meshSim) upstreams(i int) []int {
	seen := map[int]bool{i: true}
	var out []int
	for _, off := range []int{-i, 1, 7, 31} { // -i is the hub, service 0
		u := ((i+off)%m.services + m.services) % m.services
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// callers are the services whose workloads call service s.
func (m *meshSim) callers(s int) map[int]bool {
	out := map[int]bool{}
	for i := 0; i < m.services; i++ {
		for _, u := range m.upstreams(i) {
			if u == s {
				out[i] = true
			}
		}
	}
	return out
}

func (m *meshSim) workload(svc, k int) *model.Workload {
	w := &model.Workload{Spec: model.WorkloadSpec{
		Service: svcName(svc),
		Labels:  map[string]string{"version": fmt.Sprintf("v%d", k%2)},
		Ports:   []model.WorkloadPort{{Port: 80, Protocol: model.ProtocolHTTP, App: "127.0.0.1:8080", Inbound: inboundAddr(svc, k)}},
	}}
	w.Kind, w.APIVersion = model.KindWorkload, model.APIVersionTrellis
	w.Name, w.Namespace = workloadName(svc, k), model.DefaultNamespace
	for n, u := range m.upstreams(svc) {
		w.Spec.Upstreams = append(w.Spec.Upstreams, model.Upstream{Service: svcName(u), Local: fmt.Sprintf("127.0.0.1:%d", 20000+n)})
	}
	return w
}

// newMeshSim creates a control plane whose store holds the whole mesh, with
// a health TTL long enough that every workload is healthy by start-up grace.
func newMeshSim(tb testing.TB, ctx context.Context, services, perService int) *meshSim {
	return newMeshSimIn(tb, ctx, tb.TempDir(), 10*time.Minute, services, perService)
}

// newMeshSimIn is newMeshSim with a data directory and health TTL.
func newMeshSimIn(tb testing.TB, ctx context.Context, dir string, ttl time.Duration, services, perService int) *meshSim {
	tb.Helper()
	cp, err := New(ctx, Config{
		DataDir: dir, AdminAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0",
		HealthTTL: ttl, Logger: quietLogger(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	m := &meshSim{services: services, perService: perService, cp: cp, clients: map[string]*simClient{},
		xdsAddr: cp.XDSAddr(), adminURL: cp.AdminURL()}
	if _, err := cp.store.PutAll(ctx, m.records(tb)); err != nil {
		tb.Fatal(err)
	}
	if m.token, err = cp.CreateToken(ctx); err != nil {
		tb.Fatal(err)
	}
	m.launch = func(ctx context.Context) {
		m.done = make(chan error, 1)
		go func() { m.done <- cp.Run(ctx) }()
	}
	return m
}

// records are the store records of every workload of the mesh.
func (m *meshSim) records(tb testing.TB) []store.Record {
	tb.Helper()
	recs := make([]store.Record, 0, m.services*m.perService)
	for i := 0; i < m.services; i++ {
		for k := 0; k < m.perService; k++ {
			w := m.workload(i, k)
			if _, err := model.Validate(w); err != nil {
				tb.Fatal(err)
			}
			data, err := json.Marshal(w)
			if err != nil {
				tb.Fatal(err)
			}
			recs = append(recs, store.Record{Kind: model.KindWorkload, Namespace: w.Namespace, Name: w.Name, Data: data})
		}
	}
	return recs
}

// heartbeat reports a workload's readiness, as its sidecar would.
func (m *meshSim) heartbeat(ctx context.Context, name string, ready bool) error {
	if m.cp != nil {
		return m.cp.registry.Heartbeat(ctx, model.DefaultNamespace, name, ready)
	}
	return api.NewClient(m.adminURL, m.token).Heartbeat(ctx, model.DefaultNamespace, name, ready)
}

// register registers a workload, as its sidecar would.
func (m *meshSim) register(ctx context.Context, w *model.Workload) error {
	if m.cp != nil {
		return m.cp.registry.Register(ctx, w)
	}
	_, err := api.NewClient(m.adminURL, m.token).Register(ctx, w)
	return err
}

// start runs the control plane and connects one client for workload 0 of
// each of the first `connected` services; it returns when all are synced.
func (m *meshSim) start(tb testing.TB, ctx context.Context, connected int) time.Duration {
	tb.Helper()
	ctx, m.cancel = context.WithCancel(ctx)
	begin := time.Now()
	m.launch(ctx)
	var wg sync.WaitGroup
	for i := 0; i < connected && i < m.services; i++ {
		c := &simClient{name: workloadName(i, 0), svc: i}
		c.xc = client.New(client.Options{Addr: m.xdsAddr, NodeID: c.name, Cluster: svcName(i), Token: m.token, Logger: quietLogger()})
		m.clients[c.name] = c
		wg.Go(func() { _ = c.xc.Run(ctx, c) })
	}
	tb.Cleanup(func() {
		m.cancel()
		wg.Wait()
		<-m.done
	})
	for _, c := range m.clients {
		select {
		case <-c.xc.Synced():
		case <-ctx.Done():
			tb.Fatalf("initial sync: %v", ctx.Err())
		}
	}
	return time.Since(begin)
}

// settle waits until the control plane has compiled everything it was told
// of and compiled nothing more for 300ms.
func (m *meshSim) settle(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last, quiet := m.cp.compiles.Load(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if n := m.cp.compiles.Load(); n != last || m.cp.pending() {
			last, quiet = n, time.Now()
			continue
		}
		if time.Since(quiet) >= 300*time.Millisecond {
			return
		}
	}
	tb.Fatal("the control plane did not settle")
}

// probe is one measured change: the time it was made and what a client's
// configuration must satisfy once the change has reached it.
type probe struct {
	start time.Time
	match func(*resources.Set) bool
}

// simClient is a proxy: it counts pushes and records when the current
// probe's condition first holds.
type simClient struct {
	name string
	svc  int
	xc   *client.Client

	updates atomic.Int64
	mu      sync.Mutex
	set     *resources.Set
	probe   *probe
	arrived time.Duration // since probe.start; 0 while not arrived
}

// Update implements client.Handler.
func (c *simClient) Update(set *resources.Set) error {
	c.updates.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.set = set
	c.check()
	return nil
}

// check records the probe's arrival; c.mu must be held.
func (c *simClient) check() {
	if c.probe != nil && c.arrived == 0 && c.set != nil && c.probe.match(c.set) {
		c.arrived = max(time.Since(c.probe.start), time.Nanosecond)
	}
}

func (c *simClient) arm(p *probe) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probe, c.arrived = p, 0
	c.check()
}

func (c *simClient) result() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arrived
}

// roundResult is what one measured change did.
type roundResult struct {
	latencies []time.Duration // per affected client
	pushed    int             // clients that received any push
	missing   []string        // affected clients the change never reached
}

// measure arms the affected clients, makes the change, waits for it to reach
// all of them (up to timeout), then waits settle more and counts which
// clients received pushes.
func (m *meshSim) measure(tb testing.TB, affected []*simClient, match func(*resources.Set) bool, change func() error, timeout, settle time.Duration) roundResult {
	tb.Helper()
	before := map[string]int64{}
	for name, c := range m.clients {
		before[name] = c.updates.Load()
	}
	p := &probe{start: time.Now(), match: match}
	for _, c := range affected {
		c.arm(p)
	}
	if err := change(); err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		waiting := 0
		for _, c := range affected {
			if c.result() == 0 {
				waiting++
			}
		}
		if waiting == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(settle)
	var r roundResult
	for _, c := range affected {
		if d := c.result(); d > 0 {
			r.latencies = append(r.latencies, d)
		} else {
			r.missing = append(r.missing, c.name)
		}
		c.arm(nil)
	}
	for name, c := range m.clients {
		if c.updates.Load() != before[name] {
			r.pushed++
		}
	}
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	return r
}

// percentile of sorted durations (0 when empty).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d)-1) * p)
	return d[i]
}

// endpointHealth returns the health of the endpoint at addr in cluster, and
// whether it is present.
func endpointHealth(set *resources.Set, cluster, addr string) (healthy, present bool) {
	cla, ok := set.Endpoints[cluster]
	if !ok {
		return false, false
	}
	for _, loc := range cla.GetEndpoints() {
		for _, ep := range loc.GetLbEndpoints() {
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			if fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()) == addr {
				return ep.GetHealthStatus().String() == "HEALTHY", true
			}
		}
	}
	return false, false
}

// routeTimeout is the timeout of the first route of a RouteConfiguration.
func routeTimeout(set *resources.Set, name string) time.Duration {
	rc, ok := set.Routes[name]
	if !ok || len(rc.GetVirtualHosts()) == 0 || len(rc.GetVirtualHosts()[0].GetRoutes()) == 0 {
		return 0
	}
	return rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetTimeout().AsDuration()
}

// affectedClients are the connected clients of services that call s.
func (m *meshSim) affectedClients(s int) []*simClient {
	callers := m.callers(s)
	var out []*simClient
	for _, c := range m.clientList() {
		if callers[c.svc] {
			out = append(out, c)
		}
	}
	return out
}

func vsYAML(host string, timeout time.Duration) []byte {
	return fmt.Appendf(nil, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %s}
spec:
  hosts: [%s]
  http:
  - timeout: %s
    route:
    - destination: {host: %s}
`, host, host, timeout, host)
}
