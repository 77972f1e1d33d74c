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
// handler's (streamidle.go: the chain's HCM setting, current config), so
// h2srv's own is off; the other limits are the listener's net/http ones.

// initH2 builds the listener's HTTP/2 server, unless net/http serves h2.
// drain is cancelled when shutdown starts.
func (s *h1Server) initH2(lc *listenerConfig) {
	s.drain, s.startDrain = context.WithCancel(s.ctx)
	if s.p.netHTTP2 || s.p.legacyHTTP1 {
		return
	}
	s.h2 = h2srv.New(h2srv.Config{
		MaxConcurrentStreams: maxConcurrentStreams,
		MaxHeaderBytes:       s.mh,
		// A client that sends a header block under the limit in one frame
		// gets an answer (or 431), not FRAME_SIZE_ERROR.
		MaxReadFrameSize:  uint32(max(16<<10, s.mh)),
		IdleTimeout:       idleTimeout,
		ReadHeaderTimeout: readHeaderTimeout,
		StreamIdleTimeout: -1,
		Logger:            s.p.log.With("listener", lc.name),
		Stats:             &h2Stats{s: lc.stats},
	})
}

// serveH2 serves c with h2srv when it is an HTTP/2 connection the sidecar
// serves itself: TLS with ALPN h2 (pre nil), or plaintext whose first bytes,
// pre, are the h2c preface. false: not one; the caller hands c to net/http.
func (s *h1Server) serveH2(c net.Conn, state *tls.ConnectionState, pre []byte) bool {
	if s.h2 == nil || s.legacy {
		return false
	}
	switch {
	case state != nil && state.NegotiatedProtocol == tlsutil.ALPNH2 && pre == nil:
	case state == nil && bytes.HasPrefix(pre, h2Preface):
	default:
		return false
	}
	err := s.h2.ServeConn(s.drain, c, h2srv.ConnOpts{
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
