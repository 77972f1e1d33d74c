package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

// bufSeen is what bufApp saw of one request.
type bufSeen struct {
	cl       int64  // r.ContentLength: -1 when the body came chunked
	te       string // Transfer-Encoding
	n        int    // body bytes
	sum      uint32 // their CRC-32
	trailers int
}

// bufApp records every request's body framing, length and checksum; a
// request with X-Fail: N is answered 503 (after its body is read) until N
// requests with the same X-Fail-Key failed.
type bufApp struct {
	mu    sync.Mutex
	seen  map[string][]bufSeen // by path
	fails map[string]int
}

func newBufApp() *bufApp { return &bufApp{seen: map[string][]bufSeen{}, fails: map[string]int{}} }

func (a *bufApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s := bufSeen{cl: r.ContentLength, te: strings.Join(r.TransferEncoding, ","), n: len(b), sum: crc32.ChecksumIEEE(b), trailers: len(r.Trailer)}
	a.mu.Lock()
	a.seen[r.URL.Path] = append(a.seen[r.URL.Path], s)
	fail := false
	if n := r.Header.Get("X-Fail"); n != "" {
		k := r.Header.Get("X-Fail-Key")
		fail = fmt.Sprint(a.fails[k]) < n
		a.fails[k]++
	}
	a.mu.Unlock()
	if fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "len=%d", len(b))
}

func (a *bufApp) requests(path string) []bufSeen {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]bufSeen(nil), a.seen[path]...)
}

// patterned is n bytes that differ from one position to the next.
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// bufferMesh is a client sidecar whose outbound listener has the buffer
// filter (limit 256 KiB) in front of a bufApp, with routes /off (disabled),
// /small (1 KiB), /retry (one retry on 5xx) and / (the filter's limit).
func bufferMesh(t *testing.T, legacy bool) (*rmesh, *bufApp) {
	t.Helper()
	a := newBufApp()
	up := &app{name: "buf", addr: serveApp(t, a)}
	off := rroute("/off", 0, nil)
	off.TypedPerFilterConfig = perFilter(t, bufName, bufferOff())
	small := rroute("/small", 0, nil)
	small.TypedPerFilterConfig = perFilter(t, bufName, bufferPerRoute(1<<10))
	m := newRMesh(t, legacy, false, []*app{up}, nil, off, small, rroute("/retry", 0, retryPolicy("5xx", 1, nil)), rroute("/", 0, nil))
	m.set.Listeners[outName] = proxytest.Listener(t, outName, m.addr, hcmWith(t, outName, httpFilterEntry(t, bufName, bufferCfg(256<<10))), nil)
	if err := m.p.Update(m.set); err != nil {
		t.Fatal(err)
	}
	return m, a
}

// TestBufferFilter sends bodies of each framing and size through the
// buffer filter on both request paths.
func TestBufferFilter(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		m, a := bufferMesh(t, legacy)
		c := keepAliveClient(t, 1)
		const limit = 256 << 10
		tests := []struct {
			name    string
			path    string
			size    int
			chunked bool
			code    int
			cl      int64 // Content-Length the app saw (-1: chunked)
		}{
			{"Content-Length within the limit", "/", 100 << 10, false, 200, 100 << 10},
			{"chunked within the limit: sent with a Content-Length", "/", 100 << 10, true, 200, 100 << 10},
			{"chunked, exactly the limit", "/", limit, true, 200, limit},
			{"chunked, one byte over", "/", limit + 1, true, 413, 0},
			{"Content-Length one byte over", "/", limit + 1, false, 413, 0},
			{"Content-Length far over", "/", 8 << 20, false, 413, 0},
			{"chunked, empty", "/", 0, true, 200, 0},
			{"disabled on the route: streamed", "/off", limit + 1, true, 200, -1},
			{"the route's own limit", "/small", 1<<10 + 1, false, 413, 0},
			{"within the route's own limit", "/small", 1 << 10, true, 200, 1 << 10},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := len(a.requests(tc.path))
				body := patterned(tc.size)
				req, err := http.NewRequest(http.MethodPost, m.url(tc.path), bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if tc.chunked {
					req.ContentLength = -1
					req.Body = io.NopCloser(bytes.NewReader(body)) // no length known
				}
				res, err := c.Do(req)
				if err != nil {
					t.Fatalf("POST %d bytes: %v", tc.size, err)
				}
				got, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != tc.code {
					t.Fatalf("POST %d bytes: %d %q, want %d", tc.size, res.StatusCode, got, tc.code)
				}
				seen := a.requests(tc.path)[before:]
				if tc.code == 413 {
					if res.Header.Get(headerReason) != reasonPayloadTooLarge || string(got) != "Payload Too Large" {
						t.Errorf("413 reply: %v %q", res.Header, got)
					}
					if !res.Close {
						t.Error("the connection stays open after a 413 with the body unread")
					}
					if len(seen) != 0 {
						t.Errorf("the app saw %d requests", len(seen))
					}
					return
				}
				if len(seen) != 1 {
					t.Fatalf("the app saw %d requests, want 1", len(seen))
				}
				want := bufSeen{cl: tc.cl, n: tc.size, sum: crc32.ChecksumIEEE(body)}
				if tc.cl < 0 {
					want.te = "chunked"
				}
				if seen[0] != want {
					t.Errorf("the app saw %+v, want %+v", seen[0], want)
				}
			})
		}
		waitStat(t, m.p, "listener."+outName+".downstream_rq_too_large 4")
	})
}

