package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// forwardApp is an upstream that records what it received and answers by
// path with the responses whose forwarding differs most between
// ReverseProxy and forwardH2: hop-by-hop fields, trailers announced or
// not, streamed bodies, Server-Sent Events, informational responses.
type forwardApp struct {
	mu   sync.Mutex
	seen []string // one summary per request
}

func (a *forwardApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var hdr []string
	for k, vv := range r.Header {
		hdr = append(hdr, k+"="+strings.Join(vv, "|"))
	}
	slices.Sort(hdr)
	a.mu.Lock()
	a.seen = append(a.seen, fmt.Sprintf("%s %s host=%s body=%q trailer=%v %s",
		r.Method, r.RequestURI, r.Host, body, r.Trailer, strings.Join(hdr, " ")))
	a.mu.Unlock()
	h := w.Header()
	switch r.URL.Path {
	case "/plain":
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", "5")
		h.Set("X-Multi", "1")
		h.Add("X-Multi", "2")
		_, _ = io.WriteString(w, "plain")
	case "/hop":
		h.Set("Connection", "X-Private")
		h.Set("X-Private", "secret")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		_, _ = io.WriteString(w, "hop")
	case "/stream":
		for _, part := range []string{"one,", "two,", "three"} {
			_, _ = io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	case "/announced":
		h.Set("Content-Type", "application/grpc")
		h.Set("Trailer", "Grpc-Status, Grpc-Message")
		_, _ = w.Write([]byte("\x00\x00\x00\x00\x02ok"))
		h.Set("Grpc-Status", "0")
		h.Set("Grpc-Message", "fine")
	case "/unannounced":
		h.Set("Content-Type", "application/grpc")
		_, _ = w.Write([]byte("\x00\x00\x00\x00\x02ok"))
		h.Set(http.TrailerPrefix+"Grpc-Status", "3")
	case "/trailers-only":
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", "5")
		w.WriteHeader(http.StatusOK)
	case "/sse":
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
		_, _ = io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "data: 2\n\n")
	case "/early":
		h.Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		h.Del("Link")
		h.Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "early")
	case "/status":
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "teapot")
	default:
		_, _ = io.WriteString(w, "ok")
	}
}

// forwardCase is one request of TestForwardH2MatchesReverseProxy.
type forwardCase struct {
	method, target, body string
	hdr                  []string // name, value pairs
	trailer              string   // a request trailer's value (X-Checksum)
}

var forwardCases = []forwardCase{
	{method: "GET", target: "/plain?a=1&b=2"},
	{method: "GET", target: "/plain?a=1;b=2&c=%zz&d=4"}, // cleaned as ReverseProxy cleans
	{method: "GET", target: "/hop", hdr: []string{
		"Proxy-Authorization", "Basic x", "Te", "trailers", "X-Forwarded-For", "203.0.113.9",
		"X-Forwarded-Host", "evil.test", "X-Forwarded-Proto", "https", "Forwarded", "for=203.0.113.9",
		"X-Keep", "kept", "Cookie", "a=1", "Cookie", "b=2",
	}},
	{method: "GET", target: "/plain", hdr: []string{"User-Agent", "agent/1.0"}},
	{method: "POST", target: "/announced", body: "\x00\x00\x00\x00\x02hi", hdr: []string{"Content-Type", "application/grpc", "Te", "trailers"}},
	{method: "POST", target: "/unannounced", body: "\x00\x00\x00\x00\x02hi", hdr: []string{"Content-Type", "application/grpc"}},
	{method: "POST", target: "/trailers-only", body: "x", hdr: []string{"Content-Type", "application/grpc"}},
	{method: "GET", target: "/stream"},
	{method: "GET", target: "/sse"},
	{method: "GET", target: "/early"},
	{method: "PUT", target: "/status", body: strings.Repeat("b", 100<<10)},
	{method: "HEAD", target: "/plain"},
	{method: "POST", target: "/plain", body: "with trailer", trailer: "c0ffee"},
}

// forwardResult is what a client saw of a response.
type forwardResult struct {
	Status  int
	Header  http.Header
	Body    string
	Trailer http.Header
	Early   []string // 1xx responses: status and Link
}

