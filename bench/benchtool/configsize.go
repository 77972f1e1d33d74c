package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store"
	"github.com/trellis-mesh/trellis/internal/store/embedded"
	"github.com/trellis-mesh/trellis/internal/xds/client"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// configsize measures what one proxy's configuration is made of as the mesh
// grows: issue 3 wants a sidecar's config to follow what its workload
// calls, not the size of the mesh.
//
//	for each mesh size N (services m0000…, 10 workloads each, each calling 3 others):
//	  store seeded ─► trellis control ─► probe proxies probe-K (K upstreams) connect over ADS
//	  ─► resources and encoded bytes per type of each probe's config
//
// Probes call m0000…m(K-1), so the same probe has the same dependencies in
// every mesh: its config must not grow with N.
const (
	cfgPerService = 10
	cfgMeshCalls  = 3
)

var cfgProbes = []int{1, 4, 16}

// configSize is one probe's configuration in one mesh.
type configSize struct {
	Services, Endpoints, Upstreams int
	Listeners, Routes, Clusters    int
	LBEndpoints                    int // endpoints in all its ClusterLoadAssignments
	Bytes                          int // protobuf-encoded size of all its resources
}

func cfgSvc(i int) string { return fmt.Sprintf("m%04d", i) }

// cfgWorkload is a workload of the simulated mesh; calls are service indexes.
func cfgWorkload(name, svc string, k int, calls []int) *model.Workload {
	w := &model.Workload{Spec: model.WorkloadSpec{
		Service: svc,
		Ports: []model.WorkloadPort{{Port: 80, Protocol: model.ProtocolHTTP, App: "127.0.0.1:8080",
			Inbound: fmt.Sprintf("127.%d.%d.%d:15006", 1+k%200, (k/200)%250, 1+k%250)}},
	}}
	w.Kind, w.APIVersion = model.KindWorkload, model.APIVersionTrellis
	w.Name, w.Namespace = name, model.DefaultNamespace
	for n, c := range calls {
		w.Spec.Upstreams = append(w.Spec.Upstreams, model.Upstream{Service: cfgSvc(c), Local: fmt.Sprintf("127.0.0.1:%d", 20000+n)})
	}
	return w
}

// cfgRecords is the store content of a mesh of n services plus the probes.
func cfgRecords(n int) ([]store.Record, error) {
	var ws []*model.Workload
	id := 0
	for i := 0; i < n; i++ {
		calls := []int{(i + 1) % n, (i + 7) % n, (i + 31) % n}[:min(cfgMeshCalls, n-1)]
		for k := 0; k < cfgPerService; k++ {
			ws = append(ws, cfgWorkload(fmt.Sprintf("%s-w%d", cfgSvc(i), k), cfgSvc(i), id, calls))
			id++
		}
	}
	for _, k := range cfgProbes {
		calls := make([]int, min(k, n))
		for i := range calls {
			calls[i] = i
		}
		name := "probe-" + strconv.Itoa(k)
		ws = append(ws, cfgWorkload(name, name, id, calls))
		id++
	}
	recs := make([]store.Record, 0, len(ws))
	for _, w := range ws {
		if _, err := model.Validate(w); err != nil {
			return nil, fmt.Errorf("workload %s: %w", w.Name, err)
		}
		data, err := json.Marshal(w)
		if err != nil {
			return nil, err
		}
		recs = append(recs, store.Record{Kind: model.KindWorkload, Namespace: w.Namespace, Name: w.Name, Data: data})
	}
	return recs, nil
}

// measureSet counts one configuration.
func measureSet(set *resources.Set) configSize {
	var c configSize
	c.Listeners, c.Routes, c.Clusters = len(set.Listeners), len(set.Routes), len(set.Clusters)
	for _, l := range set.Listeners {
		c.Bytes += proto.Size(l)
	}
	for _, r := range set.Routes {
		c.Bytes += proto.Size(r)
	}
	for _, cl := range set.Clusters {
		c.Bytes += proto.Size(cl)
	}
	for _, e := range set.Endpoints {
		c.Bytes += proto.Size(e)
		for _, le := range e.GetEndpoints() {
			c.LBEndpoints += len(le.GetLbEndpoints())
		}
	}
	return c
}

// probeHandler keeps a probe's latest configuration.
type probeHandler struct {
	mu   sync.Mutex
	set  *resources.Set
	last time.Time
}

func (h *probeHandler) Update(set *resources.Set) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.set, h.last = set, time.Now()
	return nil
}

