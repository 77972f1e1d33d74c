package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"

	"github.com/trellis-mesh/trellis/internal/proxy/h2srv"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

// HTTP/2 connections of an HTTP listener (docs/adr/003-http2-engine.md):
// the dispatcher serves them on their accepting goroutine with the
// sidecar's own HTTP/2 server (h2srv), calling the listener's handler, the
// same one the net/http server runs. Options.NetHTTP2 (or
// TRELLIS_PROXY_H2=nethttp) and legacy mode hand them to net/http instead.
//
//	ALPN h2 (inbound mTLS) ──────────┐
//	h2c preface (fast path handoff) ─┴─► serveH2 ─► h2srv.ServeConn ─► httpHandler
//	shutdown: s.drain cancelled ─► GOAWAY, streams finish; s.ctx cancelled ─► closed
//
// The connection stays counted in the listener's active connections by
// handle, as fast-path connections are. The stream idle timeout is the
// chain's HCM setting in the current config, which the handler gives each
// forwarded stream (streamidle.go: WatchIdle), so h2srv's connection-wide
// one is off; the other limits are the listener's net/http ones. Requests
// are forwarded by forwardH2 (h2forward.go) rather than ReverseProxy.

// h2Server returns the listener's HTTP/2 server and the context whose end
// drains its connections, both made with the listener's first HTTP/2
// connection. drain is cancelled when shutdown starts (drainH2).
func (s *h1Server) h2Server() (srv *h2srv.Server, drain context.Context) {
	s.h2Mu.Lock()
	defer s.h2Mu.Unlock()
	if s.h2 == nil {
		s.drain, s.startDrain = context.WithCancel(s.ctx)
		if s.h2Drained {
			s.startDrain()
		}
		s.h2 = s.newH2Server()
	}
	return s.h2, s.drain
}

// drainH2 sends GOAWAY on the listener's HTTP/2 connections (at shutdown).
func (s *h1Server) drainH2() {
	s.h2Mu.Lock()
	defer s.h2Mu.Unlock()
	s.h2Drained = true
	if s.startDrain != nil {
		s.startDrain()
	}
}

func (s *h1Server) newH2Server() *h2srv.Server {
	return h2srv.New(h2srv.Config{
		MaxConcurrentStreams: maxConcurrentStreams,
		MaxHeaderBytes:       s.mh,
		// A client that sends a header block under the limit in one frame
		// gets an answer (or 431), not FRAME_SIZE_ERROR.
		MaxReadFrameSize:  uint32(max(16<<10, s.mh)),
		IdleTimeout:       idleTimeout,
		ReadHeaderTimeout: readHeaderTimeout,
		StreamIdleTimeout: -1,
		Logger:            s.p.log.With("listener", s.name),
		Stats:             &h2Stats{s: s.p.stats.listener(s.name)},
	})
}

// serveH2 serves c with h2srv when it is an HTTP/2 connection the sidecar
// serves itself (unless net/http serves h2: Options.NetHTTP2 or legacy
// mode): TLS with ALPN h2 (pre nil), or plaintext whose first bytes, pre,
// are the h2c preface. false: not one; the caller hands c to net/http.
func (s *h1Server) serveH2(c net.Conn, state *tls.ConnectionState, pre []byte) bool {
	if s.p.netHTTP2 || s.p.legacyHTTP1 || s.legacy {
		return false
	}
	switch {
	case state != nil && state.NegotiatedProtocol == tlsutil.ALPNH2 && pre == nil:
	case state == nil && bytes.HasPrefix(pre, h2Preface):
	default:
		return false
	}
	srv, drain := s.h2Server()
	err := srv.ServeConn(drain, c, h2srv.ConnOpts{
		Handler:     &httpHandler{p: s.p, listener: s.name},
		BaseContext: s.p.ctx,
		Abort:       s.ctx,
		TLS:         state,
		Buffered:    pre,
	})
	if err != nil {
		s.p.log.Debug("http2 connection ended", "listener", s.name, "remote", c.RemoteAddr().String(), "error", err)
	}
	return true
}

// h2Stats counts h2srv's events in the listener's stats.
type h2Stats struct{ s *endpointStats }

func (h *h2Stats) StreamOpened() {}

// StreamReset: Envoy's downstream_rq_rx_reset.
func (h *h2Stats) StreamReset() { h.s.rxReset.Add(1) }

func (h *h2Stats) HeaderLimit() {}

// ConnAbuse: a rapid reset is Envoy's downstream_rq_too_many_premature_resets;
// h2srv logs every abusive connection it closes.
func (h *h2Stats) ConnAbuse(why h2srv.Abuse) {
	if why == h2srv.AbuseRapidReset {
		h.s.prematureResetCx.Add(1)
	}
}
