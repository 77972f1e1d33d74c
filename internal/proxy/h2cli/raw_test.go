package h2cli

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// roundTripAsync runs RoundTrip on a goroutine.
func roundTripAsync(p *Pool, req *http.Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		res, err := p.RoundTrip(req)
		ch <- result{res, err}
	}()
	return ch
}

type result struct {
	res *http.Response
	err error
}

func wait(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("RoundTrip did not return")
		return result{}
	}
}

// streamedBody is a request body of unknown length the pool cannot resend.
func streamedBody(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) }

// TestGoAwayMidFlight: streams up to the GOAWAY's last id complete; the one
// above fails with an error the retry loop classifies as refused-stream
// (a streamed body cannot be resent by the pool), and a bodyless request
// above it is sent again on a new connection.
func TestGoAwayMidFlight(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, Options{Dial: dialTCP})
	ctx := testContext(t)
	first := roundTripAsync(p, mustRequest(t, ctx, "GET", "http://"+srv.addr()+"/1", nil))
	rc := srv.accept()
	h1 := rc.readHeaders()
	req2 := mustRequest(t, ctx, "POST", "http://"+srv.addr()+"/2", streamedBody("body"))
	second := roundTripAsync(p, req2)
	h2 := rc.readHeaders()
	third := roundTripAsync(p, mustRequest(t, ctx, "GET", "http://"+srv.addr()+"/3", nil))
	h3 := rc.readHeaders()
	if err := rc.fr.WriteGoAway(h1.StreamID, http2.ErrCodeNo, nil); err != nil {
		t.Fatal(err)
	}
	// Stream 1 still gets its response after the GOAWAY.
	_ = rc.writeHeaders(h1.StreamID, false, ":status", "200")
	_ = rc.fr.WriteData(h1.StreamID, true, []byte("one"))

	r1 := wait(t, first)
	if r1.err != nil {
		t.Fatalf("stream below the GOAWAY's last id: %v", r1.err)
	}
	if b := readAll(t, r1.res); string(b) != "one" {
		t.Errorf("body %q", b)
	}
	r2 := wait(t, second)
	if r2.err == nil || !strings.Contains(r2.err.Error(), "REFUSED_STREAM") || !IsRefused(r2.err) {
		t.Errorf("stream %d above the last id: %v, want a REFUSED_STREAM error", h2.StreamID, r2.err)
	}
	// The bodyless request went again on a second connection.
	rc2 := srv.accept()
	h := rc2.readHeaders()
	if got := h.PseudoValue("path"); got != "/3" || h3.PseudoValue("path") != "/3" {
		t.Fatalf("resent request path %q", got)
	}
	_ = rc2.writeHeaders(h.StreamID, true, ":status", "204")
	if r3 := wait(t, third); r3.err != nil || r3.res.StatusCode != 204 {
		t.Errorf("resent request: %v %v", r3.res, r3.err)
	}
}

// TestRefusedStream: RST_STREAM(REFUSED_STREAM) fails a streamed request
// with a refused-stream error; a request the pool holds whole is sent
// again (at most twice) before failing the same way.
func TestRefusedStream(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, Options{Dial: dialTCP})
	ctx := testContext(t)
	ch := roundTripAsync(p, mustRequest(t, ctx, "PUT", "http://"+srv.addr()+"/", streamedBody("x")))
	rc := srv.accept()
	h := rc.readHeaders()
	_ = rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream)
	r := wait(t, ch)
	var se *StreamError
	if !errors.As(r.err, &se) || se.Code != http2.ErrCodeRefusedStream || !strings.Contains(r.err.Error(), "REFUSED_STREAM") {
		t.Fatalf("got %v, want a REFUSED_STREAM StreamError", r.err)
	}

	// A body in memory: refused, then sent again whole.
	ch = roundTripAsync(p, mustRequest(t, ctx, "POST", "http://"+srv.addr()+"/", strings.NewReader("in memory")))
	for range maxTransparentRetries {
		h := rc.readHeaders()
		_ = rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream)
	}
	h = rc.readHeaders()
	if got := rc.readBody(h.StreamID); got != "in memory" {
		t.Errorf("the resent request's body: %q", got)
	}
	_ = rc.writeHeaders(h.StreamID, true, ":status", "200")
	if r := wait(t, ch); r.err != nil {
		t.Fatalf("after %d refusals: %v, want the last attempt's response", maxTransparentRetries, r.err)
	}
	// Refused every time: the refusal reaches the caller.
	ch = roundTripAsync(p, mustRequest(t, ctx, "POST", "http://"+srv.addr()+"/", strings.NewReader("in memory")))
	for range 1 + maxTransparentRetries {
		h := rc.readHeaders()
		_ = rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream)
	}
	if r := wait(t, ch); !IsRefused(r.err) {
		t.Fatalf("after %d refusals: %v, want refused", 1+maxTransparentRetries, r.err)
	}
	// The connection is still good.
	ch = roundTripAsync(p, mustRequest(t, ctx, "GET", "http://"+srv.addr()+"/", nil))
	h = rc.readHeaders()
	_ = rc.writeHeaders(h.StreamID, true, ":status", "200")
	if r := wait(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
}

