package h2srv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// blockingApp holds requests until released and counts them by path.
type blockingApp struct {
	release chan struct{}
	started chan string
	mu      sync.Mutex
	byPath  map[string]int
	ctxErrs chan error
}

func newBlockingApp() *blockingApp {
	return &blockingApp{release: make(chan struct{}), started: make(chan string, 1000), byPath: map[string]int{}, ctxErrs: make(chan error, 1000)}
}

func (a *blockingApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.byPath[r.URL.Path]++
	a.mu.Unlock()
	a.started <- r.URL.Path
	switch {
	case strings.HasPrefix(r.URL.Path, "/ctx"): // until the stream ends
		<-r.Context().Done()
		a.ctxErrs <- r.Context().Err()
		return
	case strings.HasPrefix(r.URL.Path, "/hold"): // until released, whatever happens
		<-a.release
	}
	_, _ = io.WriteString(w, "ok")
}

func (a *blockingApp) seen(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byPath[path]
}

func waitStarted(t *testing.T, a *blockingApp, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-a.started:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d handlers started", i, n)
		}
	}
}

func TestMaxConcurrentStreamsRefused(t *testing.T) {
	app := newBlockingApp()
	ts := startServer(t, Config{MaxConcurrentStreams: 4}, app, false)
	c := dialRaw(t, ts)
	for i := range 4 {
		if err := c.headers(uint32(2*i+1), true, c.block("GET", "/hold")); err != nil {
			t.Fatal(err)
		}
	}
	waitStarted(t, app, 4)
	if err := c.headers(9, true, c.block("GET", "/hold")); err != nil {
		t.Fatal(err)
	}
	if r := c.reset(9, 5*time.Second); r == nil || r.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("stream 9: %v, want RST_STREAM REFUSED_STREAM", r)
	}
	close(app.release)
	for i := range 4 {
		if h := c.response(uint32(2*i+1), 5*time.Second); h == nil || h.get(":status") != "200" {
			t.Fatalf("stream %d: %v", 2*i+1, h)
		}
	}
	if n := app.seen("/hold"); n != 4 {
		t.Errorf("app saw %d requests, want 4", n)
	}
}

func TestClientResetCancelsContext(t *testing.T) {
	app := newBlockingApp()
	ts := startServer(t, Config{}, app, false)
	c := dialRaw(t, ts)
	if err := c.headers(1, false, c.block("POST", "/ctx")); err != nil {
		t.Fatal(err)
	}
	waitStarted(t, app, 1)
	if err := c.write(func() error { return c.fr.WriteRSTStream(1, http2.ErrCodeCancel) }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-app.ctxErrs:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("context error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled by the reset")
	}
	if n := ts.stats.resets.Load(); n != 1 {
		t.Errorf("resets counted %d, want 1", n)
	}
}

