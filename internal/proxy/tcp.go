package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

const tcpHandshakeTimeout = 10 * time.Second

// tcpServer serves one tcp_proxy listener: accept, optional mTLS handshake,
// connect to a round-robin endpoint of the listener's cluster, copy both
// ways with half-close.
type tcpServer struct {
	p    *Proxy
	name string
	tlsc serverTLS // the TLS chain's server config (downstream.go)
	ln   net.Listener

	conns connSet[net.Conn]
	wg    sync.WaitGroup
}

func newTCPServer(p *Proxy, lc *listenerConfig, ln net.Listener) *tcpServer {
	return &tcpServer{p: p, name: lc.name, ln: ln}
}

func (s *tcpServer) serve() error {
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
		if !s.conns.add(c) {
			_ = c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.conns.remove(c)
			s.handle(c)
		}()
	}
}

func (s *tcpServer) shutdown(ctx context.Context) {
	_ = s.ln.Close()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.conns.close(func(c net.Conn) { _ = c.Close() })
	<-done
}

func (s *tcpServer) handle(down net.Conn) {
	defer down.Close()
	cfg := s.p.cfg.Load()
	lc := cfg.listeners[s.name]
	if lc == nil || lc.kind != kindTCP {
		return // removed while draining
	}
	open := lc.stats.active.Add(1)
	defer lc.stats.active.Add(-1)
	if open > s.p.maxConns {
		lc.stats.downstreamOverflow.Add(1)
		return
	}
	lc.stats.requests.Add(1)
	ctx, cancel := context.WithCancel(s.p.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = down.Close() })
	defer stop()
	log := s.p.log.With("listener", s.name, "remote", down.RemoteAddr().String())

	// The connection's filter chain (PERMISSIVE: by its first bytes) and
	// its mTLS handshake; from here lc is that chain.
	d, err := s.p.acceptDownstream(ctx, lc, down, &s.tlsc, tcpHandshakeTimeout)
	if err != nil {
		log.Debug("downstream connection refused", "error", err)
		return
	}
	lc = d.chain
	conn := d.replayed() // down stays the socket, closed on cancellation
	if peer, err := tlsutil.PeerID(d.state); err == nil {
		log = log.With("peer", peer.String())
	}
	if len(lc.netRBAC) > 0 && !s.p.authorizeConn(ctx, lc, conn, d.state, log) {
		return // denied: closed at once (authz_tcp.go)
	}
	name := lc.tcpClusterName()
	c := cfg.clusters[name]
	if c == nil {
		log.Warn("tcp cluster not found", "cluster", name)
		return
	}
	c.stats.requests.Add(1)
	st := c.state
	if !st.br.Connections.TryAcquire() {
		c.stats.upstreamOverflow.Add(1)
		log.Warn("upstream overflow: max_connections reached", "cluster", c.name)
		return
	}
	defer st.br.Connections.Release()
	ep, ok := st.pick(lb.Key{}, nil, nil)
	if !ok {
		log.Warn("no healthy upstream", "cluster", c.name)
		return
	}
	st.begin(ep)
	defer st.end(ep)
	up, err := dialUpstream(ctx, c, s.p.id, ep.addr)
	if err != nil {
		// As Envoy's tcp_proxy: a connect failure counts for outlier
		// detection (as a 503), a connect success resets the counters.
		st.report(ep, http.StatusServiceUnavailable)
		log.Warn("upstream connect failed", "cluster", c.name, "endpoint", ep.addr, "error", err)
		return
	}
	st.report(ep, http.StatusOK)
	defer up.Close()
	stopUp := context.AfterFunc(ctx, func() { _ = up.Close() })
	defer stopUp()
	pipe(conn, up, lc.idleTimeout)
}

// pipe copies both ways until both directions end. EOF on one side
// half-closes the other; the connection is idle when neither direction
// moved data for idle (0: no idle timeout).
func pipe(a, b net.Conn, idle time.Duration) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyHalf(b, a, idle, &last)
	}()
	copyHalf(a, b, idle, &last)
	wg.Wait()
}

type closeWriter interface{ CloseWrite() error }

func copyHalf(dst, src net.Conn, idle time.Duration, last *atomic.Int64) {
	buf := make([]byte, 32<<10)
	for {
		if idle > 0 {
			_ = src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				_ = dst.Close()
				return
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle {
			continue // the other direction was active
		}
		if errors.Is(err, io.EOF) {
			if cw, ok := dst.(closeWriter); ok {
				_ = cw.CloseWrite()
				return
			}
		}
		// Idle timeout, reset, or no half-close support: end both directions.
		_ = src.Close()
		_ = dst.Close()
		return
	}
}