// TestForwardH2MatchesReverseProxy: requests h2srv serves are forwarded by
// forwardH2, the others by httputil.ReverseProxy (TRELLIS_PROXY_H2=nethttp
// puts HTTP/2 on the latter). The upstream and the client must see the
// same thing either way, for an HTTP/1.1 and an h2c upstream.
func TestForwardH2MatchesReverseProxy(t *testing.T) {
	for _, upstreamH2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "h1-upstream", true: "h2c-upstream"}[upstreamH2], func(t *testing.T) {
			var seen [2][]string
			var got [2][]forwardResult
			for i, netHTTP2 := range []bool{false, true} {
				app := &forwardApp{}
				addr := forwardProxy(t, app, netHTTP2, upstreamH2)
				c := h2cClient(t)
				for _, fc := range forwardCases {
					got[i] = append(got[i], doForward(t, c, addr, fc))
				}
				app.mu.Lock()
				seen[i] = app.seen
				app.mu.Unlock()
			}
			if diff := cmp.Diff(seen[1], seen[0]); diff != "" {
				t.Errorf("requests the upstream saw, ReverseProxy (-) vs forwardH2 (+):\n%s", diff)
			}
			if diff := cmp.Diff(got[1], got[0]); diff != "" {
				t.Errorf("responses the client saw, ReverseProxy (-) vs forwardH2 (+):\n%s", diff)
			}
			if len(seen[0]) != len(forwardCases) {
				t.Errorf("the upstream saw %d requests, want %d", len(seen[0]), len(forwardCases))
			}
		})
	}
}

// forwardProxy starts a proxy whose plaintext listener routes everything
// to app, and returns the listener's address.
func forwardProxy(t *testing.T, app http.Handler, netHTTP2, upstreamH2 bool) string {
	t.Helper()
	ca := proxytest.NewCA(t, trustDomain)
	p := newProxyOpts(t, Options{Identity: ca.Identity(t, clientID), Logger: testLogger(t), NetHTTP2: netHTTP2})
	addr := proxytest.FreeAddr(t)
	set := resources.NewSet()
	rc := proxytest.RouteConfig(outName, proxytest.PrefixRoute("/", outCluster, 0))
	set.Listeners[outName] = proxytest.Listener(t, outName, addr, proxytest.HCM(t, "", rc, false), nil)
	set.Clusters[outCluster] = proxytest.StaticCluster(t, outCluster, serveApp(t, app), upstreamH2)
	if err := p.Update(set); err != nil {
		t.Fatalf("Update: %v", err)
	}
	return addr
}

func doForward(t *testing.T, c *http.Client, addr string, fc forwardCase) forwardResult {
	t.Helper()
	var body io.Reader
	if fc.body != "" {
		body = strings.NewReader(fc.body)
	}
	req, err := http.NewRequest(fc.method, "http://"+addr+fc.target, body)
	if err != nil {
		t.Fatal(err)
	}
	if fc.trailer != "" {
		req.Trailer = http.Header{"X-Checksum": nil}
		req.Body = io.NopCloser(&trailerAtEOF{Reader: strings.NewReader(fc.body), set: func() {
			req.Trailer.Set("X-Checksum", fc.trailer)
		}})
		req.ContentLength = -1
	}
	req.Host = "svc.test"            // the same for both proxies
	req.Header.Set("User-Agent", "") // none unless the case sets one
	for i := 0; i+1 < len(fc.hdr); i += 2 {
		if i == 0 || fc.hdr[i] != fc.hdr[i-2] {
			req.Header.Del(fc.hdr[i])
		}
		req.Header.Add(fc.hdr[i], fc.hdr[i+1])
	}
	var early []string
	req = req.WithContext(withEarlyHints(req.Context(), &early))
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", fc.method, fc.target, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", fc.method, fc.target, err)
	}
	h := res.Header.Clone()
	h.Del("Date")
	return forwardResult{Status: res.StatusCode, Header: h, Body: string(b), Trailer: res.Trailer, Early: early}
}