// TestResetWhileQueued: a stream reset while its handler waits for a slot
// (handlers of earlier reset streams still run) is never handled.
func TestResetWhileQueued(t *testing.T) {
	app := newBlockingApp()
	ts := startServer(t, Config{MaxConcurrentStreams: 2}, app, false)
	c := dialRaw(t, ts)
	rst := func(id uint32) {
		if err := c.write(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeCancel) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []uint32{1, 3} {
		if err := c.headers(id, true, c.block("GET", "/hold")); err != nil {
			t.Fatal(err)
		}
		waitStarted(t, app, 1)
		rst(id)
	}
	// Both handlers run (ignoring the resets): stream 5 waits for a slot.
	if err := c.headers(5, true, c.block("GET", "/hold-queued")); err != nil {
		t.Fatal(err)
	}
	if err := c.headers(7, true, c.block("GET", "/queued-kept")); err != nil {
		t.Fatal(err)
	}
	rst(5)
	time.Sleep(50 * time.Millisecond) // the reset is read
	close(app.release)
	if h := c.response(7, 5*time.Second); h == nil || h.get(":status") != "200" {
		t.Fatalf("stream 7: %v", h)
	}
	if n := app.seen("/hold-queued"); n != 0 {
		t.Errorf("the handler of a stream reset while queued ran %d times", n)
	}
}

func TestHeaderLimits(t *testing.T) {
	app := newBlockingApp()
	ts := startServer(t, Config{MaxHeaderBytes: 4 << 10, MaxHeaderFields: 10}, app, false)
	c := dialRaw(t, ts)
	many := make([]hpack.HeaderField, 11)
	for i := range many {
		many[i] = hpack.HeaderField{Name: "x-h", Value: "v"}
	}
	cases := []struct {
		name  string
		extra []hpack.HeaderField
		want  string
	}{
		{"list over the byte limit", []hpack.HeaderField{{Name: "x-a", Value: strings.Repeat("a", 3000)}, {Name: "x-b", Value: strings.Repeat("b", 3000)}}, "431"},
		{"too many fields", many, "431"},
		{"within the limits", many[:10], "200"},
	}
	id := uint32(1)
	for _, tc := range cases {
		if err := c.headers(id, true, c.block("GET", "/limits", tc.extra...)); err != nil {
			t.Fatal(err)
		}
		if h := c.response(id, 5*time.Second); h == nil || h.get(":status") != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, h, tc.want)
		}
		id += 2
	}
	if n := app.seen("/limits"); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	if n := ts.stats.headerLimits.Load(); n != 2 {
		t.Errorf("header limits counted %d, want 2", n)
	}
}

// TestGracefulDrain: ServeConn's ctx ends; GOAWAY carries the last stream,
// which finishes; a newer one is ignored; then the connection closes.
func TestGracefulDrain(t *testing.T) {
	app := newBlockingApp()
	ts := startServer(t, Config{}, app, false)
	c := dialRaw(t, ts)
	if err := c.headers(1, true, c.block("GET", "/hold")); err != nil {
		t.Fatal(err)
	}
	waitStarted(t, app, 1)
	ts.drain()
	g := c.goAway(5 * time.Second)
	if g == nil || g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
		t.Fatalf("GOAWAY %+v, want NO_ERROR with last stream 1", g)
	}
	if err := c.headers(3, true, c.block("GET", "/after-goaway")); err != nil {
		t.Fatal(err)
	}
	close(app.release)
	if h := c.response(1, 5*time.Second); h == nil || h.get(":status") != "200" {
		t.Fatalf("in-flight stream: %v", h)
	}
	if !c.closed(5 * time.Second) {
		t.Fatal("connection still open after the drain")
	}
	if n := app.seen("/after-goaway"); n != 0 {
		t.Errorf("a stream after GOAWAY was handled")
	}
	if errs := ts.serveErrors(); len(errs) != 0 {
		t.Errorf("ServeConn: %v", errs)
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, Config{IdleTimeout: 100 * time.Millisecond}, newBlockingApp(), false)
	c := dialRaw(t, ts)
	if err := c.headers(1, true, c.block("GET", "/")); err != nil {
		t.Fatal(err)
	}
	if h := c.response(1, 5*time.Second); h == nil {
		t.Fatal("no response")
	}
	begin := time.Now()
	if g := c.goAway(5 * time.Second); g == nil || g.ErrCode != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %+v", g)
	}
	if !c.closed(5*time.Second) || time.Since(begin) > 2*time.Second {
		t.Fatalf("closed after %v", time.Since(begin))
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	app := newBlockingApp()
	ts := startServer(t, Config{StreamIdleTimeout: 100 * time.Millisecond}, app, false)
	c := dialRaw(t, ts)
	if err := c.headers(1, true, c.block("GET", "/ctx")); err != nil {
		t.Fatal(err)
	}
	if h := c.response(1, 5*time.Second); h == nil || h.get(":status") != "408" {
		t.Fatalf("idle stream answered %v, want 408", h)
	}
	select {
	case <-app.ctxErrs:
	case <-time.After(5 * time.Second):
		t.Fatal("handler context not cancelled")
	}
}

