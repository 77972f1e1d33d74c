package proxy

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestRetryToDifferentEndpoint: a 503 is retried on the other endpoint when
// previous_hosts is set. RANDOM balancing would send about a quarter of the
// requests back to the failing endpoint without the predicate.
func TestRetryToDifferentEndpoint(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		bad, good := newApp(t, "bad", failing(503)), newApp(t, "good", nil)
		m := newRMesh(t, legacy, false, []*app{bad, good},
			func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_RANDOM },
			rroute("/", 0, retryPolicy("5xx", 1, previousHosts(t, 100))))
		c := httpClient(t)
		const n = 30
		for i := range n {
			res, body := do(t, c, "GET", m.url("/x"), "", nil)
			if res.StatusCode != 200 || body != "good" {
				t.Fatalf("request %d: %d %q, want 200 from good", i, res.StatusCode, body)
			}
		}
		if got := bad.count.Load(); got == 0 || got > n {
			t.Errorf("bad endpoint saw %d requests, want 1..%d (each request at most once)", got, n)
		}
		if got := m.stat("retries"); got != fmt.Sprint(bad.count.Load()) {
			t.Errorf("retries stat %s, want %d", got, bad.count.Load())
		}
	})
}

// TestRetryConditionsAndMethods: retriable_request_headers restricting
// retries to idempotent methods (the compiler's default policy) leaves a
// POST alone; a policy without it retries a POST, resending its body.
func TestRetryConditionsAndMethods(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		var mu sync.Mutex
		var bodies []string
		a := newApp(t, "a", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, string(b))
			mu.Unlock()
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		m := newRMesh(t, legacy, false, []*app{a}, nil,
			rroute("/restricted", 0, retryPolicy("5xx", 2, idempotentOnly)),
			rroute("/conflict", 0, retryPolicy("retriable-4xx", 2, nil)),
			rroute("/", 0, retryPolicy("retriable-status-codes", 2, func(p *routev3.RetryPolicy) { p.RetriableStatusCodes = []uint32{503} })))
		c := httpClient(t)
		tests := []struct {
			method, path, body string
			want               int64
		}{
			{"GET", "/restricted", "", 3},
			{"PUT", "/restricted", "put-body", 3},
			{"POST", "/restricted", "post-body", 1},
			{"GET", "/conflict", "", 1}, // 503 is not a retriable 4xx
			{"POST", "/any", "again", 3},
		}
		for _, tt := range tests {
			a.count.Store(0)
			mu.Lock()
			bodies = nil
			mu.Unlock()
			res, _ := do(t, c, tt.method, m.url(tt.path), tt.body, nil)
			if res.StatusCode != 503 {
				t.Errorf("%s %s: status %d, want the last attempt's 503", tt.method, tt.path, res.StatusCode)
			}
			if got := a.count.Load(); got != tt.want {
				t.Errorf("%s %s: app saw %d attempts, want %d", tt.method, tt.path, got, tt.want)
			}
			mu.Lock()
			for i, b := range bodies {
				if b != tt.body {
					t.Errorf("%s %s: attempt %d body %q, want %q", tt.method, tt.path, i, b, tt.body)
				}
			}
			mu.Unlock()
		}
	})
}

// TestPerTryTimeout: an attempt slower than per_try_timeout is abandoned and
// retried elsewhere well within the route timeout; when every attempt is
// slow the caller gets 504 once the retries are used up.
func TestPerTryTimeout(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		slow, fast := newApp(t, "slow", sleeping(2*time.Second)), newApp(t, "fast", nil)
		perTry := func(p *routev3.RetryPolicy) {
			p.PerTryTimeout = durationpb.New(150 * time.Millisecond)
			previousHosts(t, 5)(p)
		}
		m := newRMesh(t, legacy, false, []*app{slow, fast}, nil,
			rroute("/", 3*time.Second, retryPolicy("5xx", 1, perTry)))
		c := httpClient(t)
		for i := range 4 {
			start := time.Now()
			res, body := do(t, c, "GET", m.url("/x"), "", nil)
			if res.StatusCode != 200 || body != "fast" {
				t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("request %d took %v, want about one per-try timeout at most", i, d)
			}
		}
		if slow.count.Load() == 0 {
			t.Error("the slow endpoint was never tried")
		}
		// Only slow endpoints: both attempts time out.
		m.set.Endpoints[outCluster] = claOf(t, slow)
		if err := m.p.Update(m.set); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res, _ := do(t, c, "GET", m.url("/x"), "", nil)
		if res.StatusCode != http.StatusGatewayTimeout || res.Header.Get("X-Trellis-Reason") != reasonTimeout {
			t.Errorf("all slow: %d %q, want 504 %s", res.StatusCode, res.Header.Get("X-Trellis-Reason"), reasonTimeout)
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("all slow: answered after %v, want about 2 × 150ms", d)
		}
	})
}

// TestRetryBudgetCapsLoad: an upstream failing every request sees at most
// the budget's extra load, however many retries the policy allows.
func TestRetryBudgetCapsLoad(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		a := newApp(t, "a", failing(503))
		m := newRMesh(t, legacy, false, []*app{a},
			func(c *clusterv3.Cluster) { c.Metadata = budgetMetadata(t, 0.2, 0, "10s") },
			rroute("/", 0, retryPolicy("5xx", 3, nil)))
		c := httpClient(t)
		const n = 50
		for range n {
			if res, _ := do(t, c, "GET", m.url("/x"), "", nil); res.StatusCode != 503 {
				t.Fatalf("status %d, want 503", res.StatusCode)
			}
		}
		// Without the budget: 4 attempts each, 200 in all. With 20%: 10 retries.
		if got := a.count.Load(); got > n+n/5 || got < n {
			t.Errorf("upstream saw %d requests for %d calls, want at most %d", got, n, n+n/5)
		}
		if m.stat("retries_budget_exhausted") == "0" {
			t.Error("retries_budget_exhausted not counted")
		}
	})
}

// TestUpgradeWithResilience: a WebSocket-style upgrade through a
// LEAST_REQUEST cluster with a retry policy (both wrap the net/http path's
// attempts) still hands over the upgraded connection.
func TestUpgradeWithResilience(t *testing.T) {
	a := &app{name: "ws", addr: serveApp(t, upgradeApp())}
	m := newRMesh(t, false, false, []*app{a},
		func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST },
		rroute("/", 0, retryPolicy("5xx", 2, func(p *routev3.RetryPolicy) { p.PerTryTimeout = durationpb.New(200 * time.Millisecond) })))
	conn, br := rawConn(t, m.addr)
	mustWrite(t, conn, "GET /ws HTTP/1.1\r\nHost: server\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	time.Sleep(300 * time.Millisecond) // past the per-try timeout: not applied to the upgraded connection
	mustWrite(t, conn, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
}
