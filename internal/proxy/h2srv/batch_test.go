package h2srv

import (
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentResponsesShareWrites: responses of several streams that
// become ready together leave in a few socket writes, not one per stream
// (the last writer out yields before it flushes; connWriter.release).
func TestConcurrentResponsesShareWrites(t *testing.T) {
	const streams = 16
	var started atomic.Int32
	release := make(chan struct{})
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/warmup" {
			return
		}
		started.Add(1)
		<-release
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("hello"))
	}), false)
	var writes atomic.Int64
	ts.setWrap(func(c net.Conn) net.Conn { return &countingConn{Conn: c, writes: &writes} })
	c := dialRaw(t, ts)
	if err := c.headers(1, true, c.block("GET", "/warmup")); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.next(5*time.Second, func(f http2Frame) bool { return isStreamFrame(f, 1) && streamEnded(f) }); !ok {
		t.Fatal("no response to the warm-up request")
	}
	for i := range streams {
		if err := c.headers(uint32(3+2*i), true, c.block("GET", "/batch")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for started.Load() < streams {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d handlers started", started.Load(), streams)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the server's answers to the client's frames are out
	before := writes.Load()
	close(release)
	for i := range streams {
		id := uint32(3 + 2*i)
		if _, ok := c.next(5*time.Second, func(f http2Frame) bool { return isStreamFrame(f, id) && streamEnded(f) }); !ok {
			t.Fatalf("no response on stream %d", id)
		}
	}
	if n := writes.Load() - before; n > streams/2 {
		t.Errorf("%d socket writes for %d responses that were ready together, want at most %d", n, streams, streams/2)
	} else {
		t.Logf("%d socket writes for %d responses", n, streams)
	}
}
