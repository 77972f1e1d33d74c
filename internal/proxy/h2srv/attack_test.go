package h2srv

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/trellis-mesh/trellis/internal/proxy/resetguard"
)

func wantAbuse(t *testing.T, ts *testServer, c *rawClient, why Abuse) {
	t.Helper()
	g := c.goAway(5 * time.Second)
	if g == nil || g.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v (%v, server: %v), want ENHANCE_YOUR_CALM", describeGoAway(g), c.err, ts.serveErrors())
	}
	if !c.closed(5 * time.Second) {
		t.Fatal("connection still open after GOAWAY")
	}
	if got := ts.stats.abuses(); !slices.Contains(got, why) {
		t.Errorf("abuse reasons %v, want %s", got, why)
	}
}

// TestRapidReset: streams opened and reset at once (CVE-2023-44487) trip
// the guard after its 500 streams; handlers of reset streams mostly never
// run. Paced: 50 pairs, then a PING round trip, so no handler queue fills
// and only the guard can end the connection.
func TestRapidReset(t *testing.T) {
	for _, paced := range []bool{false, true} {
		t.Run(map[bool]string{false: "burst", true: "paced"}[paced], func(t *testing.T) {
			var handled atomic.Int64
			ts := startServer(t, Config{Logger: discardLogger()}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				handled.Add(1)
			}), false)
			c := dialRaw(t, ts)
			blk := c.block("GET", "/rapid")
			sent := 0
			for ; sent < 5000; sent++ {
				id := uint32(2*sent + 1)
				err := c.write(func() error {
					if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true}); err != nil {
						return err
					}
					return c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
				})
				if err != nil || c.closed(0) {
					break
				}
				if paced && sent%50 == 49 {
					_ = c.write(func() error { return c.fr.WritePing(false, [8]byte{1}) })
					if _, ok := c.next(5*time.Second, func(f http2Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() }); !ok {
						break
					}
				}
			}
			wantAbuse(t, ts, c, AbuseRapidReset)
			opened := ts.stats.opened.Load()
			t.Logf("%d pairs sent, %d streams opened, %d handled", sent, opened, handled.Load())
			if opened < resetguard.DefaultMinStreams || opened > 2*resetguard.DefaultMinStreams {
				t.Errorf("closed after %d streams, want the guard's %d (plus those in flight)", opened, resetguard.DefaultMinStreams)
			}
			if handled.Load() >= resetguard.DefaultMinStreams {
				t.Errorf("%d handlers ran for reset streams", handled.Load())
			}
		})
	}
}

// TestHandlerQueueBound: handlers that do not return when their stream is
// reset hold their slot; more streams queue, up to 4× the limit, then the
// connection ends. The guard is off so that only the queue is tested.
func TestHandlerQueueBound(t *testing.T) {
	app := newBlockingApp()
	defer close(app.release)
	ts := startServer(t, Config{MaxConcurrentStreams: 10, Logger: discardLogger(),
		ResetGuard: func() *resetguard.Guard { return resetguard.New(1<<30, 0) }}, app, false)
	c := dialRaw(t, ts)
	id := uint32(1)
	pair := func(wait bool) error {
		defer func() { id += 2 }()
		if err := c.headers(id, true, c.block("GET", "/hold")); err != nil {
			return err
		}
		if wait {
			waitStarted(t, app, 1)
		}
		return c.write(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeCancel) })
	}
	for range 10 {
		if err := pair(true); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		if pair(false) != nil {
			break
		}
	}
	wantAbuse(t, ts, c, AbuseHandlerQueue)
	if n := app.seen("/hold"); n != 10 {
		t.Errorf("%d handlers ran, want the 10 slots", n)
	}
}

// TestControlFrameFloods: frames that do no work, sent without pause,
// exhaust the connection's budget.
func TestControlFrameFloods(t *testing.T) {
	floods := []struct {
		name  string
		frame func(c *rawClient, i int) error
	}{
		{"PING", func(c *rawClient, i int) error { return c.fr.WritePing(false, [8]byte{byte(i)}) }},
		{"SETTINGS", func(c *rawClient, i int) error { return c.fr.WriteSettings() }},
		{"WINDOW_UPDATE", func(c *rawClient, i int) error { return c.fr.WriteWindowUpdate(0, 1) }},
		{"PRIORITY", func(c *rawClient, i int) error {
			return c.fr.WritePriority(uint32(2*i+101), http2.PriorityParam{StreamDep: 0, Weight: 1})
		}},
		{"empty DATA", func(c *rawClient, i int) error { return c.fr.WriteData(1, false, nil) }},
		{"unknown type", func(c *rawClient, i int) error { return c.fr.WriteRawFrame(0xfa, 0, 0, nil) }},
		{"RST_STREAM on closed streams", func(c *rawClient, i int) error { return c.fr.WriteRSTStream(1, http2.ErrCodeCancel) }},
	}
	for _, fl := range floods {
		t.Run(fl.name, func(t *testing.T) {
			app := newBlockingApp()
			ts := startServer(t, Config{Logger: discardLogger()}, app, false)
			c := dialRaw(t, ts)
			if err := c.headers(1, fl.name == "RST_STREAM on closed streams", c.block("POST", "/ctx")); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5000 && !c.closed(0); i++ {
				if c.write(func() error { return fl.frame(c, i) }) != nil {
					break
				}
			}
			wantAbuse(t, ts, c, AbuseControlFlood)
		})
	}
}

