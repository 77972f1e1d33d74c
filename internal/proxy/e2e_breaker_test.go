package proxy

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

type result struct {
	code    int
	reason  string
	elapsed time.Duration
}

// concurrent sends n GETs at once, each on its own connection.
func concurrent(t *testing.T, url string, n int) []result {
	t.Helper()
	out := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			start := time.Now()
			res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
			if err != nil {
				t.Errorf("GET: %v", err)
				return
			}
			_ = res.Body.Close()
			out[i] = result{res.StatusCode, res.Header.Get("X-Trellis-Reason"), time.Since(start)}
		}()
	}
	wg.Wait()
	return out
}

// TestCircuitBreakerConnections (fast path): with max_connections 1 and
// max_pending_requests 1, one request runs, one waits for its connection,
// and the rest fail at once with 503 upstream_overflow.
func TestCircuitBreakerConnections(t *testing.T) {
	fastOnly(t)
	a := newApp(t, "a", sleeping(300*time.Millisecond))
	m := newRMesh(t, false, false, []*app{a}, func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections: wrapperspb.UInt32(1), MaxPendingRequests: wrapperspb.UInt32(1),
		}}}
	}, rroute("/", 5*time.Second, nil))
	res := concurrent(t, m.url("/x"), 6)
	ok, overflow := 0, 0
	for _, r := range res {
		switch {
		case r.code == 200:
			ok++
		case r.code == 503 && r.reason == reasonOverflow:
			overflow++
			if r.elapsed > 250*time.Millisecond {
				t.Errorf("overflow answered after %v, want at once", r.elapsed)
			}
		default:
			t.Errorf("unexpected %d %q", r.code, r.reason)
		}
	}
	if ok != 2 || overflow != 4 {
		t.Errorf("%d ok, %d overflow; want 2 and 4", ok, overflow)
	}
	if got := m.stat("upstream_overflow"); got != "4" {
		t.Errorf("upstream_overflow = %s, want 4", got)
	}
	if got := a.count.Load(); got != 2 {
		t.Errorf("app saw %d requests, want 2", got)
	}
}

// TestCircuitBreakerRequests: max_requests bounds concurrent requests on
// both paths (on net/http it is the limit that applies to HTTP/2).
func TestCircuitBreakerRequests(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		a := newApp(t, "a", sleeping(300*time.Millisecond))
		m := newRMesh(t, legacy, false, []*app{a}, func(c *clusterv3.Cluster) {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
				MaxRequests: wrapperspb.UInt32(2),
			}}}
		}, rroute("/", 5*time.Second, nil))
		res := concurrent(t, m.url("/x"), 6)
		ok, overflow := 0, 0
		for _, r := range res {
			switch {
			case r.code == 200:
				ok++
			case r.code == 503 && r.reason == reasonOverflow:
				overflow++
			}
		}
		if ok != 2 || overflow != 4 {
			t.Errorf("%d ok, %d overflow; want 2 and 4", ok, overflow)
		}
	})
}

// TestConnectionLimits (fast path): max_requests_per_connection closes a
// connection after its Nth request; idle_timeout closes idle ones.
func TestConnectionLimits(t *testing.T) {
	fastOnly(t)
	var mu sync.Mutex
	remotes := map[string]int{}
	a := newApp(t, "a", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		remotes[r.RemoteAddr]++
		mu.Unlock()
	})
	m := newRMesh(t, false, false, []*app{a}, func(c *clusterv3.Cluster) {
		c.TypedExtensionProtocolOptions = protocolOptions(t, 3, 0)
	}, rroute("/", 0, nil))
	c := httpClient(t)
	for range 7 {
		do(t, c, "GET", m.url("/x"), "", nil)
	}
	mu.Lock()
	if len(remotes) != 3 {
		t.Errorf("7 requests used %d upstream connections, want 3 (3+3+1): %v", len(remotes), remotes)
	}
	mu.Unlock()

	clear(remotes)
	m.set.Clusters[outCluster].TypedExtensionProtocolOptions = protocolOptions(t, 0, 50*time.Millisecond)
	if err := m.p.Update(m.set); err != nil {
		t.Fatal(err)
	}
	do(t, c, "GET", m.url("/x"), "", nil)
	do(t, c, "GET", m.url("/x"), "", nil)
	time.Sleep(120 * time.Millisecond)
	do(t, c, "GET", m.url("/x"), "", nil)
	mu.Lock()
	if len(remotes) != 2 {
		t.Errorf("idle timeout: %d upstream connections, want 2: %v", len(remotes), remotes)
	}
	mu.Unlock()
}

func protocolOptions(t *testing.T, maxRequests uint32, idle time.Duration) map[string]*anypb.Any {
	t.Helper()
	o := &corev3.HttpProtocolOptions{}
	if maxRequests > 0 {
		o.MaxRequestsPerConnection = wrapperspb.UInt32(maxRequests)
	}
	if idle > 0 {
		o.IdleTimeout = durationpb.New(idle)
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: proxytest.Any(t, &httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: o,
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}},
	})}
}

// TestTCPMaxConnections: a tcp_proxy cluster's max_connections bounds the
// proxied connections; one more is closed at once (upstream_overflow), and
// a connect failure counts for outlier detection.
func TestTCPMaxConnections(t *testing.T) {
	const name = "outbound|9000||echo"
	echo := serveEcho(t)
	p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
	addr := proxytest.FreeAddr(t)
	set := resources.NewSet()
	set.Listeners["tcp"] = proxytest.Listener(t, "tcp", addr, proxytest.TCPProxy(t, name), nil)
	c := proxytest.StaticCluster(t, name, echo, false)
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxConnections: wrapperspb.UInt32(1)}}}
	set.Clusters[name] = c
	if err := p.Update(set); err != nil {
		t.Fatal(err)
	}
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_ = first.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := first.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(first, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := second.Read(buf); err == nil {
		t.Errorf("second connection read %q, want it closed", buf[:n])
	}
	waitStat(t, p, "cluster."+name+".upstream_overflow 1")
}
