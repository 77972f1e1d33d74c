package controlplane

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/compile"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// Scale of BenchmarkControlPlaneScale (issue 3: 1,000 proxies, 1,000
// services, 10,000 endpoints). Run it once:
//
//	go test -run '^$' -bench ControlPlaneScale -benchtime 1x -timeout 5m ./internal/controlplane/
var (
	scaleServices   = flag.Int("cpscale.services", 1000, "services in the simulated mesh")
	scalePerService = flag.Int("cpscale.perservice", 10, "workloads (endpoints) per service")
	scaleConnected  = flag.Int("cpscale.proxies", 1000, "connected xDS clients (workload 0 of the first N services)")
	scaleRounds     = flag.Int("cpscale.rounds", 5, "measured changes of each kind")
	scaleHeap       = flag.String("cpscale.heapprofile", "", "write a heap profile here at the memory measurement")
	scaleProcess    = flag.Bool("cpscale.process", false, "run the control plane as a `trellis control` process (its own RSS)")
	scaleCPEnv      = flag.String("cpscale.cpenv", "", "with -cpscale.process: extra environment of the control plane process, space-separated NAME=VALUE (e.g. GOGC=50)")
	scaleCPUSeconds = flag.Int("cpscale.cpuseconds", 8, "with -cpscale.cpprofile: seconds of CPU profile taken after the initial sync")
	scaleCPProfile  = flag.String("cpscale.cpprofile", "", "with -cpscale.process: write the control plane's heap profiles (after the initial sync and at the end) and MemStats into this directory")
)

