package h2cli

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func sleepHandler(w http.ResponseWriter, r *http.Request) {
	if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
		time.Sleep(d)
	}
}

func get(t *testing.T, p *Pool, url string) {
	t.Helper()
	res, err := p.RoundTrip(mustRequest(t, testContext(t), "GET", url, nil))
	if err != nil {
		t.Error(err)
		return
	}
	readAll(t, res)
	if res.StatusCode != 200 {
		t.Errorf("status %d", res.StatusCode)
	}
}

// TestMaxRequestsPerConn (h2pool_test.go's cases): a connection retires
// after max_requests_per_connection requests; concurrent requests share
// one up to the limit.
func TestMaxRequestsPerConn(t *testing.T) {
	b := newBackend(t, false, sleepHandler)
	p := newPool(t, Options{Dial: b.dial, MaxRequestsPerConn: 3})
	for range 7 {
		get(t, p, b.url("/x"))
	}
	if got := b.clients(); len(got) != 3 {
		t.Errorf("7 requests with max_requests_per_connection 3: %d connections %v, want 3 (3+3+1)", len(got), got)
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { get(t, p, b.url("/x?sleep=100ms")) })
	}
	wg.Wait()
	if got := b.clients(); len(got) < 2 || len(got) > 3 {
		t.Errorf("6 concurrent requests with max_requests_per_connection 3: %d connections %v, want 2 (3 with the 7th's)", len(got), got)
	}
	waitFor(t, "retired connections closed", func() bool { return livePool(p) <= 1 })
}

// TestMaxConnDuration: a connection older than max_connection_duration
// takes no new request, and a slow request on it still completes.
func TestMaxConnDuration(t *testing.T) {
	b := newBackend(t, true, sleepHandler)
	p := newPool(t, Options{Dial: b.dial, MaxConnDuration: 150 * time.Millisecond})
	slow := make(chan struct{})
	go func() {
		defer close(slow)
		get(t, p, b.url("/x?sleep=400ms"))
	}()
	time.Sleep(50 * time.Millisecond)
	get(t, p, b.url("/x")) // same connection, still young
	time.Sleep(200 * time.Millisecond)
	get(t, p, b.url("/x")) // a new connection
	<-slow
	if got := b.clients(); len(got) != 2 {
		t.Errorf("max_connection_duration 150ms: %d connections %v, want 2", len(got), got)
	}
	waitFor(t, "the aged connection closed after its last request", func() bool { return b.conns.Load() == 2 && livePool(p) <= 1 })
}

// TestIdleTimeout: a connection without streams closes after the idle
// timeout; one in use does not.
func TestIdleTimeout(t *testing.T) {
	b := newBackend(t, false, sleepHandler)
	p := newPool(t, Options{Dial: b.dial, IdleTimeout: 100 * time.Millisecond})
	get(t, p, b.url("/x?sleep=250ms")) // longer than the idle timeout: still fine
	if n := livePool(p); n != 1 {
		t.Fatalf("%d connections after a request, want 1", n)
	}
	waitFor(t, "the idle connection closed", func() bool { return livePool(p) == 0 })
	get(t, p, b.url("/x"))
	if n := b.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the idle one was closed)", n)
	}
}

// TestDialError: the dial function's error is returned with its type;
// waiting requests share one failed dial.
func TestDialError(t *testing.T) {
	type connectError struct{ error }
	var dials atomic.Int32
	release := make(chan struct{})
	p := newPool(t, Options{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		<-release
		return nil, &connectError{errors.New("refused")}
	}})
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			_, err := p.RoundTrip(mustRequest(t, testContext(t), "GET", "http://127.0.0.1:1/", nil))
			var ce *connectError
			if !errors.As(err, &ce) {
				t.Errorf("RoundTrip: %v (%T), want a *connectError in the chain", err, err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials for 5 waiting requests, want 1 at a time", n)
	}
}

// TestRetire: requests in flight finish on a retired pool; idle
// connections close at once; a late request gets a connection of its own
// that closes after it.
func TestRetire(t *testing.T) {
	b := newBackend(t, false, sleepHandler)
	p := newPool(t, Options{Dial: b.dial})
	get(t, p, b.url("/x"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		get(t, p, b.url("/x?sleep=200ms"))
	}()
	time.Sleep(50 * time.Millisecond)
	p.Retire()
	<-done
	waitFor(t, "retired connections closed", func() bool { return livePool(p) == 0 })
	get(t, p, b.url("/x"))
	waitFor(t, "the late request's connection closed", func() bool { return livePool(p) == 0 })
}

// TestCloseIdle closes only connections without streams.
func TestCloseIdle(t *testing.T) {
	b := newBackend(t, false, sleepHandler)
	p := newPool(t, Options{Dial: b.dial})
	get(t, p, b.url("/x"))
	p.CloseIdle()
	if n := livePool(p); n != 0 {
		t.Errorf("%d connections after CloseIdle, want 0", n)
	}
}

// TestInlineRequestOneWrite: a request whose body is in memory goes out
// as HEADERS and DATA in one write (group commit on the caller's
// goroutine), and a GET is one write too.
func TestInlineRequestOneWrite(t *testing.T) {
	b := newBackend(t, false, echoHandler)
	var writes atomic.Int32
	counting := false
	var mu sync.Mutex
	p := newPool(t, Options{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		nc, err := dialTCP(ctx, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: nc, writes: &writes, on: func() bool { mu.Lock(); defer mu.Unlock(); return counting }}, nil
	}})
	get(t, p, b.url("/warm")) // the connection and its preface
	time.Sleep(20 * time.Millisecond)
	for _, tc := range []struct {
		method string
		body   string
	}{{"GET", ""}, {"POST", "hello world"}} {
		mu.Lock()
		counting = true
		mu.Unlock()
		writes.Store(0)
		var body *strings.Reader
		req := mustRequest(t, testContext(t), tc.method, b.url("/"), nil)
		if tc.body != "" {
			body = strings.NewReader(tc.body)
			req = mustRequest(t, testContext(t), tc.method, b.url("/"), body)
		}
		res, err := p.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		counting = false
		mu.Unlock()
		if got := string(readAll(t, res)); got != tc.body {
			t.Errorf("echo %q", got)
		}
		if n := writes.Load(); n != 1 {
			t.Errorf("%s: %d writes to send the request, want 1", tc.method, n)
		}
	}
}

type countingConn struct {
	net.Conn
	writes *atomic.Int32
	on     func() bool
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.on() {
		c.writes.Add(1)
	}
	return c.Conn.Write(p)
}

// livePool counts the pool's open connections.
func livePool(p *Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.live)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Errorf("timed out waiting: %s", what)
}

// TestSequentialReuse: with one stream per connection, requests one after
// another share a connection: a stream's slot is free by the time its
// caller sees io.EOF.
func TestSequentialReuse(t *testing.T) {
	b := newBackendMaxStreams(t, 1, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-T")
		_, _ = w.Write([]byte("body"))
		w.Header().Set("X-T", "1")
	})
	p := newPool(t, Options{Dial: dialTCP})
	for range 20 {
		get(t, p, "http://"+b.addr+"/")
	}
	if got := b.clients(); len(got) != 1 {
		t.Errorf("20 sequential requests, 1 stream per connection: %d connections %v, want 1", len(got), got)
	}
}