// TestCancelSendsRST: a cancelled request is reset with CANCEL.
func TestCancelSendsRST(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, Options{Dial: dialTCP})
	ctx, cancel := context.WithCancel(context.Background())
	ch := roundTripAsync(p, mustRequest(t, ctx, "GET", "http://"+srv.addr()+"/", nil))
	rc := srv.accept()
	h := rc.readHeaders()
	cancel()
	if r := wait(t, ch); !errors.Is(r.err, context.Canceled) {
		t.Errorf("RoundTrip: %v, want context.Canceled", r.err)
	}
	for {
		f, err := rc.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.StreamID != h.StreamID || rst.ErrCode != http2.ErrCodeCancel {
				t.Errorf("got RST_STREAM %d %v, want %d CANCEL", rst.StreamID, rst.ErrCode, h.StreamID)
			}
			return
		}
	}
}

// TestServerClosesConnection: streams in flight fail; the next request
// dials again.
func TestServerClosesConnection(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, Options{Dial: dialTCP})
	ctx := testContext(t)
	ch := roundTripAsync(p, mustRequest(t, ctx, "GET", "http://"+srv.addr()+"/", nil))
	rc := srv.accept()
	h := rc.readHeaders()
	_ = rc.writeHeaders(h.StreamID, false, ":status", "200")
	_ = rc.fr.WriteData(h.StreamID, false, []byte("partial"))
	r := wait(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(r.res.Body, buf); err != nil {
		t.Fatal(err)
	}
	_ = rc.nc.Close()
	if _, err := io.ReadAll(r.res.Body); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("reading a body cut short: %v, want an error", err)
	}
	ch = roundTripAsync(p, mustRequest(t, ctx, "GET", "http://"+srv.addr()+"/", nil))
	rc2 := srv.accept()
	h = rc2.readHeaders()
	_ = rc2.writeHeaders(h.StreamID, true, ":status", "200")
	if r := wait(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
}

