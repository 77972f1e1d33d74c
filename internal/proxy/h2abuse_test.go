package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// rawH2 is an HTTP/2 client on one connection that writes frames as a test
// needs them: a reader goroutine acknowledges SETTINGS and PING, records the
// final status of each stream, and how the server ended the connection.
type rawH2 struct {
	nc  net.Conn
	mu  sync.Mutex // the writer
	bw  *bufio.Writer
	fr  *http2.Framer
	blk bytes.Buffer
	enc *hpack.Encoder

	done    chan struct{} // closed when the reader ends (connection closed)
	ready   chan struct{} // closed at the server's first SETTINGS
	pongs   chan struct{} // a PING ACK from the server
	readErr error         // set before done closes

	smu      sync.Mutex
	answered int           // streams answered with a :status
	goAway   http2.ErrCode // of the server's GOAWAY, if any
	sawAway  bool
}

func dialRawH2(t *testing.T, dial func() (net.Conn, error)) *rawH2 {
	t.Helper()
	nc, err := dial()
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	h := &rawH2{nc: nc, bw: bufio.NewWriterSize(nc, 64<<10), done: make(chan struct{}), ready: make(chan struct{}), pongs: make(chan struct{}, 1)}
	h.fr = http2.NewFramer(h.bw, nc)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.blk)
	t.Cleanup(func() { _ = nc.Close(); <-h.done })
	if err := h.write(func() error {
		if _, err := h.bw.WriteString(http2.ClientPreface); err != nil {
			return err
		}
		return h.fr.WriteSettings()
	}); err != nil {
		t.Fatalf("preface: %v", err)
	}
	go h.read()
	select {
	case <-h.ready:
	case <-h.done:
		t.Fatalf("connection closed before the server's SETTINGS: %v", h.readErr)
	case <-time.After(5 * time.Second):
		t.Fatal("no SETTINGS from the server")
	}
	return h
}

func (h *rawH2) read() {
	defer close(h.done)
	for {
		_ = h.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.readErr = err
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.write(h.fr.WriteSettingsAck)
				select {
				case <-h.ready:
				default:
					close(h.ready)
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = h.write(func() error { return h.fr.WritePing(true, f.Data) })
			} else {
				select {
				case h.pongs <- struct{}{}:
				default:
				}
			}
		case *http2.GoAwayFrame:
			h.smu.Lock()
			h.goAway, h.sawAway = f.ErrCode, true
			h.smu.Unlock()
		case *http2.MetaHeadersFrame:
			if f.PseudoValue("status") != "" {
				h.smu.Lock()
				h.answered++
				h.smu.Unlock()
			}
		}
	}
}

// write runs f with the writer locked and flushes.
func (h *rawH2) write(f func() error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = h.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := f(); err != nil {
		return err
	}
	return h.bw.Flush()
}

// headers writes a GET for path on stream id; reset follows it with
// RST_STREAM CANCEL in the same write.
func (h *rawH2) headers(id uint32, path string, reset bool) error {
	return h.write(func() error {
		h.blk.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "app"}, {":path", path}} {
			_ = h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.blk.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			return err
		}
		if reset {
			return h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		return nil
	})
}

func (h *rawH2) reset(id uint32) error {
	return h.write(func() error { return h.fr.WriteRSTStream(id, http2.ErrCodeCancel) })
}

// ping waits until the server has read every frame sent before it (its
// PING ACK); false if the connection ended first.
func (h *rawH2) ping() bool {
	if err := h.write(func() error { return h.fr.WritePing(false, [8]byte{'p'}) }); err != nil {
		return false
	}
	select {
	case <-h.pongs:
		return true
	case <-h.done:
		return false
	case <-time.After(10 * time.Second):
		return false
	}
}

func (h *rawH2) answers() int {
	h.smu.Lock()
	defer h.smu.Unlock()
	return h.answered
}

// closed waits up to d for the connection to end.
func (h *rawH2) closed(d time.Duration) bool {
	select {
	case <-h.done:
		return true
	case <-time.After(d):
		return false
	}
}

// waitAnswers waits until n streams were answered; false if the
// connection ended or 10 s passed first.
func (h *rawH2) waitAnswers(n int) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if h.answers() >= n {
			return true
		}
		if h.closed(0) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return false
}

// h2AbuseSetup is one proxy serving HTTP/2 with net/http (Options.NetHTTP2)
// on one listener, plaintext h2c or mTLS with ALPN h2, routing every path
// to app.
type h2AbuseSetup struct {
	p        *Proxy
	listener string
	dial     func() (net.Conn, error)
}

