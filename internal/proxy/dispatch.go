package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/h2srv"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

// h1Server serves one HTTP listener with the fast path: it accepts, picks
// the connection's filter chain and runs its mTLS handshake (downstream.go:
// PERMISSIVE sniffs the first bytes), and serves HTTP/1.1 on the accepting
// goroutine's child, one goroutine per connection. HTTP/2 connections (ALPN
// h2, h2c prior knowledge) are served on that goroutine by h2srv
// (h2serve.go). Connections neither handles (upgrades, HTTP/1.0,
// absolute-form targets, HTTP/2 clusters; every one in legacy mode, and
// HTTP/2 with Options.NetHTTP2) are handed, with the bytes already read, to
// the listener's net/http server through a handoffListener.
type h1Server struct {
	p      *Proxy
	ctx    context.Context // cancelled when draining gives up
	cancel context.CancelFunc
	name   string
	ln     net.Listener
	tlsc   serverTLS // the TLS chain's server config
	mh     int       // max header bytes
	legacy bool      // every connection goes to net/http (TRELLIS_PROXY_LEGACY_HTTP1)

	// The slow path's net/http server starts with the first connection
	// handed to it, and the HTTP/2 server with the first HTTP/2
	// connection: most listeners of a sidecar never serve either, and an
	// idle pair costs ~3.5 kB of heap and a goroutine per listener.
	slowMu     sync.Mutex
	slow       *http.Server     // nil until the first handoff
	handoff    *handoffListener // set with slow
	slowDone   chan struct{}    // closed when slow's Serve returns
	slowClosed bool             // shutdown began: no more handoffs

	h2Mu       sync.Mutex
	h2         *h2srv.Server      // HTTP/2 connections (h2serve.go); nil until the first
	drain      context.Context    // cancelled when shutdown starts: HTTP/2 drains
	startDrain context.CancelFunc // (GOAWAY); s.ctx ending closes them
	h2Drained  bool               // shutdown began: drain is cancelled at once

	draining atomic.Bool
	conns    connSet[*downConn]
	wg       sync.WaitGroup
}

func (p *Proxy) newH1Server(lc *listenerConfig, ln net.Listener) *h1Server {
	s := &h1Server{
		p: p, name: lc.name, ln: ln, mh: maxHeaderBytes,
	}
	s.ctx, s.cancel = context.WithCancel(p.ctx)
	if lc.maxHeaderKB > 0 && int(lc.maxHeaderKB)<<10 < s.mh {
		s.mh = int(lc.maxHeaderKB) << 10
	}
	return s
}

// serve accepts until the listener closes. The slow-path server, once
// started (handOff), runs beside it on the handoff listener and stops in
// shutdown.
func (s *h1Server) serve() error {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && s.p.ctx.Err() == nil {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

// handle owns one accepted connection until it closes or is handed off.
func (s *h1Server) handle(c net.Conn) {
	lc := s.p.cfg.Load().listeners[s.name]
	if lc == nil || lc.kind != kindHTTP {
		_ = c.Close()
		return
	}
	stats := lc.stats
	open := stats.active.Add(1)
	handedOff := false
	defer func() {
		if !handedOff {
			_ = c.Close()
			stats.active.Add(-1) // handed-off connections are counted by the slow server
		}
	}()
	if open > s.p.maxConns {
		stats.downstreamOverflow.Add(1)
		return
	}
	d, err := s.p.acceptDownstream(s.ctx, lc, c, &s.tlsc, readHeaderTimeout)
	if err != nil {
		s.p.log.Debug("downstream connection refused", "listener", s.name, "error", err)
		return
	}
	c = d.conn
	if s.legacy || d.state != nil && d.state.NegotiatedProtocol == tlsutil.ALPNH2 {
		if s.serveH2(c, d.state, nil) { // h2serve.go
			return
		}
		// net/http sets its own deadlines, and sees a *tls.Conn as TLS.
		handedOff = s.handOff(lc, d.replayed())
		return
	}
	dc := s.newDownConn(c, d.state)
	dc.rd.w = copy(dc.rd.buf, d.pre)
	if !s.conns.add(dc) {
		s.releaseDownConn(dc)
		return
	}
	pre, handoff := dc.serve()
	if dc.linger && !handoff {
		dc.lingerClose()
	}
	s.conns.remove(dc)
	s.releaseDownConn(dc)
	if handoff {
		_ = c.SetDeadline(time.Time{})   // net/http sets its own; an upgrade may last
		if !s.serveH2(c, d.state, pre) { // h2c prior knowledge (h2serve.go)
			handedOff = s.handOff(lc, &prefixConn{Conn: c, pre: pre, tlsState: d.state})
		}
	}
}

// shutdown stops accepting, wakes idle keep-alive connections so they close,
// lets in-flight requests finish (their responses carry Connection: close)
// until ctx ends, then closes what is left.
func (s *h1Server) shutdown(ctx context.Context) {
	_ = s.ln.Close()
	s.draining.Store(true)
	s.drainH2() // HTTP/2 connections of h2srv: GOAWAY (h2serve.go)
	s.conns.each((*downConn).wakeIfIdle)
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	s.slowMu.Lock()
	s.slowClosed = true
	slow, slowDone := s.slow, s.slowDone
	s.slowMu.Unlock()
	if slow != nil {
		if err := slow.Shutdown(ctx); err != nil {
			_ = slow.Close()
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.cancel() // handshakes in progress
	s.conns.close(func(dc *downConn) {
		_ = dc.nc.Close()
		if uc := dc.cur.Load(); uc != nil {
			_ = uc.nc.Close()
		}
	})
	<-done
	if slow != nil {
		_ = slow.Close() // connections handed off while shutting down
		<-slowDone
	}
}

// handOff passes c to the listener's net/http server, starting the server
// with the first connection (lc: the listener's current config). false:
// shutdown began, the caller closes c.
func (s *h1Server) handOff(lc *listenerConfig, c net.Conn) bool {
	s.slowMu.Lock()
	if s.slowClosed {
		s.slowMu.Unlock()
		return false
	}
	if s.slow == nil {
		s.slow = s.p.newHTTPServer(lc, true)
		s.handoff = newHandoffListener(s.ln.Addr())
		s.slowDone = make(chan struct{})
		slow, l, done := s.slow, s.handoff, s.slowDone
		go func() {
			defer close(done)
			_ = slow.Serve(l)
		}()
	}
	l := s.handoff
	s.slowMu.Unlock()
	return l.push(c)
}

// handoffListener feeds connections to the net/http server of the slow path.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// prefixConn replays bytes the fast path already read, and carries the TLS
// state of a connection net/http cannot see as a *tls.Conn.
type prefixConn struct {
	net.Conn
	pre      []byte
	tlsState *tls.ConnectionState
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection (the TCP proxy's pipe needs it).
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

type tlsStateKey struct{}

// connContext makes the TLS state of a handed-off connection visible to the
// slow path's handler.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*prefixConn); ok && pc.tlsState != nil {
		return context.WithValue(ctx, tlsStateKey{}, pc.tlsState)
	}
	return ctx
}

func requestTLS(r *http.Request) *tls.ConnectionState {
	if r.TLS != nil {
		return r.TLS
	}
	cs, _ := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	return cs
}
