package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"syscall"
	"time"
)

const (
	maxIdlePerEndpoint = 256
	upstreamIdleTime   = 90 * time.Second
)

// upConn is a pooled HTTP/1.1 upstream connection with its buffers.
type upConn struct {
	nc        net.Conn
	rd        connReader
	bw        *bufio.Writer
	ep        string
	idleSince time.Time
	reused    bool      // taken from the pool rather than freshly dialed
	dl        time.Time // last deadline set on nc

	// probeIdle's state: the TCP socket under TLS, and its callback.
	raw        syscall.RawConn
	probeFn    func(fd uintptr) bool
	probeBuf   [1]byte
	probeAlive bool
}

// newUpConn wraps a freshly dialed connection with pooled buffers.
func newUpConn(nc net.Conn, ep string, bufs *bufferPools) *upConn {
	uc := &upConn{nc: nc, ep: ep, rd: connReader{rd: nc, buf: bufs.getRead()}, bw: bufs.getWriter(nc)}
	inner := nc
	if tc, ok := inner.(*tls.Conn); ok {
		inner = tc.NetConn()
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

// h1Pool keeps idle keep-alive HTTP/1.1 connections of one cluster by
// endpoint, most recently used first. It is shared by every config that keeps
// the cluster's fingerprint, like the legacy transport.
type h1Pool struct {
	dial func(ctx context.Context, addr string) (net.Conn, error)

	mu     sync.Mutex
	idle   map[string][]*upConn
	closed bool
}

func newH1Pool(dial func(ctx context.Context, addr string) (net.Conn, error)) *h1Pool {
	return &h1Pool{dial: dial, idle: map[string][]*upConn{}}
}

// get returns an idle connection to ep, or nil.
func (p *h1Pool) get(ep string, now time.Time) *upConn {
	p.mu.Lock()
	conns := p.idle[ep]
	var stale []*upConn
	var uc *upConn
	for len(conns) > 0 {
		c := conns[len(conns)-1]
		conns = conns[:len(conns)-1]
		if now.Sub(c.idleSince) < upstreamIdleTime {
			uc = c
			break
		}
		// The newest is stale, so are the older ones.
		stale = append(stale, c)
		stale = append(stale, conns...)
		conns = conns[:0]
	}
	p.idle[ep] = conns
	p.mu.Unlock()
	for _, c := range stale {
		_ = c.nc.Close()
	}
	if uc != nil {
		uc.reused = true
	}
	return uc
}

// put returns a connection whose last exchange completed cleanly. It reports
// false (the caller closes it) when the pool is full or closed.
func (p *h1Pool) put(uc *upConn, now time.Time) bool {
	uc.idleSince = now
	uc.rd.flushFirst = nil
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[uc.ep]) >= maxIdlePerEndpoint {
		return false
	}
	p.idle[uc.ep] = append(p.idle[uc.ep], uc)
	return true
}

// closeIdle closes every idle connection. The pool stays usable: a cluster
// whose transport is carried over keeps serving after an update.
func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*upConn{}
	p.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			_ = c.nc.Close()
		}
	}
}
