package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// testStreamIdle is the stream_idle_timeout of the tests' listener: the
// proxy ends a stream between it and 9/8 of it after its last progress.
const testStreamIdle = 300 * time.Millisecond

// idleModes are the serving paths: the HTTP/1.1 fast path, HTTP/1.1 on
// net/http (legacy mode), HTTP/2 (h2c) on net/http's server (the
// handler's per-request timer), and HTTP/2 on the sidecar's own server
// (h2srv), which watches the stream for the handler (WatchIdle).
var idleModes = []string{"fast", "legacy", "h2", "h2srv"}

// idleProxy is one sidecar whose outbound listener (stream_idle_timeout
// idle; nil: absent) routes every request to the plaintext app at appAddr.
type idleProxy struct {
	addr   string
	mode   string
	client *http.Client
}

func newIdleProxy(t *testing.T, mode string, idle *durationpb.Duration, appAddr string) *idleProxy {
	t.Helper()
	ca := proxytest.NewCA(t, trustDomain)
	opts := Options{Identity: ca.Identity(t, clientID), Logger: testLogger(t)}
	switch mode {
	case "legacy":
		opts.LegacyHTTP1 = true
	case "h2":
		opts.NetHTTP2 = true
	}
	p := newProxyOpts(t, opts)
	ip := &idleProxy{addr: proxytest.FreeAddr(t), mode: mode}
	set := resources.NewSet()
	rc := proxytest.RouteConfig(outName, proxytest.PrefixRoute("/", outCluster, 0))
	set.Listeners[outName] = proxytest.Listener(t, outName, ip.addr, hcmWithIdle(t, rc, idle), nil)
	set.Clusters[outCluster] = proxytest.StaticCluster(t, outCluster, appAddr, false)
	if err := p.Update(set); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if mode == "h2" || mode == "h2srv" {
		ip.client = h2cClient(t)
	} else {
		ip.client = h1Client(t)
	}
	ip.client.Timeout = 0 // each test bounds its own waits
	return ip
}

// hcmWithIdle is proxytest.HCM with stream_idle_timeout set to idle.
func hcmWithIdle(t testing.TB, rc *routev3.RouteConfiguration, idle *durationpb.Duration) *listenerv3.Filter {
	t.Helper()
	f := proxytest.HCM(t, "", rc, false)
	var h hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	h.StreamIdleTimeout = idle
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.Any(t, &h)}
	return f
}

// idleApp is an upstream that records what its handler saw.
type idleApp struct {
	addr      string
	started   atomic.Int64 // requests whose handler ran
	completed atomic.Int64 // requests whose whole body arrived
	aborted   atomic.Int64 // handlers that saw the proxy give up on them
}

// newIdleApp serves: /echo reads the whole body and answers its length;
// /nohead reads the body and never answers; /stall answers 200 and a first
// chunk, then stalls; /flow streams 12 chunks 100 ms apart; /noread never
// reads the body (until the test ends).
func newIdleApp(t *testing.T) *idleApp {
	t.Helper()
	a := &idleApp{}
	quit := make(chan struct{})
	a.addr = serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.started.Add(1)
		if r.URL.Path == "/noread" {
			select {
			case <-r.Context().Done():
			case <-quit:
			}
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			a.aborted.Add(1)
			return
		}
		a.completed.Add(1)
		switch r.URL.Path {
		case "/echo":
			fmt.Fprintf(w, "%d bytes", len(b))
		case "/nohead":
			<-r.Context().Done() // the proxy closed the connection
			a.aborted.Add(1)
		case "/stall":
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			a.aborted.Add(1)
		case "/flow":
			for i := range 12 {
				if i > 0 {
					select {
					case <-time.After(100 * time.Millisecond):
					case <-r.Context().Done():
						a.aborted.Add(1)
						return
					}
				}
				fmt.Fprintf(w, "chunk %02d\n", i)
				w.(http.Flusher).Flush()
			}
		}
	}))
	t.Cleanup(func() { close(quit) }) // before the server closes
	return a
}

