package proxy

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// idleSet is a sidecar's outbound config for n services: per service an
// HTTP listener whose inline route goes to an EDS cluster with one endpoint
// (nothing listens there: the listeners stay idle).
func idleSet(t testing.TB, n int) *resources.Set {
	t.Helper()
	set := resources.NewSet()
	addrs := freeAddrs(t, n)
	for i := range n {
		name := fmt.Sprintf("svc-%03d", i)
		rc := proxytest.RouteConfig(name, proxytest.PrefixRoute("/", name, 0))
		set.Listeners[name] = proxytest.Listener(t, name, addrs[i], proxytest.HCM(t, "", rc, false), nil)
		set.Clusters[name] = proxytest.EDSCluster(t, name, []string{"spiffe://test.local/ns/default/sa/" + name}, false)
		set.Endpoints[name] = proxytest.CLA(t, name, []string{fmt.Sprintf("127.0.0.1:%d", 1+i)})
	}
	return set
}

// freeAddrs returns n distinct loopback addresses that were free a moment
// ago.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// footprint is what the process holds: live heap, goroutine stacks and
// goroutines, after collecting twice (the second frees what finalizers
// released).
type footprint struct {
	heap, stack uint64
	goroutines  int
}

func measureFootprint() footprint {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return footprint{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// waitGoroutines waits until the goroutine count settles (listeners start
// serving on their own goroutines after Update returns).
func waitGoroutines(t testing.TB, atLeast int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n >= atLeast || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleListenerGoroutines: an idle HTTP listener runs its accept loop
// only: its net/http server starts with the first connection handed off.
func TestIdleListenerGoroutines(t *testing.T) {
	const n = 40
	p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
	before := runtime.NumGoroutine()
	if err := p.Update(idleSet(t, n)); err != nil {
		t.Fatal(err)
	}
	got := waitGoroutines(t, before+n) - before
	if got > n {
		t.Errorf("%d idle HTTP listeners run %d goroutines, want at most %d", n, got, n)
	}
}

// BenchmarkIdleListeners reports what one idle HTTP listener with its
// cluster costs, as the sidecar's idle memory with many upstream services
// is mostly that: go test -run '^$' -bench IdleListeners ./internal/proxy/
func BenchmarkIdleListeners(b *testing.B) {
	const n = 100
	id := proxytest.NewCA(b, trustDomain).Identity(b, clientID)
	// The first Update pays protobuf's lazy initialisation of the message
	// types; the proxies measured come after it.
	if err := newProxyOpts(b, Options{Identity: id}).Update(idleSet(b, n)); err != nil {
		b.Fatal(err)
	}
	var heap, stack, goroutines float64
	for b.Loop() {
		b.StopTimer()
		p, err := New(Options{Identity: id})
		if err != nil {
			b.Fatal(err)
		}
		set := idleSet(b, n)
		start := measureFootprint()
		b.StartTimer()
		if err := p.Update(set); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		set = nil
		waitGoroutines(b, start.goroutines+n)
		end := measureFootprint()
		heap += float64(int64(end.heap) - int64(start.heap))
		stack += float64(int64(end.stack) - int64(start.stack))
		goroutines += float64(end.goroutines - start.goroutines)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := p.Shutdown(ctx); err != nil {
			b.Error(err)
		}
		cancel()
		b.StartTimer()
	}
	per := float64(b.N * n)
	b.ReportMetric(heap/per, "heap-B/listener")
	b.ReportMetric(stack/per, "stack-B/listener")
	b.ReportMetric(goroutines/per, "goroutines/listener")
}