// TestSendFlowControl: the client sends no more than the server's windows
// allow, and continues after WINDOW_UPDATE.
func TestSendFlowControl(t *testing.T) {
	srv := newRawServer(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	p := newPool(t, Options{Dial: dialTCP})
	body := strings.Repeat("0123456789", 5)
	ch := roundTripAsync(p, mustRequest(t, testContext(t), "POST", "http://"+srv.addr()+"/", strings.NewReader(body)))
	rc := srv.accept()
	h := rc.readHeaders()
	var got []byte
	window := 10
	for {
		f, err := rc.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		d, ok := f.(*http2.DataFrame)
		if !ok {
			continue
		}
		got = append(got, d.Data()...)
		window -= len(d.Data())
		if window < 0 {
			t.Fatalf("client sent %d bytes beyond the stream window", -window)
		}
		if d.StreamEnded() {
			break
		}
		if window == 0 {
			_ = rc.fr.WriteWindowUpdate(h.StreamID, 10)
			window = 10
		}
	}
	if string(got) != body {
		t.Errorf("server got %q", got)
	}
	_ = rc.writeHeaders(h.StreamID, true, ":status", "200")
	if r := wait(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
}

// TestResponseHeaderLimits: a response over the header limits fails its
// stream only.
func TestResponseHeaderLimits(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, Options{Dial: dialTCP, MaxHeaderListSize: 1 << 10, MaxHeaderFields: 10})
	ctx := testContext(t)
	cases := []struct {
		name string
		kv   []string
	}{
		{"too many fields", func() []string {
			kv := []string{":status", "200"}
			for i := range 11 {
				kv = append(kv, "x-f", strings.Repeat("v", i+1))
			}
			return kv
		}()},
		{"too large", []string{":status", "200", "x-big", strings.Repeat("b", 2<<10)}},
		{"uppercase name", []string{":status", "200", "X-Upper", "v"}},
		{"pseudo after regular", []string{"x-a", "1", ":status", "200"}},
		{"bad status", []string{":status", "2000"}},
	}
	var rc *rawConn
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := roundTripAsync(p, mustRequest(t, ctx, "GET", "http://"+srv.addr()+"/", nil))
			if rc == nil {
				rc = srv.accept()
			}
			h := rc.readHeaders()
			_ = rc.writeHeaders(h.StreamID, true, tc.kv...)
			if r := wait(t, ch); r.err == nil {
				t.Errorf("got %d, want an error", r.res.StatusCode)
			}
		})
	}
	ch := roundTripAsync(p, mustRequest(t, ctx, "GET", "http://"+srv.addr()+"/", nil))
	h := rc.readHeaders()
	_ = rc.writeHeaders(h.StreamID, true, ":status", "200", "x-ok", "1")
	if r := wait(t, ch); r.err != nil || r.res.Header.Get("X-Ok") != "1" {
		t.Fatalf("the connection after bad responses: %v", r.err)
	}
}

// TestKeepalivePing: a server that answers nothing is found dead; one
// that acknowledges PINGs keeps its connection.
func TestKeepalivePing(t *testing.T) {
	for _, answer := range []bool{false, true} {
		t.Run(map[bool]string{false: "silent", true: "answering"}[answer], func(t *testing.T) {
			srv := newRawServer(t)
			p := newPool(t, Options{Dial: dialTCP, PingInterval: 30 * time.Millisecond, PingTimeout: 30 * time.Millisecond})
			ch := roundTripAsync(p, mustRequest(t, testContext(t), "GET", "http://"+srv.addr()+"/", nil))
			rc := srv.accept()
			h := rc.readHeaders()
			pings := 0
			_ = rc.nc.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
			for {
				f, err := rc.readFrame()
				if err != nil {
					break // closed by the client, or the deadline
				}
				if pf, ok := f.(*http2.PingFrame); ok && !pf.IsAck() {
					pings++
					if answer {
						_ = rc.fr.WritePing(true, pf.Data)
					}
				}
			}
			if answer {
				_ = rc.writeHeaders(h.StreamID, true, ":status", "200") // the connection is alive: answer now
			}
			r := wait(t, ch)
			switch {
			case pings == 0:
				t.Error("no keepalive PING")
			case !answer && (r.err == nil || !strings.Contains(r.err.Error(), "PING")):
				t.Errorf("silent server: %v, want the connection closed for a missing PING ack", r.err)
			case answer && r.err != nil:
				t.Errorf("answering server: %v, want the connection kept", r.err)
			}
			if answer && r.err == nil {
				_ = r.res.Body.Close()
			}
		})
	}
}

// awaitRST reads frames until a RST_STREAM and returns it.
func (rc *rawConn) awaitRST(t *testing.T) *http2.RSTStreamFrame {
	t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := rc.readFrame()
		if err != nil {
			t.Fatalf("waiting for RST_STREAM: %v", err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			return rst
		}
	}
}

