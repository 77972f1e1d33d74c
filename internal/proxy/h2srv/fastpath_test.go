package h2srv

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// idleWatcher is the server's ResponseWriter as a proxy sees it.
type idleWatcher interface {
	WatchIdle(time.Duration)
}

// TestWatchIdle: a stream whose handler set its own idle timeout. The
// server's connection-wide timeouts are the defaults (minutes), so the
// ticker must speed up for the handler's 150 ms.
func TestWatchIdle(t *testing.T) {
	const idle = 150 * time.Millisecond
	causes := make(chan error, 8)
	release := make(chan struct{})
	defer close(release)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(idleWatcher).WatchIdle(idle)
		switch r.URL.Path {
		case "/answer": // the handler answers when told
			<-r.Context().Done()
			causes <- context.Cause(r.Context())
			w.Header().Set("X-Answer", "idle")
			w.WriteHeader(http.StatusRequestTimeout)
		case "/silent": // told, but never answers: reset
			<-r.Context().Done()
			causes <- context.Cause(r.Context())
			<-release
		case "/started": // the response started, then stalls: reset
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			causes <- context.Cause(r.Context())
		case "/body": // reads the body slowly: each read is progress
			var b [1]byte
			n := 0
			for {
				time.Sleep(idle / 3)
				m, err := r.Body.Read(b[:])
				n += m
				if err != nil {
					break
				}
			}
			if err := r.Context().Err(); err != nil {
				causes <- context.Cause(r.Context())
				return
			}
			_, _ = io.WriteString(w, strconv.Itoa(n))
		}
	})
	ts := startServer(t, Config{}, app, false)
	c := dialRaw(t, ts)

	begin := time.Now()
	if err := c.headers(1, true, c.block("GET", "/answer")); err != nil {
		t.Fatal(err)
	}
	h := c.response(1, 5*time.Second)
	if h == nil || h.get(":status") != "408" || h.get("x-answer") != "idle" {
		t.Fatalf("/answer: %+v, want the handler's 408", h)
	}
	if d := time.Since(begin); d < idle || d > 2*time.Second {
		t.Errorf("/answer: answered after %v, want about %v", d, idle)
	}
	if err := <-causes; !errors.Is(err, ErrStreamIdle) {
		t.Errorf("/answer: context cause %v, want ErrStreamIdle", err)
	}

	if err := c.headers(3, true, c.block("GET", "/silent")); err != nil {
		t.Fatal(err)
	}
	if r := c.reset(3, 5*time.Second); r == nil || r.ErrCode != http2.ErrCodeCancel {
		t.Fatalf("/silent: %v, want RST_STREAM CANCEL", r)
	}
	if err := <-causes; !errors.Is(err, ErrStreamIdle) {
		t.Errorf("/silent: context cause %v, want ErrStreamIdle", err)
	}

	if err := c.headers(5, true, c.block("GET", "/started")); err != nil {
		t.Fatal(err)
	}
	if h := c.response(5, 5*time.Second); h == nil || h.get(":status") != "200" {
		t.Fatalf("/started: %+v", h)
	}
	if r := c.reset(5, 5*time.Second); r == nil || r.ErrCode != http2.ErrCodeCancel {
		t.Fatalf("/started: %v, want RST_STREAM CANCEL", r)
	}
	if err := <-causes; !errors.Is(err, ErrStreamIdle) {
		t.Errorf("/started: context cause %v, want ErrStreamIdle", err)
	}

	// The whole body arrives at once; the handler reads it for about
	// 2.3× the timeout.
	if err := c.headers(7, false, c.block("POST", "/body")); err != nil {
		t.Fatal(err)
	}
	if err := c.write(func() error { return c.fr.WriteData(7, true, []byte("abcdef")) }); err != nil {
		t.Fatal(err)
	}
	if h := c.response(7, 5*time.Second); h == nil || h.get(":status") != "200" {
		t.Fatalf("/body: %+v, want 200", h)
	}
	if f, _ := c.next(5*time.Second, func(f http2.Frame) bool { d, ok := f.(*dataFrame); return ok && d.StreamID == 7 }); f == nil || string(f.(*dataFrame).Data) != "6" {
		t.Fatalf("/body: body %+v, want 6", f)
	}

	select {
	case err := <-causes:
		t.Errorf("unexpected end of a stream: %v", err)
	default:
	}
}

