package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// pipeDialer dials in-memory connections and closes them at cleanup.
func pipeDialer(t *testing.T) (func(ctx context.Context, addr string) (net.Conn, error), *int) {
	var mu sync.Mutex
	var conns []net.Conn
	dials := 0
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return func(ctx context.Context, addr string) (net.Conn, error) {
		a, b := net.Pipe()
		mu.Lock()
		conns = append(conns, a, b)
		dials++
		mu.Unlock()
		return a, nil
	}, &dials
}

func newWaiter() *poolWaiter { return &poolWaiter{ch: make(chan poolGrant, 1)} }

func TestPoolLimits(t *testing.T) {
	dial, dials := pipeDialer(t)
	bufs := &bufferPools{}
	p := newH1Pool(dial, poolOptions{}, 1, 1)
	ctx := context.Background()
	get := func(ep string, deadline time.Time) (*upConn, error) {
		uc, err := p.acquire(ctx, ep, deadline, newWaiter())
		if err != nil || uc != nil {
			return uc, err
		}
		return p.dialConn(ctx, ep, bufs)
	}
	a, err := get("a:1", time.Time{})
	if err != nil || *dials != 1 {
		t.Fatalf("first acquire: %v, %d dials", err, *dials)
	}
	// At max_connections 1: b:1 has no connection at all, so it may open one.
	b, err := get("b:1", time.Time{})
	if err != nil || *dials != 2 {
		t.Fatalf("endpoint without connections: %v, %d dials", err, *dials)
	}
	// a:1 is at the limit with one in use: one waiter is allowed, the next
	// overflows.
	done := make(chan *upConn)
	go func() {
		uc, err := get("a:1", time.Now().Add(5*time.Second))
		if err != nil {
			t.Errorf("pending acquire: %v", err)
		}
		done <- uc
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.waiters)
		p.mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := get("a:1", time.Now().Add(time.Second)); !errors.Is(err, errOverflow) {
		t.Fatalf("second pending: %v, want overflow", err)
	}
	p.put(a, time.Now(), true) // handed to the waiter, not pooled
	if got := <-done; got != a || *dials != 2 {
		t.Errorf("waiter got %p (dials %d), want the released connection", got, *dials)
	}
	// A pending request times out at its deadline.
	start := time.Now()
	if _, err := get("a:1", time.Now().Add(50*time.Millisecond)); !errors.Is(err, errRouteTimeout) || time.Since(start) < 40*time.Millisecond {
		t.Errorf("pending past its deadline: %v after %v", err, time.Since(start))
	}
	// Closing a (the limit is 1 and a:1 has only that one) frees the slot
	// for a waiter of a:1 to dial with.
	go func() {
		uc, err := get("a:1", time.Now().Add(5*time.Second))
		if err != nil {
			t.Errorf("pending acquire: %v", err)
		}
		done <- uc
	}()
	for {
		p.mu.Lock()
		n := len(p.waiters)
		p.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	p.discard(a)
	if got := <-done; got == nil || got == a || *dials != 3 {
		t.Errorf("after a close the waiter got %p (dials %d), want a new connection", got, *dials)
	}
	p.mu.Lock()
	if p.open != 2 || len(p.waiters) != 0 {
		t.Errorf("open %d waiters %d, want 2 and 0", p.open, len(p.waiters))
	}
	p.mu.Unlock()
	p.discard(b)
}

// TestPoolIdleVictim: at max_connections, an idle connection to another
// endpoint is closed to make room rather than making the request wait.
func TestPoolIdleVictim(t *testing.T) {
	dial, dials := pipeDialer(t)
	bufs := &bufferPools{}
	p := newH1Pool(dial, poolOptions{}, 2, 0)
	ctx := context.Background()
	get := func(ep string) *upConn {
		t.Helper()
		uc, err := p.acquire(ctx, ep, time.Time{}, newWaiter())
		if err != nil {
			t.Fatalf("acquire %s: %v", ep, err)
		}
		if uc != nil {
			return uc
		}
		if uc, err = p.dialConn(ctx, ep, bufs); err != nil {
			t.Fatal(err)
		}
		return uc
	}
	a := get("a:1")
	b := get("b:1")
	p.put(a, time.Now(), true) // a idles; b stays in use
	b2 := get("b:1")           // at the limit: a's idle connection makes room
	if *dials != 3 || b2 == a {
		t.Fatalf("dials %d", *dials)
	}
	p.mu.Lock()
	if p.open != 2 || p.perEP["a:1"] != 0 || len(p.idle["a:1"]) != 0 {
		t.Errorf("open %d, a:1 open %d idle %d; want 2, 0, 0", p.open, p.perEP["a:1"], len(p.idle["a:1"]))
	}
	p.mu.Unlock()
	p.discard(b)
	p.discard(b2)
}

func TestPoolConnectionLifetime(t *testing.T) {
	dial, _ := pipeDialer(t)
	bufs := &bufferPools{}
	p := newH1Pool(dial, poolOptions{maxRequestsPerConn: 2, maxConnDuration: time.Hour}, 10, 10)
	ctx := context.Background()
	if _, err := p.acquire(ctx, "a:1", time.Time{}, newWaiter()); err != nil {
		t.Fatal(err)
	}
	uc, err := p.dialConn(ctx, "a:1", bufs)
	if err != nil {
		t.Fatal(err)
	}
	p.put(uc, time.Now(), true)
	if got, _ := p.acquire(ctx, "a:1", time.Time{}, newWaiter()); got != uc {
		t.Fatal("connection not reused after its first request")
	}
	p.put(uc, time.Now(), true) // second request: max_requests_per_connection reached
	p.mu.Lock()
	if p.open != 0 || len(p.idle["a:1"]) != 0 {
		t.Errorf("after 2 requests: open %d idle %d, want the connection closed", p.open, len(p.idle["a:1"]))
	}
	p.mu.Unlock()
	// max_connection_duration: an old idle connection is not reused.
	if _, err := p.acquire(ctx, "a:1", time.Time{}, newWaiter()); err != nil {
		t.Fatal(err)
	}
	old, _ := p.dialConn(ctx, "a:1", bufs)
	old.born = time.Now().Add(-2 * time.Hour)
	p.put(old, time.Now(), false)
	if got, _ := p.acquire(ctx, "a:1", time.Time{}, newWaiter()); got != nil {
		t.Error("connection past max_connection_duration reused")
	}
}