// TestResetWithoutReader: a stream nobody reads (a HEAD's, left open by
// the server) is reset when its context ends; closing an unfinished body
// resets its stream.
func TestResetWithoutReader(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, Options{Dial: dialTCP})
	ctx, cancel := context.WithCancel(context.Background())
	ch := roundTripAsync(p, mustRequest(t, ctx, "HEAD", "http://"+srv.addr()+"/", nil))
	rc := srv.accept()
	h := rc.readHeaders()
	_ = rc.writeHeaders(h.StreamID, false, ":status", "200", "content-length", "10")
	r := wait(t, ch)
	if r.err != nil || r.res.Body != http.NoBody || r.res.ContentLength != 10 {
		t.Fatalf("HEAD: %+v, %v; want NoBody, Content-Length 10", r.res, r.err)
	}
	cancel()
	if rst := rc.awaitRST(t); rst.StreamID != h.StreamID || rst.ErrCode != http2.ErrCodeCancel {
		t.Errorf("RST_STREAM %d %v, want %d CANCEL", rst.StreamID, rst.ErrCode, h.StreamID)
	}

	ch = roundTripAsync(p, mustRequest(t, testContext(t), "GET", "http://"+srv.addr()+"/", nil))
	h = rc.readHeaders()
	_ = rc.writeHeaders(h.StreamID, false, ":status", "200")
	_ = rc.fr.WriteData(h.StreamID, false, []byte("more to come"))
	r = wait(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	_ = r.res.Body.Close()
	if rst := rc.awaitRST(t); rst.StreamID != h.StreamID || rst.ErrCode != http2.ErrCodeCancel {
		t.Errorf("RST_STREAM %d %v, want %d CANCEL", rst.StreamID, rst.ErrCode, h.StreamID)
	}
	if _, err := r.res.Body.Read(make([]byte, 1)); !errors.Is(err, errBodyClosed) {
		t.Errorf("Read after Close: %v", err)
	}
}

// TestErrorResponseStopsUpload: a final error response (> 299) stops the
// streamed request body, and the stream ends with RST_STREAM(NO_ERROR)
// once the response is complete (RFC 9113 8.1); the body is closed.
func TestErrorResponseStopsUpload(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, Options{Dial: dialTCP})
	pr, pw := io.Pipe()
	ch := roundTripAsync(p, mustRequest(t, testContext(t), "POST", "http://"+srv.addr()+"/", pr))
	rc := srv.accept()
	h := rc.readHeaders()
	_ = rc.writeHeaders(h.StreamID, true, ":status", "413")
	r := wait(t, ch)
	if r.err != nil || r.res.StatusCode != 413 {
		t.Fatalf("got %v %v, want 413", r.res, r.err)
	}
	wrote := make(chan error, 1)
	go func() { // wakes the writer, which stops and closes the body
		_, err := pw.Write([]byte("more body"))
		if err == nil {
			_, err = pw.Write([]byte("x")) // nobody reads any more: fails once closed
		}
		wrote <- err
	}()
	if rst := rc.awaitRST(t); rst.StreamID != h.StreamID || rst.ErrCode != http2.ErrCodeNo {
		t.Errorf("RST_STREAM %d %v, want %d NO_ERROR", rst.StreamID, rst.ErrCode, h.StreamID)
	}
	select {
	case err := <-wrote:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("writing the request body: %v, want io.ErrClosedPipe", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the request body was not closed")
	}
}