func TestHandlerPanics(t *testing.T) {
	ts := startServer(t, Config{Logger: discardLogger()}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/panic":
			panic("boom")
		}
		_, _ = io.WriteString(w, "ok")
	}), false)
	c := dialRaw(t, ts)
	for i, path := range []string{"/abort", "/panic"} {
		id := uint32(2*i + 1)
		if err := c.headers(id, true, c.block("GET", path)); err != nil {
			t.Fatal(err)
		}
		if r := c.reset(id, 5*time.Second); r == nil || r.ErrCode != http2.ErrCodeInternal {
			t.Fatalf("%s: %v, want RST_STREAM INTERNAL_ERROR", path, r)
		}
	}
	if err := c.headers(5, true, c.block("GET", "/")); err != nil {
		t.Fatal(err)
	}
	if h := c.response(5, 5*time.Second); h == nil || h.get(":status") != "200" {
		t.Fatalf("after the panics: %v", h)
	}
}

func TestAbortClosesAtOnce(t *testing.T) {
	app := newBlockingApp()
	ts := startServer(t, Config{}, app, true)
	c := ts.client(t)
	errc := make(chan error, 1)
	go func() {
		res, err := c.Get(ts.url("/ctx"))
		if err == nil {
			_ = res.Body.Close()
		}
		errc <- err
	}()
	waitStarted(t, app, 1)
	ts.abort()
	select {
	case <-app.ctxErrs:
	case <-time.After(5 * time.Second):
		t.Fatal("handler context not cancelled by Abort")
	}
	if err := <-errc; err == nil {
		t.Error("the request succeeded after Abort")
	}
}

// TestDeadlines: http.ResponseController deadlines end a blocked read and
// a write blocked on flow control.
func TestDeadlines(t *testing.T) {
	readErr := make(chan error, 1)
	writeErr := make(chan error, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.URL.Path == "/read" {
			_ = rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			_, err := r.Body.Read(make([]byte, 10))
			readErr <- err
			return
		}
		_ = rc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		buf := make([]byte, 32<<10)
		for {
			if _, err := w.Write(buf); err != nil {
				writeErr <- err
				return
			}
		}
	}), false)
	c := dialRaw(t, ts)
	if err := c.headers(1, false, c.block("POST", "/read")); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read: %v, want a deadline error", err)
	}
	// The raw client never returns window: the writer blocks at 64 KiB.
	if err := c.headers(3, true, c.block("GET", "/write")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-writeErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("write: %v, want a deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write blocked past its deadline")
	}
	if r := c.reset(3, 5*time.Second); r == nil || r.ErrCode != http2.ErrCodeInternal {
		t.Errorf("stream 3: %v, want RST_STREAM INTERNAL_ERROR", r)
	}
}

func TestContentLengthMismatch(t *testing.T) {
	bodyErr := make(chan error, 2)
	started := make(chan struct{}, 2)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		_, err := io.ReadAll(r.Body)
		bodyErr <- err
	}), false)
	c := dialRaw(t, ts)
	for i, body := range []string{"too long", "ab"} {
		id := uint32(2*i + 1)
		blk := c.block("POST", "/", hpack.HeaderField{Name: "content-length", Value: "5"})
		if err := c.write(func() error {
			return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndHeaders: true})
		}); err != nil {
			t.Fatal(err)
		}
		<-started
		if err := c.write(func() error { return c.fr.WriteData(id, true, []byte(body)) }); err != nil {
			t.Fatal(err)
		}
		if r := c.reset(id, 5*time.Second); r == nil || r.ErrCode != http2.ErrCodeProtocol {
			t.Fatalf("body %q for content-length 5: %v, want RST_STREAM PROTOCOL_ERROR", body, r)
		}
		if err := <-bodyErr; err == nil {
			t.Errorf("body %q: the handler read it without error", body)
		}
	}
}