func newH2AbuseSetup(t *testing.T, app http.Handler, mtls bool) *h2AbuseSetup {
	t.Helper()
	ca := proxytest.NewCA(t, trustDomain)
	s := &h2AbuseSetup{listener: inName}
	s.p = newProxyOpts(t, Options{Identity: ca.Identity(t, serverID), Logger: testLogger(t), NetHTTP2: true})
	addr := proxytest.FreeAddr(t)
	set := resources.NewSet()
	rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	var ts = proxytest.DownstreamTLS(t, "h2", "http/1.1")
	if !mtls {
		ts = nil
	}
	set.Listeners[inName] = proxytest.Listener(t, inName, addr, proxytest.HCM(t, "", rc, mtls), ts)
	set.Clusters[inName] = proxytest.StaticCluster(t, inName, serveApp(t, app), false)
	if err := s.p.Update(set); err != nil {
		t.Fatalf("Update: %v", err)
	}
	s.dial = func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
	if mtls {
		cfg := proxytest.ClientTLS(ca.SVID(t, clientID), ca, "h2")
		s.dial = func() (net.Conn, error) {
			return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		}
	}
	return s
}

// stat returns the listener's counter name.
func (s *h2AbuseSetup) stat(t *testing.T, name string) int {
	t.Helper()
	prefix := "listener." + s.listener + "." + name + " "
	for line := range strings.SplitSeq(statsOf(s.p), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("stat %s: %q", name, line)
			}
			return n
		}
	}
	t.Fatalf("no stat %s in:\n%s", name, statsOf(s.p))
	return 0
}

// legitGet sends one GET on a new connection and wants it answered.
func (s *h2AbuseSetup) legitGet(t *testing.T) {
	t.Helper()
	h := dialRawH2(t, s.dial)
	if err := h.headers(1, "/legit", false); err != nil {
		t.Fatalf("legitimate request: %v", err)
	}
	if !h.waitAnswers(1) {
		t.Fatalf("legitimate request on a new connection not answered (%v)", h.readErr)
	}
}

// resetApp answers 200 and counts requests by path; paths under /hold/
// wait until the request is cancelled.
type resetApp struct {
	mu     sync.Mutex
	byPath map[string]int
	held   atomic.Int64 // /hold/ requests in progress
}

func (a *resetApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.byPath[r.URL.Path]++
	a.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/hold/") {
		a.held.Add(1)
		defer a.held.Add(-1)
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	_, _ = w.Write([]byte("ok"))
}

func (a *resetApp) seen(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byPath[path]
}

// TestH2RapidReset: a client that opens and resets streams as fast as it
// can (CVE-2023-44487) has its connection closed; few of the reset requests
// reach the app, and other connections are served. A burst may also fill Go's
// handler queue (GOAWAY ENHANCE_YOUR_CALM beyond 400 waiting handlers); an
// attacker who paces its batches (here: 50 pairs, then a PING round trip)
// never does, and only the premature-reset guard closes its connection,
// once 500 streams were seen.
func TestH2RapidReset(t *testing.T) {
	const pairs = 2000
	for _, mtls := range []bool{false, true} {
		for _, paced := range []bool{false, true} {
			name := map[bool]string{false: "h2c", true: "h2 over mTLS"}[mtls] + map[bool]string{false: "/burst", true: "/paced"}[paced]
			t.Run(name, func(t *testing.T) {
				app := &resetApp{byPath: map[string]int{}}
				s := newH2AbuseSetup(t, app, mtls)
				h := dialRawH2(t, s.dial)
				sent := 0
				for ; sent < pairs; sent++ {
					if err := h.headers(uint32(2*sent+1), "/rapid", true); err != nil {
						break // closed under the writer
					}
					if paced && sent%50 == 49 && !h.ping() {
						sent++
						break
					}
				}
				if !h.closed(10 * time.Second) {
					t.Fatalf("the connection is still open after %d reset streams", sent)
				}
				h.smu.Lock()
				away, code := h.sawAway, h.goAway
				h.smu.Unlock()
				trips := s.stat(t, "downstream_rq_too_many_premature_resets")
				resets := s.stat(t, "downstream_rq_rx_reset")
				s.legitGet(t)
				// Requests whose handler started before its reset was read
				// may still be on their way to the app.
				time.Sleep(200 * time.Millisecond)
				reached := app.seen("/rapid")
				t.Logf("%d pairs sent; closed by %s; %d resets counted, %d closes; the app saw %d",
					sent, map[bool]string{false: "the guard", true: "GOAWAY " + code.String()}[away], resets, trips, reached)
				if paced {
					if away || trips != 1 {
						t.Errorf("closed by GOAWAY=%v (%v), downstream_rq_too_many_premature_resets = %d: want the guard's close, counted once", away, code, trips)
					}
					if resets < 250 || resets > 600 {
						t.Errorf("downstream_rq_rx_reset = %d, want the guard's count when it tripped (250 to 500 + in flight)", resets)
					}
				}
				// A reset request reaches the app only if its handler
				// forwarded it before the server read the reset: some of
				// the streams seen before the close, never all 2,000.
				if reached >= 500 {
					t.Errorf("the app saw %d reset requests, want fewer than the guard's 500 streams", reached)
				}
			})
		}
	}
}

