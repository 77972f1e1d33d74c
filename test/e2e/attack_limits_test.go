package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxyTimeout reads a duration constant of internal/proxy/listeners.go
// ("name = N * time.Second|Minute"), so the tests follow the code.
func proxyTimeout(t testing.TB, name string) time.Duration {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "internal", "proxy", "listeners.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\b` + name + `\s*=\s*(\d+)\s*\*\s*time\.(Second|Minute)\b`).FindSubmatch(src)
	if m == nil {
		t.Fatalf("internal/proxy/listeners.go: no constant %q of the form N * time.Second", name)
	}
	d, _ := time.ParseDuration(string(m[1]) + map[string]string{"Second": "s", "Minute": "m"}[string(m[2])])
	return d
}

// testHeaderLimits: oversized heads are refused before anything reaches
// the app, at both ports: a field section beyond 64 KiB or with more than
// 100 fields (Envoy's max_headers_count) is 431, a request line beyond the
// limit 414; the connection closes.
func testHeaderLimits(t *testing.T, am *attackMesh) {
	big := strings.Repeat("a", 100<<10)
	cases := []struct {
		name string
		req  string
		want int
	}{
		{"100 KiB header", "GET {path} HTTP/1.1\r\nHost: sink\r\nX-Big: " + big + "\r\n\r\n", 431},
		{"100 KiB header on HTTP/1.0 (slow path)", "GET {path} HTTP/1.0\r\nHost: sink\r\nX-Big: " + big + "\r\n\r\n", 431},
		{"10,000 tiny headers (50 KB)", "GET {path} HTTP/1.1\r\nHost: sink\r\n" + strings.Repeat("x:y\r\n", 10000) + "\r\n", 431},
		{"10,000 small headers (120 KB)", "GET {path} HTTP/1.1\r\nHost: sink\r\n" + manyHeaders(10000) + "\r\n", 431},
		{"101 headers", "GET {path} HTTP/1.1\r\nHost: sink\r\n" + manyHeaders(100) + "\r\n", 431},
		{"100 KiB request line", "GET {path}?q=" + big + " HTTP/1.1\r\nHost: sink\r\n\r\n", 414},
		// Controls: just under the limits, the request is served.
		{"90 headers (control)", "GET {path} HTTP/1.1\r\nHost: sink\r\n" + manyHeaders(90) + "\r\n", 200},
		{"60 KB header (control)", "GET {path} HTTP/1.1\r\nHost: sink\r\nX-Big: " + big[:60000] + "\r\n\r\n", 200},
	}
	for _, port := range []string{"outbound", "inbound"} {
		t.Run(port, func(t *testing.T) {
			for i, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					var c net.Conn
					if port == "outbound" {
						c = am.dialOutbound(t)
					} else {
						c = am.dialInbound(t, am.ca.peer(t, clientID), "http/1.1")
					}
					path := fmt.Sprintf("/limits/%s/%d", port, i)
					started := am.sink.started.Load()
					closeWait := 2 * time.Second
					if tc.want == 200 {
						closeWait = 0 // kept alive
					}
					reply := exchange(c, []byte(strings.ReplaceAll(tc.req, "{path}", path)), 5*time.Second, closeWait)
					if reply.status != tc.want {
						t.Fatalf("answer %v, want %d", reply, tc.want)
					}
					if tc.want == 200 {
						if am.sink.seen(path) != 1 {
							t.Fatalf("the app saw the request %d times, want once", am.sink.seen(path))
						}
						return
					}
					if !reply.closed {
						t.Error("connection not closed after the refusal")
					}
					if n := am.sink.started.Load() - started; n != 0 {
						t.Errorf("%d requests reached the app", n)
					}
				})
			}
		})
	}
	am.legitGet(t, "/after-limits")
}

func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-Header-%d: value\r\n", i)
	}
	return b.String()
}