// TestForwardH2StreamsPromptly: a streamed response (unknown length)
// reaches the client part by part, as the upstream sends it: forwardH2
// flushes before it waits for the upstream, for an h2c upstream (whose
// body says what it holds) and an HTTP/1.1 one (flushed after every
// write).
func TestForwardH2StreamsPromptly(t *testing.T) {
	const parts, gap = 4, 200 * time.Millisecond
	for _, upstreamH2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "h1-upstream", true: "h2c-upstream"}[upstreamH2], func(t *testing.T) {
			sent := make(chan time.Time, parts)
			app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", r.URL.Query().Get("ct"))
				for i := range parts {
					if i > 0 {
						time.Sleep(gap)
					}
					fmt.Fprintf(w, "part %d\n", i)
					w.(http.Flusher).Flush()
					sent <- time.Now()
				}
			})
			addr := forwardProxy(t, app, false, upstreamH2)
			c := h2cClient(t)
			for _, ct := range []string{"application/grpc", "text/event-stream"} {
				res, err := c.Get("http://" + addr + "/?ct=" + ct)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 64)
				for i := range parts {
					n, err := io.ReadAtLeast(res.Body, buf, len("part 0\n"))
					at := time.Now()
					if err != nil || string(buf[:n]) != fmt.Sprintf("part %d\n", i) {
						t.Fatalf("%s: part %d: %q, %v", ct, i, buf[:n], err)
					}
					if d := at.Sub(<-sent); d > gap*3/4 { // unflushed: the whole response's time
						t.Errorf("%s: part %d arrived %v after the upstream sent it", ct, i, d)
					}
				}
				_ = res.Body.Close()
			}
		})
	}
}

// trailerAtEOF calls set when its reader ends (to fill request trailers).
type trailerAtEOF struct {
	io.Reader
	set func()
}

func (r *trailerAtEOF) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err == io.EOF && r.set != nil {
		r.set()
		r.set = nil
	}
	return n, err
}

// withEarlyHints records the informational responses of a request.
func withEarlyHints(ctx context.Context, got *[]string) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			*got = append(*got, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		},
	})
}

// TestBodyWrappersPassBuffered: the wrappers between h2srv's request body
// and h2cli (and between h2cli's response body and forwardH2) keep saying
// what the body holds, and close nothing of the caller's.
func TestBodyWrappersPassBuffered(t *testing.T) {
	type buffered interface{ Buffered() (int, bool) }
	inner := &fakeBuffered{Reader: strings.NewReader("abc"), n: 3, complete: true}
	tests := []struct {
		name string
		body io.ReadCloser
		n    int
		ok   bool
	}{
		{"noCloseBody over a BufferedBody", &noCloseBody{inner}, 3, true},
		{"noCloseBody over another body", &noCloseBody{io.NopCloser(strings.NewReader("abc"))}, 0, false},
		{"attemptBody over a BufferedBody", &attemptBody{ReadCloser: inner}, 3, true},
		{"attemptBody over another body", &attemptBody{ReadCloser: io.NopCloser(strings.NewReader("abc"))}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, complete := tt.body.(buffered).Buffered()
			if n != tt.n || complete != tt.ok {
				t.Errorf("Buffered() = %d, %v, want %d, %v", n, complete, tt.n, tt.ok)
			}
		})
	}
	closed := false
	nc := &noCloseBody{&closeRecorder{Reader: strings.NewReader("x"), closed: &closed}}
	if err := nc.Close(); err != nil || closed {
		t.Errorf("noCloseBody.Close closed the caller's body (%v)", err)
	}
}

type closeRecorder struct {
	io.Reader
	closed *bool
}

func (c *closeRecorder) Close() error { *c.closed = true; return nil }

// TestCleanQueryParams: ReverseProxy's cleaning of queries net/url cannot
// parse.
func TestCleanQueryParams(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a=1&b=2", "a=1&b=2"},
		{"b=2&a=1", "b=2&a=1"}, // kept as sent when clean
		{"a=%41", "a=%41"},
		{"a=1;b=2&c=3", "c=3"},
		{"a=%zz&b=2", "b=2"},
		{"a=%4", ""},
		{"x=" + strings.Repeat("&y=1", maxQueryParams), ""},
	}
	for _, tt := range tests {
		got := cleanQueryParams(tt.in)
		if tt.in == "x="+strings.Repeat("&y=1", maxQueryParams) {
			if strings.Count(got, "&")+1 > maxQueryParams || got == tt.in {
				t.Errorf("%d parameters: not re-encoded", maxQueryParams+1)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("cleanQueryParams(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