// TestH2ResetsOfLegitimateClients: clients that cancel streams are not
// taken for attackers when their streams lived past the 1 s threshold, or
// when at most half of their streams were reset; more than half, quickly,
// is the attack.
func TestH2ResetsOfLegitimateClients(t *testing.T) {
	tests := []struct {
		name string
		// normal streams answered first, then slow ones reset after
		// holdFor, in rounds of 100 (the stream limit).
		normal, slow int
		holdFor      time.Duration
		// then: streams in batches of 50, every tenth in quickResetTenths
		// reset at once.
		mixed, quickResetTenths int
		wantClosed              bool
	}{
		{name: "slow cancellations are not premature", normal: 250, slow: 300, holdFor: 1100 * time.Millisecond},
		{name: "40% reset at once", mixed: 1000, quickResetTenths: 4},
		{name: "70% reset at once", mixed: 1000, quickResetTenths: 7, wantClosed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := &resetApp{byPath: map[string]int{}}
			s := newH2AbuseSetup(t, app, false)
			h := dialRawH2(t, s.dial)
			id := uint32(1)
			next := func() uint32 { v := id; id += 2; return v }
			answered := 0
			for done := 0; done < tt.normal; done += 50 {
				for range 50 {
					if err := h.headers(next(), "/normal", false); err != nil {
						t.Fatalf("normal request: %v", err)
					}
				}
				if answered += 50; !h.waitAnswers(answered) {
					t.Fatalf("normal requests not answered: %d of %d (%v)", h.answers(), answered, h.readErr)
				}
			}
			for done := 0; done < tt.slow; done += 100 {
				ids := make([]uint32, 0, 100)
				for range 100 {
					ids = append(ids, next())
					if err := h.headers(ids[len(ids)-1], "/hold/slow", false); err != nil {
						t.Fatalf("slow request: %v", err)
					}
				}
				// Held ones are answered with headers at once (the app
				// flushes), then wait for the reset.
				if answered += 100; !h.waitAnswers(answered) {
					t.Fatalf("held requests not started: %d of %d (%v)", h.answers(), answered, h.readErr)
				}
				time.Sleep(tt.holdFor)
				for _, sid := range ids {
					if err := h.reset(sid); err != nil {
						t.Fatalf("reset: %v", err)
					}
				}
				waitUntil(t, "held requests cancelled", func() bool { return app.held.Load() == 0 })
			}
			closed := false
			for done := 0; done < tt.mixed && !closed; done += 50 {
				want := 0
				for i := range 50 {
					reset := i%10 < tt.quickResetTenths
					if !reset {
						want++
					}
					if err := h.headers(next(), "/mixed", reset); err != nil {
						closed = true
						break
					}
				}
				if answered += want; !closed && !h.waitAnswers(answered) {
					closed = true
				}
			}
			if tt.wantClosed {
				if !h.closed(5 * time.Second) {
					t.Fatalf("still open after %d streams, %d reset at once: want closed", tt.mixed, tt.mixed*tt.quickResetTenths/10)
				}
				if got := s.stat(t, "downstream_rq_too_many_premature_resets"); got != 1 {
					t.Errorf("downstream_rq_too_many_premature_resets = %d, want 1", got)
				}
				return
			}
			if closed {
				t.Fatalf("the connection was closed (%v), want it open", h.readErr)
			}
			// Still open and serving.
			if err := h.headers(next(), "/normal", false); err != nil {
				t.Fatalf("request after the resets: %v", err)
			}
			if answered++; !h.waitAnswers(answered) {
				t.Fatalf("request after the resets not answered (%v)", h.readErr)
			}
			if got := s.stat(t, "downstream_rq_too_many_premature_resets"); got != 0 {
				t.Errorf("downstream_rq_too_many_premature_resets = %d, want 0", got)
			}
			t.Logf("resets counted: %d", s.stat(t, "downstream_rq_rx_reset"))
		})
	}
}

// TestH2GuardIgnoresHTTP1: requests of HTTP/1 connections served by the
// net/http server never touch the guard, cancelled or not.
func TestH2GuardIgnoresHTTP1(t *testing.T) {
	app := &resetApp{byPath: map[string]int{}}
	s := newH2AbuseSetup(t, app, false)
	for i := range 20 {
		c, err := s.dial()
		if err != nil {
			t.Fatal(err)
		}
		// HTTP/1.0 is handed to net/http; the client hangs up while the
		// app holds the request.
		if _, err := fmt.Fprintf(c, "GET /hold/h1-%d HTTP/1.0\r\nHost: app\r\n\r\n", i); err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprintf("/hold/h1-%d", i)
		waitUntil(t, "HTTP/1.0 request at the app", func() bool { return app.seen(path) == 1 })
		_ = c.Close()
	}
	waitUntil(t, "held requests cancelled", func() bool { return app.held.Load() == 0 })
	if got := s.stat(t, "downstream_rq_rx_reset"); got != 0 {
		t.Errorf("downstream_rq_rx_reset = %d after HTTP/1.0 hang-ups, want 0", got)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
