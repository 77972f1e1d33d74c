package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

const (
	maxIdlePerEndpoint = 256
	// upstreamIdleTime is how long an idle pooled connection is kept when
	// the cluster sets no common_http_protocol_options.idle_timeout.
	upstreamIdleTime = 90 * time.Second
)

// errOverflow: a circuit breaker limit refused the request (Envoy's UO).
var errOverflow = errors.New("upstream overflow")

// poolOptions are a cluster's connection pool settings
// (common_http_protocol_options).
type poolOptions struct {
	idleTimeout        time.Duration
	idleTimeoutSet     bool // an explicit 0 disables the idle timeout
	maxRequestsPerConn uint32
	maxConnDuration    time.Duration // 0: none
}

// upConn is a pooled HTTP/1.1 upstream connection with its buffers.
type upConn struct {
	nc   net.Conn
	rd   connReader
	bw   *bufio.Writer
	ep   string
	pool *h1Pool
	born time.Time
	// certExpiry: the earliest certificate expiry of its TLS handshake
	// (zero: plaintext); the connection is not reused from then on.
	certExpiry time.Time
	requests   uint32 // exchanges completed on it
	idleSince  time.Time
	reused     bool      // taken from the pool rather than freshly dialed
	dl         time.Time // last deadline set on nc

	// probeIdle's state: the TCP socket under TLS, and its callback.
	raw        syscall.RawConn
	probeFn    func(fd uintptr) bool
	probeBuf   [1]byte
	probeAlive bool
}

// newUpConn wraps a freshly dialed connection with pooled buffers.
func newUpConn(nc net.Conn, ep string, pool *h1Pool, bufs *bufferPools) *upConn {
	uc := &upConn{nc: nc, ep: ep, pool: pool, born: time.Now(), rd: connReader{rd: nc, buf: bufs.getRead()}, bw: bufs.getWriter(nc)}
	inner := nc
	if tc, ok := inner.(*tls.Conn); ok {
		inner = tc.NetConn()
	}
	if ec, ok := inner.(*expiringConn); ok {
		uc.certExpiry = ec.expiry()
		inner = ec.Conn
	}
	if cc, ok := inner.(*countedConn); ok {
		inner = cc.Conn
	}
	if sc, ok := inner.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			uc.raw = raw
			uc.probeFn = uc.peek
		}
	}
	return uc
}

// setDeadline sets nc's deadline unless unchanged (zero, commonly).
func (uc *upConn) setDeadline(t time.Time) {
	if t.Equal(uc.dl) {
		return
	}
	uc.dl = t
	_ = uc.nc.SetDeadline(t)
}

// h1Pool keeps the HTTP/1.1 connections of one cluster: idle keep-alive
// connections by endpoint, most recently used first, and the count of open
// ones against the cluster's max_connections. It is shared by every config
// that keeps the cluster's fingerprint, like the legacy transport.
//
// A request that finds no idle connection dials one while the cluster is
// below max_connections (or its endpoint has none at all, as Envoy's pools
// always may open one). Otherwise it waits, as one of at most
// max_pending_requests, for a connection to its endpoint to be released, or
// for a slot freed by a closed one; beyond that it overflows.
type h1Pool struct {
	dial       func(ctx context.Context, addr string) (net.Conn, error)
	opts       poolOptions
	maxConns   int
	maxPending int

	mu      sync.Mutex
	idle    map[string][]*upConn
	open    int            // connections counted: idle, in use, being dialed
	perEP   map[string]int // open by endpoint
	waiters []*poolWaiter  // FIFO
	closed  bool
}

// poolWaiter is a request waiting for a connection. ch (capacity 1) gets
// exactly one grant, sent under the pool's lock.
type poolWaiter struct {
	ep string
	ch chan poolGrant
}

// poolGrant hands a waiter an idle connection, or a slot to dial one.
type poolGrant struct{ uc *upConn }

func newH1Pool(dial func(ctx context.Context, addr string) (net.Conn, error), opts poolOptions, maxConns, maxPending uint32) *h1Pool {
	return &h1Pool{
		dial: dial, opts: opts, maxConns: int(maxConns), maxPending: int(maxPending),
		idle: map[string][]*upConn{}, perEP: map[string]int{},
	}
}

