package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/h2cli"
	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

// h2ProtocolOptions are an HTTP/2 cluster's protocol options with the
// connection limits.
func h2ProtocolOptions(t *testing.T, maxRequests uint32, maxAge time.Duration) map[string]*anypb.Any {
	t.Helper()
	o := &corev3.HttpProtocolOptions{}
	if maxRequests > 0 {
		o.MaxRequestsPerConnection = wrapperspb.UInt32(maxRequests)
	}
	if maxAge > 0 {
		o.MaxConnectionDuration = durationpb.New(maxAge)
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: proxytest.Any(t, &httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: o,
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}},
	})}
}

// TestH2ConnectionLimits: an HTTP/2 cluster retires a connection after
// max_requests_per_connection requests and after max_connection_duration,
// without failing the requests in flight on it; with the sidecar's own
// client (h2cli) and with net/http's (h2LimitPool).
func TestH2ConnectionLimits(t *testing.T) {
	for _, client := range []string{"h2cli", "nethttp"} {
		t.Run(client, func(t *testing.T) {
			if client == "nethttp" {
				t.Setenv("TRELLIS_PROXY_H2", "nethttp")
			}
			testH2ConnectionLimits(t)
		})
	}
}

func testH2ConnectionLimits(t *testing.T) {
	var mu sync.Mutex
	remotes := map[string]int{}
	a := newApp(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "not h2", http.StatusBadRequest)
			return
		}
		mu.Lock()
		remotes[r.RemoteAddr]++
		mu.Unlock()
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
	})
	conns := func() (n int, each map[string]int) {
		mu.Lock()
		defer mu.Unlock()
		each = map[string]int{}
		for k, v := range remotes {
			each[k] = v
		}
		clear(remotes)
		return len(each), each
	}
	m := newRMesh(t, false, true, []*app{a}, func(c *clusterv3.Cluster) {
		c.TypedExtensionProtocolOptions = h2ProtocolOptions(t, 3, 0)
	}, rroute("/", 5*time.Second, nil))
	_, own := m.p.cfg.Load().clusters[outCluster].up.transport.(*h2cli.Pool)
	if want := os.Getenv("TRELLIS_PROXY_H2") != "nethttp"; own != want {
		t.Fatalf("HTTP/2 cluster transport is h2cli: %t, want %t", own, want)
	}
	c := httpClient(t)
	for range 7 {
		if res, body := do(t, c, "GET", m.url("/x"), "", nil); res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, body)
		}
	}
	if n, each := conns(); n != 3 {
		t.Errorf("7 requests with max_requests_per_connection 3 used %d HTTP/2 connections, want 3 (3+3+1): %v", n, each)
	}

	// Concurrent requests share a connection up to the limit.
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if res, body := do(t, c, "GET", m.url("/x?sleep=100ms"), "", nil); res.StatusCode != 200 {
				t.Errorf("%d %s", res.StatusCode, body)
			}
		})
	}
	wg.Wait()
	if n, each := conns(); n < 2 || n > 4 {
		t.Errorf("6 concurrent requests with max_requests_per_connection 3: %d connections, want 2 (or a few more when the 7th request's connection is reused): %v", n, each)
	}

	// max_connection_duration: a connection older than 150ms takes no new
	// request, and a slow request on it still completes.
	m.set.Clusters[outCluster].TypedExtensionProtocolOptions = h2ProtocolOptions(t, 0, 150*time.Millisecond)
	if err := m.p.Update(m.set); err != nil {
		t.Fatal(err)
	}
	slow := make(chan int, 1)
	go func() {
		res, _ := do(t, c, "GET", m.url("/x?sleep=400ms"), "", nil)
		slow <- res.StatusCode
	}()
	time.Sleep(50 * time.Millisecond)
	do(t, c, "GET", m.url("/x"), "", nil) // same connection, still young
	time.Sleep(200 * time.Millisecond)
	do(t, c, "GET", m.url("/x"), "", nil) // a new connection
	if code := <-slow; code != 200 {
		t.Errorf("a request in flight when its connection aged out: %d, want 200", code)
	}
	if n, each := conns(); n != 2 {
		t.Errorf("max_connection_duration 150ms: %d connections, want 2: %v", n, each)
	}
}

// TestH2CliConnectError: with the sidecar's own HTTP/2 client, a dial
// failure reaches the retry loop and the 503 reason as a *connectError.
func TestH2CliConnectError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there any more
	c := &cluster{name: "c", connectTimeout: time.Second, http2: true, stats: newStatsRegistry().cluster("c")}
	up := newUpstream(c, nil, false)
	defer up.retire()
	req, _ := http.NewRequest("GET", "http://"+addr+"/x", nil)
	_, err = up.transport.RoundTrip(req)
	var ce *connectError
	if !errors.As(err, &ce) {
		t.Fatalf("RoundTrip error %v (%T), want a *connectError in its chain", err, err)
	}
	if code, reason := classifyUpstreamError(req.Context(), err); code != http.StatusServiceUnavailable || reason != reasonConnectFailure {
		t.Errorf("classified %d %s, want 503 %s", code, reason, reasonConnectFailure)
	}
	if n := c.stats.connectFailures.Load(); n != 1 {
		t.Errorf("connect failures counted: %d, want 1", n)
	}
}

// TestH2CliRefusedClassified: the retry loop classifies the pool's
// refusals (REFUSED_STREAM reset, stream above a GOAWAY's last id) as
// refused-stream, and its other stream errors as resets.
func TestH2CliRefusedClassified(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		want retry.Failure
	}{
		{&h2cli.StreamError{StreamID: 3, Code: http2.ErrCodeRefusedStream, Remote: true}, retry.RefusedStream},
		{&h2cli.GoAwayError{StreamID: 5, LastStreamID: 3, Code: http2.ErrCodeNo}, retry.RefusedStream},
		{&h2cli.StreamError{StreamID: 3, Code: http2.ErrCodeInternal, Remote: true}, retry.Reset},
	} {
		if o, _ := attemptOutcome(nil, tc.err, ctx, ctx, nil); o.Failure != tc.want {
			t.Errorf("%v: classified %v, want %v", tc.err, o.Failure, tc.want)
		}
	}
}

// TestH2LimitPoolConnectError: a dial failure keeps its type through
// NewClientConn, so retry_on connect-failure and the 503 reason see it.
func TestH2LimitPoolConnectError(t *testing.T) {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
		return nil, &connectError{errors.New("refused")}
	}
	p := newH2LimitPool(tr, "http", 2, 0, 0)
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/x", nil)
	_, err := p.RoundTrip(req)
	var ce *connectError
	if !errors.As(err, &ce) {
		t.Fatalf("RoundTrip error %v (%T), want a *connectError in its chain", err, err)
	}
	p.retire()
	if _, err := p.RoundTrip(req); !errors.Is(err, errPoolRetired) {
		t.Errorf("after retire: %v, want errPoolRetired", err)
	}
}