// TestLegitimateTrafficIsNotThrottled: a real client's WINDOW_UPDATEs,
// SETTINGS and many requests stay within the budget.
func TestLegitimateTrafficIsNotThrottled(t *testing.T) {
	ts := startServer(t, Config{InitialWindowSize: 64 << 10, ConnWindowSize: 128 << 10}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/big" {
			_, _ = io.Copy(w, io.LimitReader(&pattern{}, 32<<20))
			return
		}
		_, _ = io.WriteString(w, "ok")
	}), false)
	client := ts.client(t)
	res, err := client.Get(ts.url("/big"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, res.Body); err != nil || n != 32<<20 {
		t.Fatalf("download: %d %v", n, err)
	}
	_ = res.Body.Close()
	for i := range 2000 {
		res, err := client.Post(ts.url("/small"), "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
	}
	if got := ts.stats.abuses(); len(got) != 0 {
		t.Errorf("legitimate traffic taken for abuse: %v", got)
	}
}

// TestContinuationFlood: a header block that never ends is cut once the
// header limit is passed (x/net), long before all of it is read.
func TestContinuationFlood(t *testing.T) {
	app := newBlockingApp()
	ts := startServer(t, Config{Logger: discardLogger()}, app, false)
	c := dialRaw(t, ts)
	blk := c.block("GET", "/flood")
	if err := c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk})
	}); err != nil {
		t.Fatal(err)
	}
	var frag bytes.Buffer
	enc := hpack.NewEncoder(&frag)
	for frag.Len() < 15000 {
		_ = enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 1000), Sensitive: true})
	}
	sent := 0
	for ; sent < 300 && !c.closed(0); sent++ {
		if c.write(func() error { return c.fr.WriteContinuation(1, false, frag.Bytes()) }) != nil {
			break
		}
		time.Sleep(2 * time.Millisecond) // what was sent is what the server read
	}
	if !c.closed(5 * time.Second) {
		t.Fatalf("still open after %d KiB of header block", sent*frag.Len()>>10)
	}
	if sent*frag.Len() > 256<<10 {
		t.Errorf("%d KiB of header block sent before the close, want about the 64 KiB limit", sent*frag.Len()>>10)
	}
	if app.seen("/flood") != 0 {
		t.Error("the flooded request was handled")
	}
	if got := ts.stats.abuses(); !slices.Contains(got, AbuseHeaderBlock) {
		t.Errorf("abuse reasons %v, want %s", got, AbuseHeaderBlock)
	}
	t.Logf("closed after %d KiB of header block: %v", sent*frag.Len()>>10, ts.serveErrors())
}

func TestEmptyContinuationFlood(t *testing.T) {
	ts := startServer(t, Config{Logger: discardLogger()}, newBlockingApp(), false)
	c := dialRaw(t, ts)
	blk := c.block("GET", "/flood")
	if err := c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk})
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100000 && !c.closed(0); i++ {
		if c.write(func() error { return c.fr.WriteContinuation(1, false, nil) }) != nil {
			break
		}
	}
	wantAbuse(t, ts, c, AbuseContinuation)
}

// TestStuckWriteClosed: a client that opens a large window and never
// reads is closed after the write timeout; the handler's write fails.
func TestStuckWriteClosed(t *testing.T) {
	writeErr := make(chan error, 1)
	ts := startServer(t, Config{WriteTimeout: 200 * time.Millisecond, Logger: discardLogger()}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := w.Write(buf); err != nil {
				writeErr <- err
				return
			}
		}
	}), false)
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	bw := bufio.NewWriter(nc)
	fr := http2.NewFramer(bw, nil)
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"}, {Name: ":authority", Value: "x"}, {Name: ":path", Value: "/"}} {
		_ = enc.WriteField(f)
	}
	_, _ = bw.WriteString(http2.ClientPreface)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	_ = fr.WriteWindowUpdate(0, 1<<30)
	_ = fr.WriteSettingsAck()
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk.Bytes(), EndStream: true, EndHeaders: true})
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-writeErr:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still writing to a client that does not read")
	}
}

// TestUnaryResponseIsOneWrite: HEADERS, DATA and trailers of a response
// leave in one write to the socket (group commit).
func TestUnaryResponseIsOneWrite(t *testing.T) {
	var writes atomic.Int64
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write([]byte("\x00\x00\x00\x00\x05hello"))
		w.Header().Set("Grpc-Status", "0")
	}), false)
	ts.setWrap(func(c net.Conn) net.Conn { return &countingConn{Conn: c, writes: &writes} })
	c := dialRaw(t, ts)
	if err := c.headers(1, true, c.block("POST", "/warmup")); err != nil {
		t.Fatal(err)
	}
	if f, ok := c.next(5*time.Second, func(f http2Frame) bool { return isStreamFrame(f, 1) && streamEnded(f) }); !ok {
		t.Fatal("no response")
	} else if h, ok := f.(*headersFrame); !ok || h.get("grpc-status") != "0" {
		t.Fatalf("last frame %s, want trailers", describe(f))
	}
	time.Sleep(50 * time.Millisecond) // SETTINGS exchange settled
	before := writes.Load()
	if err := c.headers(3, true, c.block("POST", "/svc/M")); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.next(5*time.Second, func(f http2Frame) bool { return isStreamFrame(f, 3) && streamEnded(f) }); !ok {
		t.Fatal("no response")
	}
	if n := writes.Load() - before; n != 1 {
		t.Errorf("%d socket writes for one unary response, want 1", n)
	}
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func describeGoAway(g *http2.GoAwayFrame) string {
	if g == nil {
		return "none"
	}
	return fmt.Sprintf("%v last=%d %q", g.ErrCode, g.LastStreamID, g.DebugData())
}