// TestWatchIdleOffUsesNone: WatchIdle(0) turns the server's own stream
// idle timeout off for the stream.
func TestWatchIdleOffUsesNone(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/off" {
			w.(idleWatcher).WatchIdle(0)
		}
		select {
		case <-r.Context().Done():
		case <-time.After(400 * time.Millisecond):
			_, _ = io.WriteString(w, "done")
		}
	})
	ts := startServer(t, Config{StreamIdleTimeout: 100 * time.Millisecond}, app, false)
	c := dialRaw(t, ts)
	if err := c.headers(1, true, c.block("GET", "/off")); err != nil {
		t.Fatal(err)
	}
	if err := c.headers(3, true, c.block("GET", "/on")); err != nil {
		t.Fatal(err)
	}
	if h := c.response(1, 5*time.Second); h == nil || h.get(":status") != "200" {
		t.Errorf("/off: %+v, want 200", h)
	}
	if h := c.response(3, 5*time.Second); h == nil || h.get(":status") != "408" {
		t.Errorf("/on: %+v, want the server's 408", h)
	}
}

// TestRequestBodyBuffered: the body says what it holds, and that it is
// complete only once the client ended the stream.
func TestRequestBodyBuffered(t *testing.T) {
	type buffered interface{ Buffered() (int, bool) }
	type state struct {
		n        int
		complete bool
	}
	states := make(chan state)
	next := make(chan struct{})
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := r.Body.(buffered)
		wait := func(want state) {
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
				if n, complete := b.Buffered(); n == want.n && complete == want.complete {
					break
				}
			}
			n, complete := b.Buffered()
			states <- state{n, complete}
		}
		wait(state{3, false})
		<-next
		wait(state{5, true})
		got, err := io.ReadAll(r.Body)
		n, complete := b.Buffered()
		states <- state{n, complete && err == nil && string(got) == "abcde"}
		_ = r.Body.Close()
		n, complete = b.Buffered()
		states <- state{n, complete}
	})
	ts := startServer(t, Config{}, app, false)
	c := dialRaw(t, ts)
	if err := c.headers(1, false, c.block("POST", "/")); err != nil {
		t.Fatal(err)
	}
	if err := c.write(func() error { return c.fr.WriteData(1, false, []byte("abc")) }); err != nil {
		t.Fatal(err)
	}
	for i, want := range []state{{3, false}, {5, true}, {0, true}, {0, false}} {
		if i == 1 {
			if err := c.write(func() error { return c.fr.WriteData(1, true, []byte("de")) }); err != nil {
				t.Fatal(err)
			}
			next <- struct{}{}
		}
		select {
		case got := <-states:
			if got != want {
				t.Errorf("step %d: Buffered() = %v, want %v", i, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("step %d: handler stuck", i)
		}
	}
}

// TestTrailersWithoutContentLength: a response completed before its
// headers left gets a content-length, unless it has trailers (declared or
// set with http.TrailerPrefix).
func TestTrailersWithoutContentLength(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/declared":
			h.Set("Trailer", "Grpc-Status")
			_, _ = io.WriteString(w, "body")
			h.Set("Grpc-Status", "0")
		case "/declared-unset":
			h.Set("Trailer", "Grpc-Status")
			_, _ = io.WriteString(w, "body")
		case "/prefix":
			_, _ = io.WriteString(w, "body")
			h.Set(http.TrailerPrefix+"Grpc-Status", "0")
		default:
			_, _ = io.WriteString(w, "body")
		}
	})
	ts := startServer(t, Config{}, app, false)
	c := dialRaw(t, ts)
	for i, tt := range []struct {
		path          string
		contentLength string
		trailer       string
	}{
		{"/plain", "4", ""},
		{"/declared", "", "0"},
		{"/declared-unset", "", ""},
		{"/prefix", "", "0"},
	} {
		id := uint32(2*i + 1)
		if err := c.headers(id, true, c.block("GET", tt.path)); err != nil {
			t.Fatal(err)
		}
		h := c.response(id, 5*time.Second)
		if h == nil {
			t.Fatalf("%s: no response", tt.path)
		}
		if got := h.get("content-length"); got != tt.contentLength {
			t.Errorf("%s: content-length %q, want %q", tt.path, got, tt.contentLength)
		}
		if tt.trailer == "" {
			continue
		}
		f, _ := c.next(5*time.Second, func(f http2.Frame) bool {
			h, ok := f.(*headersFrame)
			return ok && h.StreamID == id && h.End && h.get(":status") == ""
		})
		if tr, _ := f.(*headersFrame); tr == nil || tr.get("grpc-status") != tt.trailer {
			t.Errorf("%s: trailers %+v, want grpc-status %s", tt.path, f, tt.trailer)
		}
	}
}