func (p *h1Pool) idleTimeout() time.Duration {
	if p.opts.idleTimeoutSet {
		return p.opts.idleTimeout // 0: never idle out
	}
	return upstreamIdleTime
}

// expired reports whether a connection may not serve another request.
func (p *h1Pool) expired(uc *upConn, now time.Time) bool {
	if t := p.idleTimeout(); t > 0 && now.Sub(uc.idleSince) >= t {
		return true
	}
	if !uc.certExpiry.IsZero() && !now.Before(uc.certExpiry) {
		return true // its handshake's certificates expired (expiry.go)
	}
	return p.opts.maxConnDuration > 0 && now.Sub(uc.born) >= p.opts.maxConnDuration
}

// acquire returns an idle connection to ep (uc != nil), or the right to
// dial one (uc == nil, err == nil): the slot is counted and must be
// released with discard, or with dialFailed if the dial fails. It waits
// until deadline (zero: no limit other than the proxy's life) when the
// cluster is at max_connections; w is the caller's reusable waiter.
func (p *h1Pool) acquire(ctx context.Context, ep string, deadline time.Time, w *poolWaiter) (*upConn, error) {
	now := time.Now()
	p.mu.Lock()
	uc, stale := p.takeIdleLocked(ep, now)
	if uc == nil && !p.reserveLocked(ep) {
		if victim := p.oldestIdleLocked(); victim != nil {
			// An idle connection to another endpoint holds the slot this
			// request needs: close it instead of waiting.
			stale = append(stale, victim)
			p.releaseLocked(victim.ep)
			p.reserveLocked(ep)
		} else {
			if len(p.waiters) >= p.maxPending {
				p.mu.Unlock()
				closeAll(stale)
				return nil, errOverflow
			}
			w.ep = ep
			p.waiters = append(p.waiters, w)
			p.mu.Unlock()
			closeAll(stale)
			return p.wait(ctx, w, deadline)
		}
	}
	p.mu.Unlock()
	closeAll(stale)
	return uc, nil
}

// takeIdleLocked pops the newest usable idle connection to ep; expired ones
// are removed (returned for closing, their slots released).
func (p *h1Pool) takeIdleLocked(ep string, now time.Time) (*upConn, []*upConn) {
	conns := p.idle[ep]
	var stale []*upConn
	var uc *upConn
	for len(conns) > 0 {
		c := conns[len(conns)-1]
		conns = conns[:len(conns)-1]
		if !p.expired(c, now) {
			uc = c
			break
		}
		stale = append(stale, c)
		p.releaseLocked(c.ep)
	}
	switch _, ok := p.idle[ep]; {
	case ok && len(conns) == 0 && p.perEP[ep] == 0:
		delete(p.idle, ep) // no connection left to come back: forget the endpoint
	case ok:
		p.idle[ep] = conns // an empty list is kept: put reuses its array
	}
	if uc != nil {
		uc.reused = true
	}
	return uc, stale
}

// reserveLocked counts a new connection to ep if the limit allows.
func (p *h1Pool) reserveLocked(ep string) bool {
	if p.open >= p.maxConns && p.perEP[ep] > 0 {
		return false
	}
	p.open++
	p.perEP[ep]++
	return true
}

func (p *h1Pool) releaseLocked(ep string) {
	p.open--
	if n := p.perEP[ep] - 1; n > 0 {
		p.perEP[ep] = n
	} else {
		delete(p.perEP, ep)
	}
}

// oldestIdleLocked removes and returns the least recently used idle
// connection of any endpoint, or nil.
func (p *h1Pool) oldestIdleLocked() *upConn {
	var oldest *upConn
	for _, conns := range p.idle {
		if len(conns) > 0 && (oldest == nil || conns[0].idleSince.Before(oldest.idleSince)) {
			oldest = conns[0]
		}
	}
	if oldest != nil {
		conns := p.idle[oldest.ep]
		p.idle[oldest.ep] = append(conns[:0], conns[1:]...)
	}
	return oldest
}