// waitFor polls cond for up to 3 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(3 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkIdleElapsed checks that the proxy waited at least the timeout (from
// the client's last progress) and ended the stream well before 5 s.
func checkIdleElapsed(t *testing.T, since time.Time) {
	t.Helper()
	if d := time.Since(since); d < testStreamIdle-50*time.Millisecond || d > 4*time.Second {
		t.Errorf("stream ended %v after the last progress, want about %v", d, testStreamIdle)
	}
}

// slowBody yields its bytes one at a time, every gap.
type slowBody struct {
	data []byte
	gap  time.Duration
	stop <-chan struct{}
}

func (b *slowBody) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		return 0, io.EOF
	}
	select {
	case <-time.After(b.gap):
	case <-b.stop:
		return 0, io.ErrClosedPipe
	}
	p[0] = b.data[0]
	b.data = b.data[1:]
	return 1, nil
}

// stalledBody yields its bytes, then blocks until stop is closed or the
// client closes it.
type stalledBody struct {
	data   []byte
	stop   <-chan struct{}
	sentAt atomic.Int64 // when the last byte was read (UnixNano)
	closed chan struct{}
	once   sync.Once
}

func (b *stalledBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

func (b *stalledBody) Read(p []byte) (int, error) {
	if len(b.data) > 0 {
		n := copy(p, b.data)
		b.data = b.data[n:]
		b.sentAt.Store(time.Now().UnixNano())
		return n, nil
	}
	select {
	case <-b.stop:
	case <-b.closed:
	}
	return 0, io.ErrClosedPipe
}

// rawRequest writes a request on a new HTTP/1.1 connection and returns the
// connection and its reader (the connection closes when the test ends).
func rawRequest(t *testing.T, addr, req string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	return conn, bufio.NewReader(conn)
}

// TestStreamIdleRequestBodyStalls: a body that stops after a few bytes
// (slow POST) gets 408 once the timeout passes, the HTTP/1.1 connection
// closes, and the app never sees a complete request.
func TestStreamIdleRequestBodyStalls(t *testing.T) {
	for _, mode := range idleModes {
		t.Run(mode, func(t *testing.T) {
			app := newIdleApp(t)
			ip := newIdleProxy(t, mode, durationpb.New(testStreamIdle), app.addr)
			var res *http.Response
			var since time.Time
			if mode == "h2" || mode == "h2srv" {
				stop := make(chan struct{})
				defer close(stop)
				body := &stalledBody{data: []byte("abc"), stop: stop, closed: make(chan struct{})}
				req, _ := http.NewRequest(http.MethodPost, "http://"+ip.addr+"/echo", body)
				req.ContentLength = 100
				var err error
				res, err = doWithin(ip.client, req, 5*time.Second)
				if err != nil {
					t.Fatalf("request: %v", err)
				}
				defer res.Body.Close()
				since = time.Unix(0, body.sentAt.Load())
			} else {
				conn, br := rawRequest(t, ip.addr, "POST /echo HTTP/1.1\r\nHost: server\r\nContent-Length: 100\r\n\r\nabc")
				since = time.Now()
				var err error
				res, err = http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("no response (want 408): %v", err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				if !res.Close {
					t.Errorf("408 without Connection: close")
				}
				if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) && !isReset(err) {
					t.Errorf("connection not closed after the 408: %d bytes, %v", n, err)
				}
				_ = conn.Close()
			}
			checkIdleElapsed(t, since)
			if res.StatusCode != http.StatusRequestTimeout || res.Header.Get(headerReason) != reasonStreamIdle {
				t.Errorf("got %d %q, want 408 %q", res.StatusCode, res.Header.Get(headerReason), reasonStreamIdle)
			}
			waitFor(t, "the app's handler to end", func() bool { return app.started.Load() == 0 || app.aborted.Load() == app.started.Load() })
			if n := app.completed.Load(); n != 0 {
				t.Errorf("the app saw %d complete requests, want 0", n)
			}
		})
	}
}

// TestStreamIdleUpstreamStopsReading: an upstream that takes the request
// head but never reads the body blocks the proxy's writes once the socket
// buffers are full: no progress, so the caller gets a 408.
func TestStreamIdleUpstreamStopsReading(t *testing.T) {
	const size = 64 << 20 // beyond loopback socket buffers
	// net/http servers (the app's, and the proxy's in legacy mode) close a
	// connection whose request body they did not read after 500 ms
	// (rstAvoidanceDelay): let those goroutines end before goleak looks.
	t.Cleanup(func() { time.Sleep(time.Second) })
	for _, mode := range idleModes {
		t.Run(mode, func(t *testing.T) {
			app := newIdleApp(t)
			ip := newIdleProxy(t, mode, durationpb.New(testStreamIdle), app.addr)
			var res *http.Response
			if mode == "h2" || mode == "h2srv" {
				req, _ := http.NewRequest(http.MethodPost, "http://"+ip.addr+"/noread", io.LimitReader(zeros{}, size))
				req.ContentLength = size
				var err error
				if res, err = doWithin(ip.client, req, 10*time.Second); err != nil {
					t.Fatalf("request: %v", err)
				}
				defer res.Body.Close()
			} else {
				conn, br := rawRequest(t, ip.addr, "POST /noread HTTP/1.1\r\nHost: server\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				wrote := make(chan struct{})
				go func() {
					defer close(wrote)
					_, _ = io.Copy(conn, io.LimitReader(zeros{}, size)) // fails once the proxy closes
				}()
				var err error
				res, err = http.ReadResponse(br, nil)
				_ = conn.Close()
				<-wrote
				if err != nil {
					t.Fatalf("no response (want 408): %v", err)
				}
			}
			if res.StatusCode != http.StatusRequestTimeout || res.Header.Get(headerReason) != reasonStreamIdle {
				t.Errorf("got %d %q, want 408 %q", res.StatusCode, res.Header.Get(headerReason), reasonStreamIdle)
			}
		})
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestStreamIdleSlowBodyProgresses: a byte every 100 ms for 1 s is
// progress every time: the request succeeds with a 300 ms timeout.
func TestStreamIdleSlowBodyProgresses(t *testing.T) {
	for _, mode := range idleModes {
		t.Run(mode, func(t *testing.T) {
			app := newIdleApp(t)
			ip := newIdleProxy(t, mode, durationpb.New(testStreamIdle), app.addr)
			stop := make(chan struct{})
			defer close(stop)
			data := []byte("0123456789")
			req, _ := http.NewRequest(http.MethodPost, "http://"+ip.addr+"/echo", &slowBody{data: data, gap: 100 * time.Millisecond, stop: stop})
			req.ContentLength = int64(len(data))
			res, err := doWithin(ip.client, req, 10*time.Second)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil || res.StatusCode != http.StatusOK || string(b) != "10 bytes" {
				t.Fatalf("got %d %q (%v), want 200 %q", res.StatusCode, b, err, "10 bytes")
			}
		})
	}
}

// TestStreamIdleNoResponseHead: an upstream that never answers gets the
// caller a 408 after the timeout, and its request is aborted.
func TestStreamIdleNoResponseHead(t *testing.T) {
	for _, mode := range idleModes {
		t.Run(mode, func(t *testing.T) {
			app := newIdleApp(t)
			ip := newIdleProxy(t, mode, durationpb.New(testStreamIdle), app.addr)
			req, _ := http.NewRequest(http.MethodGet, "http://"+ip.addr+"/nohead", nil)
			since := time.Now()
			res, err := doWithin(ip.client, req, 5*time.Second)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			checkIdleElapsed(t, since)
			if res.StatusCode != http.StatusRequestTimeout || res.Header.Get(headerReason) != reasonStreamIdle {
				t.Errorf("got %d %q, want 408 %q", res.StatusCode, res.Header.Get(headerReason), reasonStreamIdle)
			}
			if (mode == "fast" || mode == "legacy") && !res.Close {
				t.Errorf("HTTP/1.1 408 without Connection: close")
			}
			if want := map[bool]int{true: 2, false: 1}[mode == "h2" || mode == "h2srv"]; res.ProtoMajor != want {
				t.Errorf("served over HTTP/%d, want HTTP/%d", res.ProtoMajor, want)
			}
			waitFor(t, "the upstream request to be aborted", func() bool { return app.aborted.Load() == 1 })
		})
	}
}

// TestStreamIdleResponseStalls: an upstream that sends its head and part
// of its body, then stops, has the stream reset after the timeout: the
// caller's body read fails (connection closed, or RST_STREAM on HTTP/2).
func TestStreamIdleResponseStalls(t *testing.T) {
	for _, mode := range idleModes {
		t.Run(mode, func(t *testing.T) {
			app := newIdleApp(t)
			ip := newIdleProxy(t, mode, durationpb.New(testStreamIdle), app.addr)
			req, _ := http.NewRequest(http.MethodGet, "http://"+ip.addr+"/stall", nil)
			res, err := doWithin(ip.client, req, 5*time.Second)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			first := make([]byte, len("partial"))
			if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != "partial" {
				t.Fatalf("first chunk %q: %v", first, err)
			}
			since := time.Now()
			rest, err := readAllWithin(res.Body, 5*time.Second)
			if err == nil {
				t.Fatalf("the response ended cleanly after %q, want the stream reset", rest)
			}
			checkIdleElapsed(t, since)
			waitFor(t, "the upstream request to be aborted", func() bool { return app.aborted.Load() == 1 })
		})
	}
}

// TestStreamIdleFlowingResponse: a response that keeps flowing (a chunk
// every 100 ms for 1.1 s) is not cut by a 300 ms timeout, and neither is
// a keep-alive connection idle between requests longer than it.
func TestStreamIdleFlowingResponse(t *testing.T) {
	for _, mode := range idleModes {
		t.Run(mode, func(t *testing.T) {
			app := newIdleApp(t)
			ip := newIdleProxy(t, mode, durationpb.New(testStreamIdle), app.addr)
			for i := range 2 {
				if i > 0 {
					time.Sleep(3 * testStreamIdle) // idle between requests: not a stream
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+ip.addr+"/flow", nil)
				res, err := doWithin(ip.client, req, 10*time.Second)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				b, err := readAllWithin(res.Body, 10*time.Second)
				_ = res.Body.Close()
				if err != nil || res.StatusCode != http.StatusOK || strings.Count(string(b), "chunk") != 12 {
					t.Fatalf("request %d: %d, %d chunks (%v), want 200 and 12", i, res.StatusCode, strings.Count(string(b), "chunk"), err)
				}
			}
			if n := app.aborted.Load(); n != 0 {
				t.Errorf("%d upstream requests aborted", n)
			}
		})
	}
}

// doWithin sends req, giving up after d.
func doWithin(c *http.Client, req *http.Request, d time.Duration) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), d)
	res, err := c.Do(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	res.Body = &cancelBody{ReadCloser: res.Body, cancel: cancel}
	return res, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// readAllWithin reads rd to its end, failing after d.
func readAllWithin(rd io.Reader, d time.Duration) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(rd)
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-time.After(d):
		return nil, fmt.Errorf("no end after %v", d)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestTranslateStreamIdleTimeout: the HCM's stream_idle_timeout, Envoy's
// default 5 min when absent, 0 turning it off.
func TestTranslateStreamIdleTimeout(t *testing.T) {
	tests := []struct {
		name    string
		idle    *durationpb.Duration
		want    time.Duration
		wantErr string
	}{
		{"absent", nil, 5 * time.Minute, ""},
		{"explicit", durationpb.New(90 * time.Second), 90 * time.Second, ""},
		{"sub-second", durationpb.New(testStreamIdle), testStreamIdle, ""},
		{"zero disables", durationpb.New(0), 0, ""},
		{"negative", durationpb.New(-time.Second), 0, "stream_idle_timeout: -1s is negative"},
		{"malformed", &durationpb.Duration{Seconds: 1, Nanos: -1}, 0, "stream_idle_timeout: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := proxytest.RouteConfig(outName, proxytest.PrefixRoute("/", outCluster, 0))
			l := proxytest.Listener(t, outName, "127.0.0.1:1", hcmWithIdle(t, rc, tt.idle), nil)
			lc, err := translateListener(l, newStatsRegistry())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("translateListener: %v", err)
			}
			if lc.streamIdleTimeout != tt.want {
				t.Errorf("streamIdleTimeout = %v, want %v", lc.streamIdleTimeout, tt.want)
			}
		})
	}
}
