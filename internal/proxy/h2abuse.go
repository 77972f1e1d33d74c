package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/resetguard"
)

// HTTP/2 rapid reset (CVE-2023-44487) on the net/http path: a client opens
// streams and resets them at once, so the sidecar does the work of each
// request while the client pays nothing. Go's server bounds the handlers
// running per connection, but not the rate, so the connection would stay
// open and requests whose handler had started would reach the app.
//
//	ConnContext ──► h2Conn{guard, conn} in the connection's context
//	ServeHTTP   ──► h2Stream: Opened at start; reset by the client → Reset(age)
//	                guard trips (Envoy's rule) ──► log, count, close the socket
//
// Only HTTP/2 requests count; the other requests of a handed-off connection
// (upgrades, HTTP/1.0…) never touch the guard.

// h2ConnKey is the context key of a connection's *h2Conn.
type h2ConnKey struct{}

// h2Conn is one downstream connection of a listener's net/http server, as
// the rapid-reset defence sees it.
type h2Conn struct {
	guard    *resetguard.Guard
	conn     net.Conn // as the server accepted it
	p        *Proxy
	listener string
	stats    *endpointStats // the listener's (the registry keeps them by name)
}

// h2ConnContext returns the ConnContext of a listener's net/http server: the
// TLS state of a handed-off connection (connContext) and its h2Conn.
func (p *Proxy) h2ConnContext(listener string, stats *endpointStats) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		ctx = connContext(ctx, c)
		return context.WithValue(ctx, h2ConnKey{}, &h2Conn{
			guard: resetguard.New(0, 0), conn: c, p: p, listener: listener, stats: stats,
		})
	}
}

// h2Stream is one HTTP/2 request of an h2Conn, from its handler's start.
// The zero value (not HTTP/2, or not on a listener's server) does nothing.
type h2Stream struct {
	c     *h2Conn
	ctx   context.Context // the stream's: done when the client resets it
	start time.Time
}

// startH2Stream records the start of r's handler. serve is false when the
// client reset the stream while it waited for a handler (Go's server runs
// at most maxConcurrentStreams per connection): nothing is forwarded, the
// reset is counted, and the caller returns at once.
//
// The handler's start stands in for the stream's: net/http does not say
// when HEADERS arrived. A queued stream's age is therefore underestimated,
// which only makes the rule stricter for connections already at their
// stream limit.
func startH2Stream(r *http.Request) (s h2Stream, serve bool) {
	if r.ProtoMajor != 2 {
		return h2Stream{}, true
	}
	c, _ := r.Context().Value(h2ConnKey{}).(*h2Conn)
	if c == nil {
		return h2Stream{}, true
	}
	c.guard.Opened()
	s = h2Stream{c: c, ctx: r.Context(), start: time.Now()}
	if s.ctx.Err() != nil {
		s.end()
		return s, false
	}
	return s, true
}

// end runs when the handler returns. A stream whose context is done was
// reset by the client (or its connection went away): the route timeout
// cancels a context derived from it, never the stream's own. A proxy
// shutting down cancels every stream; those are not the client's doing.
func (s h2Stream) end() {
	if s.c == nil || s.ctx.Err() == nil || s.c.p.ctx.Err() != nil || s.c.guard.Tripped() {
		return
	}
	s.c.stats.rxReset.Add(1)
	if s.c.guard.Reset(time.Since(s.start)) {
		s.c.closeAbusive()
	}
}

// closeAbusive closes a connection whose client resets most of its streams
// prematurely (Envoy: downstream_rq_too_many_premature_resets). net/http
// offers no GOAWAY for one connection, so the socket is closed under it:
// the server's read loop ends, which cancels every stream and handler.
func (c *h2Conn) closeAbusive() {
	opened, premature := c.guard.Counts()
	c.stats.prematureResetCx.Add(1)
	c.p.log.Warn("closing HTTP/2 connection: too many premature stream resets (rapid reset)",
		"listener", c.listener, "remote", c.conn.RemoteAddr().String(),
		"streams", opened, "premature_resets", premature)
	if err := closeSocket(c.conn); err != nil {
		c.p.log.Debug("closing abusive connection", "listener", c.listener, "error", err)
	}
}

// closeSocket closes c's transport at once. A *tls.Conn's Close would first
// send close_notify, which blocks for up to 5 s on a client that does not
// read; the attacker gets no alert.
func closeSocket(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn().Close()
	}
	return c.Close()
}