func (p *h1Pool) wait(ctx context.Context, w *poolWaiter, deadline time.Time) (*upConn, error) {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case g := <-w.ch:
		return g.uc, nil
	case <-timeout:
	case <-ctx.Done():
	}
	p.mu.Lock()
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.mu.Unlock()
			return nil, errRouteTimeout
		}
	}
	// Granted while giving up: pass the grant on.
	g := <-w.ch
	if g.uc != nil {
		p.mu.Unlock()
		p.put(g.uc, time.Now(), false)
	} else {
		p.releaseLocked(w.ep)
		p.grantSlotLocked()
		p.mu.Unlock()
	}
	return nil, errRouteTimeout
}

// grantSlotLocked gives a free slot to the first waiter, if there is one
// and room for it, and reports whether it did.
func (p *h1Pool) grantSlotLocked() bool {
	if len(p.waiters) == 0 {
		return false
	}
	w := p.waiters[0]
	if !p.reserveLocked(w.ep) {
		return false
	}
	p.waiters[0] = nil
	p.waiters = p.waiters[1:]
	w.ch <- poolGrant{}
	return true
}

// dialConn dials a connection for a slot acquire granted.
func (p *h1Pool) dialConn(ctx context.Context, ep string, bufs *bufferPools) (*upConn, error) {
	nc, err := p.dial(ctx, ep)
	if err != nil {
		p.mu.Lock()
		p.releaseLocked(ep)
		p.grantSlotLocked()
		p.mu.Unlock()
		return nil, err
	}
	return newUpConn(nc, ep, p, bufs), nil
}

// put returns a connection whose last exchange completed cleanly: to a
// request waiting for its endpoint, else to the idle list. A connection
// that reached max_requests_per_connection or max_connection_duration, or
// that the pool has no room for, is closed (its slot going to a waiter).
// counted: the exchange completed (not a hand-back of an unused grant).
func (p *h1Pool) put(uc *upConn, now time.Time, counted bool) {
	uc.idleSince = now
	uc.rd.flushFirst = nil
	if counted {
		uc.requests++
	}
	p.mu.Lock()
	if p.closed || (p.opts.maxRequestsPerConn > 0 && uc.requests >= p.opts.maxRequestsPerConn) ||
		(p.opts.maxConnDuration > 0 && now.Sub(uc.born) >= p.opts.maxConnDuration) {
		p.discardLocked(uc)
		return
	}
	for i, w := range p.waiters {
		if w.ep == uc.ep {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.mu.Unlock()
			uc.reused = true
			w.ch <- poolGrant{uc: uc}
			return
		}
	}
	if len(p.waiters) > 0 || len(p.idle[uc.ep]) >= maxIdlePerEndpoint {
		// Requests wait for other endpoints: this connection's slot serves
		// them better than an idle connection would.
		p.discardLocked(uc)
		return
	}
	p.idle[uc.ep] = append(p.idle[uc.ep], uc)
	p.mu.Unlock()
}

// discardLocked closes a connection that is not in the idle list and
// releases its slot; it unlocks p.mu.
func (p *h1Pool) discardLocked(uc *upConn) {
	p.releaseLocked(uc.ep)
	p.grantSlotLocked()
	p.mu.Unlock()
	_ = uc.nc.Close()
}

// discard closes a connection taken from acquire.
func (p *h1Pool) discard(uc *upConn) {
	p.mu.Lock()
	p.discardLocked(uc)
}

// closeIdle closes every idle connection. The pool stays usable: a cluster
// whose transport is carried over keeps serving after an update.
func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*upConn{}
	for _, conns := range idle {
		for _, c := range conns {
			p.releaseLocked(c.ep)
		}
	}
	for p.grantSlotLocked() {
	}
	p.mu.Unlock()
	for _, conns := range idle {
		closeAll(conns)
	}
}

// retire closes the idle connections of a pool no config uses any more;
// connections still in use are closed when their exchange ends.
func (p *h1Pool) retire() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.closeIdle()
}

func closeAll(conns []*upConn) {
	for _, c := range conns {
		_ = c.nc.Close()
	}
}