// TestBufferFilterRetry: a body the filter read whole is resent on a retry
// whatever its size (the retry buffer alone keeps 64 KiB).
func TestBufferFilterRetry(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		m, a := bufferMesh(t, legacy)
		c := keepAliveClient(t, 1)
		for i, chunked := range []bool{false, true} {
			body := patterned(200 << 10)
			req, err := http.NewRequest(http.MethodPost, m.url("/retry"), bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if chunked {
				req.ContentLength, req.Body = -1, io.NopCloser(bytes.NewReader(body))
			}
			req.Header.Set("X-Fail", "1")
			req.Header.Set("X-Fail-Key", fmt.Sprint(i))
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("chunked %v: %d, want 200 after a retry", chunked, res.StatusCode)
			}
		}
		seen := a.requests("/retry")
		want := bufSeen{cl: 200 << 10, n: 200 << 10, sum: crc32.ChecksumIEEE(patterned(200 << 10))}
		if len(seen) != 4 {
			t.Fatalf("the app saw %d attempts, want 4", len(seen))
		}
		for i, s := range seen {
			if s != want {
				t.Errorf("attempt %d: %+v, want %+v", i, s, want)
			}
		}
		if n := m.stat("retries_body_too_large"); n != "0" {
			t.Errorf("retries_body_too_large %s", n)
		}
	})
}

// TestBufferFilterConnection checks the filter at the connection level:
// pipelined requests after a buffered body, Expect: 100-continue, trailers
// dropped, a malformed chunked body.
func TestBufferFilterConnection(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		m, a := bufferMesh(t, legacy)
		dial := func(t *testing.T) (net.Conn, *bufio.Reader) {
			conn, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			return conn, bufio.NewReader(conn)
		}
		read := func(t *testing.T, br *bufio.Reader) (*http.Response, string) {
			t.Helper()
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			return res, string(b)
		}
		t.Run("pipelined after a Content-Length body and a chunked one", func(t *testing.T) {
			conn, br := dial(t)
			_, _ = io.WriteString(conn, "POST /p1 HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n\r\nhello"+
				"POST /p2 HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 1\r\n\r\n"+
				"GET /p3 HTTP/1.1\r\nHost: s\r\n\r\n")
			for i, want := range []string{"len=5", "len=5", "len=0"} {
				if res, body := read(t, br); res.StatusCode != 200 || body != want {
					t.Fatalf("response %d: %d %q, want %q", i, res.StatusCode, body, want)
				}
			}
			if s := a.requests("/p2"); len(s) != 1 || s[0].cl != 5 || s[0].te != "" || s[0].trailers != 0 || s[0].sum != crc32.ChecksumIEEE([]byte("abcde")) {
				t.Errorf("the app saw %+v", s)
			}
		})
		t.Run("Expect: 100-continue", func(t *testing.T) {
			conn, br := dial(t)
			_, _ = io.WriteString(conn, "POST /e HTTP/1.1\r\nHost: s\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
			if res, _ := read(t, br); res.StatusCode != 100 {
				t.Fatalf("interim %d, want 100", res.StatusCode)
			}
			_, _ = io.WriteString(conn, "body")
			if res, body := read(t, br); res.StatusCode != 200 || body != "len=4" {
				t.Fatalf("%d %q", res.StatusCode, body)
			}
			// Over the limit: 413 at once, no 100, and the connection closes.
			_, _ = io.WriteString(conn, "POST /e HTTP/1.1\r\nHost: s\r\nContent-Length: 300000\r\nExpect: 100-continue\r\n\r\n")
			res, _ := read(t, br)
			if res.StatusCode != 413 || !res.Close {
				t.Fatalf("%d close=%v, want 413 and close", res.StatusCode, res.Close)
			}
			if _, err := br.ReadByte(); err == nil {
				t.Error("the connection stays open")
			}
			if n := len(a.requests("/e")); n != 1 {
				t.Errorf("the app saw %d requests, want 1", n)
			}
		})
		t.Run("malformed chunked body", func(t *testing.T) {
			conn, br := dial(t)
			_, _ = io.WriteString(conn, "POST /bad HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY\r\n0\r\n\r\n")
			if res, _ := read(t, br); res.StatusCode != 400 {
				t.Fatalf("%d, want 400", res.StatusCode)
			}
			if n := len(a.requests("/bad")); n != 0 {
				t.Errorf("the app saw %d requests", n)
			}
		})
	})
}