// testSlowloris: clients that send a request head one byte per second are
// closed at the read-header timeout (the limit of the whole head, not of
// each byte), at both ports, as is a TLS client that never finishes its
// handshake; 50 of them at once do not keep a normal client from being
// served.
func testSlowloris(t *testing.T, am *attackMesh) {
	timeout := proxyTimeout(t, "readHeaderTimeout")
	const clients = 50
	type result struct {
		kind   string
		closed time.Duration // 0: still open at the end
		err    error
	}
	results := make(chan result, clients+1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	slow := func(kind string, c net.Conn, begin time.Time, trickle bool) {
		defer wg.Done()
		defer c.Close()
		res := result{kind: kind}
		if trickle {
			if _, err := c.Write([]byte("GET /slowloris HTTP/1.1\r\nHost: sink\r\nX-Slow: ")); err != nil {
				results <- result{kind: kind, err: err}
				return
			}
		}
		buf := make([]byte, 512)
		for {
			select {
			case <-stop:
				results <- res
				return
			default:
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			_, err := c.Read(buf)
			var ne net.Error
			if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
				res.closed = time.Since(begin)
				results <- res
				return
			}
			if trickle {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte("a")); err != nil {
					res.closed = time.Since(begin)
					results <- res
					return
				}
			}
		}
	}
	cert := am.ca.peer(t, clientID)
	for i := range clients {
		var c net.Conn
		kind := ""
		switch {
		case i == 0:
			// A TLS client that never sends its ClientHello.
			var err error
			if c, err = net.DialTimeout("tcp", am.sinkInbound, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			kind = "inbound, no TLS handshake"
		case i%2 == 0:
			c, kind = am.dialInbound(t, cert, "http/1.1"), "inbound, head trickled over mTLS"
		default:
			c, kind = am.dialOutbound(t), "outbound, head trickled"
		}
		wg.Add(1)
		go slow(kind, c, time.Now(), i != 0)
	}
	// While they trickle, a normal client is served, promptly.
	deadline := time.Now().Add(timeout + 3*time.Second)
	served := 0
	for time.Now().Before(deadline) {
		begin := time.Now()
		am.legitGet(t, "/during-slowloris")
		if d := time.Since(begin); d > time.Second {
			t.Errorf("a normal request took %v during the slowloris", d)
		}
		served++
		time.Sleep(250 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(results)
	for r := range results {
		switch {
		case r.err != nil:
			t.Errorf("%s: %v", r.kind, r.err)
		case r.closed == 0:
			t.Errorf("%s: still open after %v (read-header timeout %v)", r.kind, timeout+3*time.Second, timeout)
		case r.closed < timeout-500*time.Millisecond || r.closed > timeout+2*time.Second:
			t.Errorf("%s: closed after %v, want the read-header timeout %v", r.kind, r.closed.Round(10*time.Millisecond), timeout)
		}
	}
	if am.sink.seen("/slowloris") != 0 {
		t.Errorf("a trickled request reached the app")
	}
	t.Logf("%d slow clients closed at about %v; %d normal requests served meanwhile", clients, timeout, served)
}

// testIdleTimeout: a kept-alive connection with no request is closed at
// the idle timeout (5 minutes, so only with TRELLIS_E2E_LONG=1).
func testIdleTimeout(t *testing.T, am *attackMesh) {
	idle := proxyTimeout(t, "idleTimeout")
	if os.Getenv("TRELLIS_E2E_LONG") == "" {
		t.Skipf("the idle timeout is %v; set TRELLIS_E2E_LONG=1 to wait for it", idle)
	}
	var wg sync.WaitGroup
	for _, port := range []string{"outbound", "inbound"} {
		var c net.Conn
		if port == "outbound" {
			c = am.dialOutbound(t)
		} else {
			c = am.dialInbound(t, am.ca.peer(t, clientID), "http/1.1")
		}
		if r := exchange(c, []byte("GET /idle HTTP/1.1\r\nHost: sink\r\n\r\n"), 5*time.Second, 0); r.status != 200 {
			t.Fatalf("%s: first request: %v", port, r)
		}
		begin := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(begin.Add(idle + 30*time.Second))
			_, err := c.Read(make([]byte, 1))
			d := time.Since(begin)
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				t.Errorf("%s: idle connection still open after %v", port, d)
			case d < idle-time.Second || d > idle+5*time.Second:
				t.Errorf("%s: idle connection closed after %v, want %v", port, d, idle)
			}
		}()
	}
	wg.Wait()
}