// TestHandlerGoroutineReused: the handlers of a connection's successive
// streams run on one goroutine, which ends with the connection (goleak).
func TestHandlerGoroutineReused(t *testing.T) {
	var mu sync.Mutex
	ids := map[string]int{}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids[goroutineID()]++
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})
	ts := startServer(t, Config{}, app, false)
	c := dialRaw(t, ts)
	const n = 20
	for i := range n {
		id := uint32(2*i + 1)
		if err := c.headers(id, true, c.block("GET", "/")); err != nil {
			t.Fatal(err)
		}
		if h := c.response(id, 5*time.Second); h == nil {
			t.Fatalf("request %d: no response", i)
		}
		// The handler's goroutine is between its stream and the next
		// until the response is fully sent.
		if _, ok := c.next(5*time.Second, func(f http2.Frame) bool { return isStreamFrame(f, id) && streamEnded(f) }); !ok {
			t.Fatalf("request %d: stream not ended", i)
		}
		time.Sleep(10 * time.Millisecond) // for it to wait for the next one
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) > n/4 { // without reuse: n
		t.Errorf("%d sequential streams ran on %d goroutines, want them reused: %v", n, len(ids), ids)
	}
}

func goroutineID() string {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	id, _, _ := strings.Cut(s, " ")
	return id
}

// TestAdoptHeader: a handler can hand the server a header map in place of
// Header's, before it called Header.
func TestAdoptHeader(t *testing.T) {
	type adopter interface{ AdoptHeader(http.Header) bool }
	results := make(chan [2]bool, 1)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := http.Header{"X-Upstream": {"a"}}
		first := w.(adopter).AdoptHeader(h)
		h.Set("X-Later", "b") // the map is the response's now
		w.Header().Add("X-Upstream", "c")
		second := w.(adopter).AdoptHeader(http.Header{"X-Other": {"d"}})
		results <- [2]bool{first, second}
		w.WriteHeader(http.StatusAccepted)
	})
	ts := startServer(t, Config{}, app, false)
	c := dialRaw(t, ts)
	if err := c.headers(1, true, c.block("GET", "/")); err != nil {
		t.Fatal(err)
	}
	h := c.response(1, 5*time.Second)
	if h == nil || h.get(":status") != "202" {
		t.Fatalf("response %+v", h)
	}
	var upstream []string
	for _, f := range h.Fields {
		if f.Name == "x-upstream" {
			upstream = append(upstream, f.Value)
		}
	}
	if strings.Join(upstream, ",") != "a,c" || h.get("x-later") != "b" || h.get("x-other") != "" {
		t.Errorf("fields %v, want x-upstream a and c, x-later b, no x-other", h.Fields)
	}
	if got := <-results; got != [2]bool{true, false} {
		t.Errorf("AdoptHeader = %v, want true, then false once the header exists", got)
	}
}