func (h *probeHandler) snapshot() (*resources.Set, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.set, h.last
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// measureMesh seeds a store with a mesh of n services, runs `trellis
// control` on it and returns each probe's config, by upstream count.
func measureMesh(ctx context.Context, trellis, dir string, n int) (map[int]configSize, error) {
	data := filepath.Join(dir, fmt.Sprintf("data-%d", n))
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	recs, err := cfgRecords(n)
	if err != nil {
		return nil, err
	}
	st, err := embedded.Open(filepath.Join(data, "trellis.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, fmt.Errorf("seed store: %w", err)
	}
	if _, err := st.PutAll(ctx, recs); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("seed store: %w", err)
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	xdsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("control-%d.log", n)))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	// A long health TTL: no sidecar heartbeats for these workloads, and
	// their endpoints must stay in the config.
	cmd := exec.CommandContext(cctx, trellis, "control", "--data-dir", data, "--admin-addr", adminAddr,
		"--xds-addr", xdsAddr, "--health-ttl", "10m")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start trellis control: %w", err)
	}
	var wg sync.WaitGroup // the probes' xDS clients
	defer func() { stop(); wg.Wait(); _ = cmd.Wait() }()

	admin := api.NewClient("http://"+adminAddr, "")
	var token string
	for deadline := time.Now().Add(60 * time.Second); ; {
		if token, err = admin.CreateToken(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("trellis control (%d services) not answering after 60s: %w", n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	handlers := map[int]*probeHandler{}
	var clients []*client.Client
	for _, k := range cfgProbes {
		name := "probe-" + strconv.Itoa(k)
		h := &probeHandler{}
		c := client.New(client.Options{Addr: xdsAddr, NodeID: name, Cluster: name, Token: token,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		handlers[k], clients = h, append(clients, c)
		wg.Go(func() { _ = c.Run(cctx, h) })
	}
	syncCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, c := range clients {
		select {
		case <-c.Synced():
		case <-syncCtx.Done():
			return nil, fmt.Errorf("probes not synced after 60s with %d services", n)
		}
	}
	// Settled: no update to any probe for 1s (EDS follows CDS).
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		quiet := true
		for _, h := range handlers {
			if _, last := h.snapshot(); time.Since(last) < time.Second {
				quiet = false
			}
		}
		if quiet {
			break
		}
	}
	out := map[int]configSize{}
	for k, h := range handlers {
		set, _ := h.snapshot()
		if set == nil {
			return nil, fmt.Errorf("probe-%d: no configuration", k)
		}
		c := measureSet(set)
		c.Services, c.Endpoints, c.Upstreams = n, n*cfgPerService, min(k, n)
		out[k] = c
	}
	return out, nil
}

// configSizes measures every probe in every mesh size, smallest first.
func configSizes(trellis, dir string, sizes []int) ([]configSize, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var all []configSize
	for _, n := range sizes {
		m, err := measureMesh(ctx, trellis, dir, n)
		if err != nil {
			return nil, err
		}
		for _, k := range cfgProbes {
			all = append(all, m[k])
		}
	}
	return all, nil
}

// configVerdict says whether config size follows dependencies: for each
// probe, the config in the largest mesh is at most 10% larger than in the
// smallest (the mesh grew, the probe's dependencies did not).
func configVerdict(all []configSize) (bool, string) {
	if len(all) == 0 {
		return false, "nothing measured"
	}
	first, last := map[int]configSize{}, map[int]configSize{}
	for _, c := range all {
		if _, ok := first[c.Upstreams]; !ok || c.Services < first[c.Upstreams].Services {
			first[c.Upstreams] = c
		}
		if c.Services > last[c.Upstreams].Services {
			last[c.Upstreams] = c
		}
	}
	ok, why := true, ""
	for _, k := range cfgProbes {
		a, b := first[k], last[k]
		if a.Bytes == 0 {
			return false, fmt.Sprintf("probe with %d upstreams: empty config", k)
		}
		growth := float64(b.Bytes) / float64(a.Bytes)
		why += fmt.Sprintf("%s%d upstreams: %.2f×", map[bool]string{true: "", false: ", "}[why == ""], k, growth)
		if growth > 1.10 {
			ok = false
		}
	}
	a, b := first[cfgProbes[0]], last[cfgProbes[0]]
	return ok, fmt.Sprintf("config bytes in the %d-service mesh ÷ in the %d-service mesh: %s", b.Services, a.Services, why)
}

// configSizeCmd prints one Markdown table row per measurement, then
// "VERDICT met|not-met: why".
func configSizeCmd(trellis, dir string, sizes []int) error {
	if len(sizes) < 2 {
		return errors.New("configsize: want at least two mesh sizes")
	}
	all, err := configSizes(trellis, dir, sizes)
	if err != nil {
		return fmt.Errorf("configsize: %w", err)
	}
	for _, c := range all {
		fmt.Printf("| %d services, %d endpoints | %d | %d / %d / %d | %d | %d | %.0f |\n",
			c.Services, c.Endpoints, c.Upstreams, c.Listeners, c.Routes, c.Clusters, c.LBEndpoints, c.Bytes, float64(c.Bytes)/float64(c.Upstreams))
	}
	ok, why := configVerdict(all)
	fmt.Printf("VERDICT %s: %s\n", map[bool]string{true: "met", false: "not-met"}[ok], why)
	return nil
}