// TestHeaderTableSize: with the server's SETTINGS_HEADER_TABLE_SIZE 0 the
// client indexes nothing, so a decoder without a dynamic table reads
// repeated requests.
func TestHeaderTableSize(t *testing.T) {
	srv := newRawServer(t, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	p := newPool(t, Options{Dial: dialTCP})
	var rc *rawConn
	for i := range 3 {
		req := mustRequest(t, testContext(t), "GET", "http://"+srv.addr()+"/same", nil)
		req.Header.Set("X-Repeated", "the same value every time")
		ch := roundTripAsync(p, req)
		if rc == nil {
			rc = srv.accept()
			rc.fr.ReadMetaHeaders = hpack.NewDecoder(0, nil)
		}
		h := rc.readHeaders()
		if got := h.RegularFields(); len(got) != 1 || got[0].Value != "the same value every time" {
			t.Fatalf("request %d: fields %v", i, got)
		}
		_ = rc.writeHeaders(h.StreamID, true, ":status", "200")
		if r := wait(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
}

// TestResponseBodyBuffered: the response body says what a read returns at
// once, and that it is the rest only when the server ended the stream.
func TestResponseBodyBuffered(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, Options{Dial: dialTCP})
	ch := roundTripAsync(p, mustRequest(t, testContext(t), "GET", "http://"+srv.addr()+"/", nil))
	rc := srv.accept()
	h := rc.readHeaders()
	if err := rc.writeHeaders(h.StreamID, false, ":status", "200"); err != nil {
		t.Fatal(err)
	}
	r := wait(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.res.Body.Close()
	bb, ok := r.res.Body.(BufferedBody)
	if !ok {
		t.Fatalf("response body %T is not a BufferedBody", r.res.Body)
	}
	waitBuffered := func(step string, n int, complete bool) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
			if gn, gc := bb.Buffered(); gn == n && gc == complete {
				return
			}
		}
		gn, gc := bb.Buffered()
		t.Fatalf("%s: Buffered() = %d, %v, want %d, %v", step, gn, gc, n, complete)
	}
	waitBuffered("headers only", 0, false)
	if err := rc.fr.WriteData(h.StreamID, false, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	waitBuffered("some data", 3, false)
	if err := rc.fr.WriteData(h.StreamID, true, []byte("de")); err != nil {
		t.Fatal(err)
	}
	waitBuffered("ended", 5, true)
	if b, err := io.ReadAll(r.res.Body); err != nil || string(b) != "abcde" {
		t.Fatalf("body %q, %v", b, err)
	}
	waitBuffered("read", 0, true)
}

// goroutineBody is a request body that says it is complete (or not) and
// records the goroutine that reads it.
type goroutineBody struct {
	r        io.Reader
	complete bool
	mu       sync.Mutex
	readers  map[string]bool
}

func (b *goroutineBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	b.readers[goroutineID()] = true
	b.mu.Unlock()
	return b.r.Read(p)
}

func (b *goroutineBody) Close() error { return nil }

func (b *goroutineBody) Buffered() (int, bool) {
	if !b.complete {
		return 0, false
	}
	return b.r.(*strings.Reader).Len(), true
}

func goroutineID() string {
	var buf [64]byte
	s := strings.TrimPrefix(string(buf[:runtime.Stack(buf[:], false)]), "goroutine ")
	id, _, _ := strings.Cut(s, " ")
	return id
}

// TestBufferedBodyInline: a body that says it is complete is read on the
// caller's goroutine and sent with the HEADERS; one that cannot say so is
// copied by a goroutine of its own. Both arrive whole.
func TestBufferedBodyInline(t *testing.T) {
	for _, complete := range []bool{true, false} {
		t.Run(map[bool]string{true: "complete", false: "streamed"}[complete], func(t *testing.T) {
			srv := newRawServer(t)
			p := newPool(t, Options{Dial: dialTCP})
			body := &goroutineBody{r: strings.NewReader("payload"), complete: complete, readers: map[string]bool{}}
			req := mustRequest(t, testContext(t), "POST", "http://"+srv.addr()+"/", nil)
			req.Body, req.ContentLength = body, -1
			caller := make(chan string, 1)
			ch := make(chan result, 1)
			go func() {
				caller <- goroutineID()
				res, err := p.RoundTrip(req)
				ch <- result{res, err}
			}()
			rc := srv.accept()
			h := rc.readHeaders()
			if got := rc.readBody(h.StreamID); got != "payload" {
				t.Fatalf("body %q", got)
			}
			if err := rc.writeHeaders(h.StreamID, true, ":status", "204"); err != nil {
				t.Fatal(err)
			}
			if r := wait(t, ch); r.err != nil {
				t.Fatal(r.err)
			}
			id := <-caller
			body.mu.Lock()
			defer body.mu.Unlock()
			if inline := len(body.readers) == 1 && body.readers[id]; inline != complete {
				t.Errorf("read on the caller's goroutine: %v (readers %v, caller %s), want %v", inline, body.readers, id, complete)
			}
		})
	}
}