// BenchmarkControlPlaneScale starts the real control plane, connects the
// simulated proxies and measures how fast changes reach them, and to how
// many. Figures are reported as custom metrics; ns/op is meaningless.
func BenchmarkControlPlaneScale(b *testing.B) {
	if testing.Short() {
		b.Skip("scale benchmark skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	services, per, connected := *scaleServices, *scalePerService, *scaleConnected
	var m *meshSim
	if *scaleProcess {
		m = newMeshSimProcess(b, ctx, services, per)
	} else {
		m = newMeshSim(b, ctx, services, per)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBase := ms.HeapInuse
	syncTime := m.start(b, ctx, connected)
	b.Logf("mesh: %d services × %d workloads = %d endpoints, %d connected proxies", services, per, services*per, len(m.clients))
	b.Logf("initial sync (control plane start, full compile, %d clients connected and synced): %v", len(m.clients), syncTime)
	b.ReportMetric(syncTime.Seconds(), "initial-sync-s")
	m.logProcessMemory(b, "after the initial sync")
	m.writeProfiles(b, ctx, "sync")
	cpuDone := m.profileCPU(b, ctx)

	report := func(kind string, rs []roundResult) {
		var all []time.Duration
		pushed, missing := 0, 0
		for _, r := range rs {
			all = append(all, r.latencies...)
			pushed += r.pushed
			missing += len(r.missing)
		}
		sortDurations(all)
		b.Logf("%s: %d rounds, %d arrivals: p50 %v p99 %v max %v; clients pushed per round %.1f; never arrived %d",
			kind, len(rs), len(all), percentile(all, 0.5), percentile(all, 0.99), percentile(all, 1), float64(pushed)/float64(len(rs)), missing)
		b.ReportMetric(percentile(all, 0.99).Seconds()*1000, kind+"-p99-ms")
		b.ReportMetric(float64(pushed)/float64(len(rs)), kind+"-pushed/round")
	}

	// (a) one endpoint's health flips.
	target := services / 2
	affected := m.affectedClients(target)
	cluster := compile.ClusterName(80, "", svcName(target))
	addr := inboundAddr(target, 1)
	b.Logf("endpoint flips: workload %s; %d connected proxies call %s", workloadName(target, 1), len(affected), svcName(target))
	var flips []roundResult
	for r := 0; r < *scaleRounds; r++ {
		ready := r%2 == 1
		match := func(set *resources.Set) bool { h, ok := endpointHealth(set, cluster, addr); return ok && h == ready }
		flips = append(flips, m.measure(b, affected, match, func() error {
			return m.heartbeat(ctx, workloadName(target, 1), ready)
		}, 10*time.Second, 300*time.Millisecond))
	}
	report("flip", flips)

	// (a') a workload registers.
	var regs []roundResult
	for r := 0; r < *scaleRounds; r++ {
		k := per + r
		w := m.workload(target, k)
		match := func(set *resources.Set) bool {
			_, ok := endpointHealth(set, cluster, inboundAddr(target, k))
			return ok
		}
		regs = append(regs, m.measure(b, affected, match, func() error { return m.register(ctx, w) }, 10*time.Second, 300*time.Millisecond))
	}
	report("register", regs)

	// (b) a VirtualService on the hub, which every proxy calls.
	hub := svcName(0)
	route := fmt.Sprintf("outbound|80|%s", hub)
	admin := api.NewClient(m.adminURL, "")
	var edits []roundResult
	hubCallers := m.affectedClients(0)
	for r := 0; r < *scaleRounds; r++ {
		timeout := time.Duration(r+1) * time.Second
		match := func(set *resources.Set) bool { return routeTimeout(set, route) == timeout }
		edits = append(edits, m.measure(b, hubCallers, match, func() error {
			_, err := admin.Apply(ctx, vsYAML(hub, timeout), "bench", false)
			return err
		}, 30*time.Second, 300*time.Millisecond))
	}
	report("vs-edit", edits)

	// (c) memory.
	if m.proc != nil {
		rss, peak, err := processMemory(m.proc.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		cpu := processCPU(m.proc.Process.Pid)
		<-cpuDone
		m.writeProfiles(b, ctx, "end")
		b.Logf("memory (trellis control process alone): VmRSS %d MB, peak VmHWM %d MB; CPU %.2f s", rss>>20, peak>>20, cpu.Seconds())
		b.ReportMetric(cpu.Seconds(), "cp-cpu-s")
		b.ReportMetric(float64(rss>>20), "cp-rss-MB")
		b.ReportMetric(float64(peak>>20), "cp-peak-rss-MB")
		return
	}
	// In process the clients share the heap: HeapInuse before they
	// connected (store + model, nothing compiled) is the baseline, and
	// -cpscale.heapprofile tells the two apart.
	runtime.GC()
	runtime.ReadMemStats(&ms)
	rss := vmRSS()
	if *scaleHeap != "" {
		if err := writeHeapProfile(*scaleHeap); err != nil {
			b.Error(err)
		}
	}
	b.Logf("memory (whole process, control plane + %d clients): HeapInuse %d MB (before start %d MB), Sys %d MB, VmRSS %d MB",
		len(m.clients), ms.HeapInuse>>20, heapBase>>20, ms.Sys>>20, rss>>20)
	b.ReportMetric(float64(ms.HeapInuse>>20), "heap-MB")
	b.ReportMetric(float64(rss>>20), "rss-MB")
	b.ReportMetric(float64(m.cp.compiles.Load()), "compiles")
}

// logProcessMemory logs the control plane process's VmRSS and VmHWM (process mode only).
func (m *meshSim) logProcessMemory(tb testing.TB, when string) {
	if m.proc == nil {
		return
	}
	if rss, peak, err := processMemory(m.proc.Process.Pid); err == nil {
		tb.Logf("memory %s (trellis control process alone): VmRSS %d MB, peak VmHWM %d MB; CPU %.2f s", when, rss>>20, peak>>20, processCPU(m.proc.Process.Pid).Seconds())
	}
}

// processCPU is the user+system CPU time a process has used (0 if unknown).
func processCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	_, rest, ok := strings.Cut(string(data), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

// writeProfiles saves the control plane's heap profile (after a GC), its
// MemStats (the text form's trailer) and its goroutines into
// -cpscale.cpprofile, as heap-WHEN.pb.gz, heap-WHEN.txt and
// goroutine-WHEN.txt (process mode only).
func (m *meshSim) writeProfiles(tb testing.TB, ctx context.Context, when string) {
	dir := *scaleCPProfile
	if dir == "" || m.proc == nil {
		return
	}
	for _, f := range []struct{ path, file string }{
		{"heap?debug=1", "heap-" + when + ".txt"},
		{"heap?gc=1", "heap-" + when + ".pb.gz"},
		{"goroutine?debug=1", "goroutine-" + when + ".txt"},
	} {
		if err := fetchToFile(ctx, m.adminURL+"/debug/pprof/"+f.path, filepath.Join(dir, f.file)); err != nil {
			tb.Errorf("control plane heap profile: %v", err)
		}
	}
}

// profileCPU starts a CPU profile of the control plane over the measured
// changes (-cpscale.cpprofile, process mode), written to cpu.pb.gz; the
// channel is closed when it is written (at once without a profile).
func (m *meshSim) profileCPU(tb testing.TB, ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if *scaleCPProfile == "" || m.proc == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		url := m.adminURL + "/debug/pprof/profile?seconds=" + strconv.Itoa(*scaleCPUSeconds)
		if err := fetchToFile(ctx, url, filepath.Join(*scaleCPProfile, "cpu.pb.gz")); err != nil {
			tb.Errorf("control plane CPU profile: %v", err)
		}
	}()
	return done
}

func fetchToFile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	return os.WriteFile(path, data, 0o600)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func sortDurations(d []time.Duration) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j] < d[j-1]; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}

// vmRSS is this process's resident set size from /proc/self/status (0 if unknown).
func vmRSS() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