// TestBufferFilterHTTP2: an HTTP/2 request body of unknown length (no
// content-length) is buffered on the net/http path.
func TestBufferFilterHTTP2(t *testing.T) {
	m, a := bufferMesh(t, false)
	c := h2cClient(t)
	for _, tc := range []struct {
		size int
		code int
	}{{100 << 10, 200}, {256<<10 + 1, 413}} {
		body := patterned(tc.size)
		req, err := http.NewRequest(http.MethodPost, m.url("/h2"), io.NopCloser(bytes.NewReader(body)))
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != tc.code || res.ProtoMajor != 2 {
			t.Fatalf("%d bytes: %d over HTTP/%d, want %d", tc.size, res.StatusCode, res.ProtoMajor, tc.code)
		}
	}
	want := []bufSeen{{cl: 100 << 10, n: 100 << 10, sum: crc32.ChecksumIEEE(patterned(100 << 10))}}
	if got := a.requests("/h2"); len(got) != 1 || got[0] != want[0] {
		t.Errorf("the app saw %+v, want %+v", got, want)
	}
}

// TestBufferFilterInbound: the server's inbound sidecar buffers (the
// EnvoyFilter's placement). A body over its limit gets the 413 back through
// the caller's sidecar, which was still sending it, on both paths; one
// within the limit reaches the app with a Content-Length.
func TestBufferFilterInbound(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "h2c"}[h2], func(t *testing.T) {
			a := newBufApp()
			m := newMesh(t, a, false)
			set := m.serverSet(t)
			rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
			f := proxytest.HCM(t, "", rc, true)
			var h hcmv3.HttpConnectionManager
			if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
				t.Fatal(err)
			}
			h.HttpFilters = append([]*hcmv3.HttpFilter{httpFilterEntry(t, bufName, bufferCfg(64<<10))}, h.HttpFilters...)
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.Any(t, &h)}
			set.Listeners[inName] = proxytest.Listener(t, inName, m.inAddr, f, proxytest.DownstreamTLS(t, "h2", "http/1.1"))
			if err := m.server.Update(set); err != nil {
				t.Fatal(err)
			}
			c := h1Client(t)
			if h2 {
				c = h2cClient(t)
			}
			for _, tc := range []struct {
				size    int
				chunked bool
				code    int
			}{{8 << 20, false, 413}, {8 << 20, true, 413}, {60 << 10, true, 200}, {60 << 10, false, 200}} {
				body := patterned(tc.size)
				req, err := http.NewRequest(http.MethodPost, m.url("/in"), bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if tc.chunked {
					req.ContentLength, req.Body = -1, io.NopCloser(bytes.NewReader(body))
				}
				begin := time.Now()
				res, err := c.Do(req)
				if err != nil {
					t.Fatalf("%d bytes (chunked %v): %v", tc.size, tc.chunked, err)
				}
				got, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != tc.code {
					t.Fatalf("%d bytes (chunked %v): %d %v %q, want %d", tc.size, tc.chunked, res.StatusCode, res.Header, got, tc.code)
				}
				if tc.code == 413 && res.Header.Get(headerReason) != reasonPayloadTooLarge {
					t.Errorf("413 without its reason: %v", res.Header)
				}
				t.Logf("%d bytes (chunked %v): %d in %v", tc.size, tc.chunked, res.StatusCode, time.Since(begin))
			}
			seen := a.requests("/in")
			if len(seen) != 2 || seen[0].cl != 60<<10 || seen[1].cl != 60<<10 || seen[0].te != "" {
				t.Errorf("the app saw %+v, want two bodies of 60 KiB with a Content-Length", seen)
			}
		})
	}
}