func TestExpectContinue(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Expect") != "" {
			t.Errorf("Expect passed to the handler")
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}), false)
	c := dialRaw(t, ts)
	if err := c.headers(1, false, c.block("POST", "/", hpack.HeaderField{Name: "expect", Value: "100-continue"})); err != nil {
		t.Fatal(err)
	}
	f, ok := c.next(5*time.Second, func(f http2Frame) bool { return isStreamFrame(f, 1) })
	if h, _ := f.(*headersFrame); !ok || h.get(":status") != "100" {
		t.Fatalf("first frame %v, want 100 Continue", describe(f))
	}
	if err := c.write(func() error { return c.fr.WriteData(1, true, []byte("payload")) }); err != nil {
		t.Fatal(err)
	}
	if h := c.response(1, 5*time.Second); h == nil || h.get(":status") != "200" {
		t.Fatalf("final %v", h)
	}
}

func TestConnectionCloseDrains(t *testing.T) {
	var calls atomic.Int32
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	}), false)
	c := dialRaw(t, ts)
	if err := c.headers(1, true, c.block("GET", "/")); err != nil {
		t.Fatal(err)
	}
	h := c.response(1, 5*time.Second)
	if h == nil || h.get("connection") != "" {
		t.Fatalf("response %v (connection header must not be sent)", h)
	}
	if g := c.goAway(5 * time.Second); g == nil || g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
		t.Fatalf("GOAWAY %+v", g)
	}
	if !c.closed(5 * time.Second) {
		t.Fatal("still open")
	}
}

// TestDrainBeforePreface: a connection served after the drain began still
// gets SETTINGS first, then GOAWAY, then the close.
func TestDrainBeforePreface(t *testing.T) {
	ts := startServer(t, Config{}, newBlockingApp(), false)
	ts.drain()
	c := dialRaw(t, ts)
	if !c.closed(5 * time.Second) {
		t.Fatal("still open")
	}
	c.fmu.Lock()
	defer c.fmu.Unlock()
	var kinds []string
	for _, f := range c.log {
		kinds = append(kinds, strings.TrimPrefix(fmt.Sprintf("%T", f), "*http2."))
	}
	if len(kinds) < 2 || kinds[0] != "SettingsFrame" || !slices.Contains(kinds, "GoAwayFrame") {
		t.Fatalf("frames %v, want SETTINGS first and a GOAWAY", kinds)
	}
}

// TestConnectionErrorWithStuckWriter: a connection error while a handler's
// write is blocked on a client that does not read still ends the
// connection (the ticker no longer watches a closing connection).
func TestConnectionErrorWithStuckWriter(t *testing.T) {
	ts := startServer(t, Config{WriteTimeout: time.Minute, Logger: discardLogger()}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := w.Write(buf); err != nil {
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
	time.Sleep(300 * time.Millisecond) // the socket buffers fill
	_ = fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: blk.Bytes(), EndHeaders: true})
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(ts.serveErrors()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("ServeConn did not return after the connection error")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDataAfterEndStream: DATA after the client ended the stream is a
// stream error (STREAM_CLOSED), answered even when the handler has just
// finished the response (the race h2spec 6.1/2 found under load).
func TestDataAfterEndStream(t *testing.T) {
	body := make([]byte, 48<<10) // the handler holds the write lock a while
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}), false)
	c := dialRaw(t, ts)
	_ = c.write(func() error { return c.fr.WriteWindowUpdate(0, 1<<30) })
	const n = 1000
	for i := range n {
		id := uint32(2*i + 1)
		blk := c.block("POST", "/")
		if err := c.write(func() error {
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true}); err != nil {
				return err
			}
			return c.fr.WriteData(id, true, []byte("test"))
		}); err != nil {
			t.Fatal(err)
		}
		if r := c.reset(id, 5*time.Second); r == nil || r.ErrCode != http2.ErrCodeStreamClosed {
			t.Fatalf("stream %d: %v, want RST_STREAM STREAM_CLOSED", id, r)
		}
	}
}
