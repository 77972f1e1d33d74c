package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/pathnorm"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

const (
	// clientWatchDelay is how long an upstream may take to answer before
	// the connection's goroutine gets a helper that notices a caller
	// hanging up. Fast exchanges never start it.
	clientWatchDelay = 20 * time.Millisecond
	idleStateActive  = 0
	idleStateIdle    = 1
	idleStateWoken   = 2
	lingerTimeout    = 500 * time.Millisecond
	lingerMaxBytes   = 1 << 20
)

var (
	h2Preface    = []byte("PRI * HTTP/2.0\r\n\r\n")
	aLongTimeAgo = time.Unix(1, 0)
)

// downConn is one downstream connection on the fast path. Only its own
// goroutine touches it, except wakeIfIdle/forceClose (shutdown) and the
// client watch, which runs while that goroutine waits for the upstream.
type downConn struct {
	s     *h1Server
	nc    net.Conn
	state *tls.ConnectionState // inbound mTLS
	rd    connReader
	bw    *bufio.Writer
	req   msgHead
	res   msgHead
	path  []byte // the normalized request target, when it differs (pathnorm)

	ra routeState // route features of the current request (routeaction_h1.go)

	peer    string // caller's SPIFFE ID (inbound)
	xfcc    []byte // X-Forwarded-Client-Cert line for xfccOwn
	xfccOwn string
	xff     []byte // the X-Forwarded-For line forwarded (sanitizeInbound)
	connXFF bool   // xff holds the connection's address (plaintext)

	idle     atomic.Int32
	cur      atomic.Pointer[upConn] // upstream connection of the current exchange
	gone     atomic.Bool            // the client watch saw the caller leave
	watch    *time.Timer
	armed    bool
	deadline time.Time // of the current exchange (route timeout), zero: none
	dl       time.Time // last deadline set on nc by setDeadline
	bodyDone bool      // the current request's body was read to its end
	linger   bool      // closing with a request body unread: let the reply arrive
	done     chan struct{}
	waiter   poolWaiter // reused while waiting for an upstream connection
	rs       resilience // retry, hash and body state of the current exchange

	// Stream idle timeout of the current exchange (streamidle.go): 0 when
	// off or between exchanges; upDeadline bounds the upstream connection
	// (route or per-try deadline); touchFn is dc.touch, made once.
	streamIdle time.Duration
	upDeadline time.Time
	touchFn    func()
}

func (s *h1Server) newDownConn(c net.Conn, state *tls.ConnectionState) *downConn {
	dc := &downConn{s: s, nc: c, state: state, bw: s.p.bufs.getWriter(c), done: make(chan struct{}, 1)}
	dc.waiter.ch = make(chan poolGrant, 1)
	dc.rd = connReader{rd: c, buf: s.p.bufs.getRead()}
	dc.rd.onHeadWait = dc.onHeadWait
	dc.touchFn = dc.touch
	dc.rd.beforeRead = dc.touchFn
	dc.req.contentLength, dc.res.contentLength = -1, -1
	dc.watch = time.AfterFunc(time.Hour, dc.watchClient)
	dc.watch.Stop()
	return dc
}

func (s *h1Server) releaseDownConn(dc *downConn) {
	dc.watch.Stop()
	s.p.bufs.putRead(dc.rd.buf)
	s.p.bufs.putWriter(dc.bw)
	dc.rd.buf, dc.bw = nil, nil
}

// wakeIfIdle makes a connection waiting for its next request give up.
func (dc *downConn) wakeIfIdle() {
	if dc.idle.CompareAndSwap(idleStateIdle, idleStateWoken) {
		_ = dc.nc.SetReadDeadline(aLongTimeAgo)
	}
}

// serve runs the request loop. It returns handoff (with the bytes read but
// not handled) when the rest of the connection belongs to the slow path.
func (dc *downConn) serve() (pre []byte, handoff bool) {
	s := dc.s
	for first := true; ; first = false {
		if !dc.awaitRequest(first) {
			return nil, false
		}
		n, err := dc.rd.readHead(s.mh, s.mh)
		if err != nil {
			dc.protocolError(err)
			return nil, false
		}
		head := dc.rd.buf[dc.rd.r : dc.rd.r+n]
		if first && dc.state == nil && bytes.Equal(head, h2Preface) {
			return bytes.Clone(dc.rd.buffered()), true
		}
		if err := parseRequestHead(head, &dc.req); err != nil {
			dc.protocolError(err)
			return nil, false
		}
		if needsSlowPath(&dc.req) {
			return bytes.Clone(dc.rd.buffered()), true
		}
		keep, slow := dc.handle(n)
		if slow {
			return bytes.Clone(dc.rd.buffered()), true
		}
		if !keep {
			return nil, false
		}
	}
}

// awaitRequest waits, as an idle connection that shutdown may wake, for
// the first bytes of the next request: up to idleTimeout on a kept-alive
// connection, readHeaderTimeout for the first request.
func (dc *downConn) awaitRequest(first bool) bool {
	if dc.rd.r != dc.rd.w {
		dc.setDeadline(time.Now().Add(readHeaderTimeout)) // pipelined
		return true
	}
	dc.idle.Store(idleStateIdle)
	if dc.s.draining.Load() {
		return false
	}
	if first {
		dc.setDeadline(time.Now().Add(readHeaderTimeout))
	} else {
		// Also bounds the head if it arrives whole, and a local reply;
		// onHeadWait tightens it for a head that arrives in pieces.
		dc.setDeadline(keepAliveDeadline(time.Now(), dc.dl))
	}
	err := dc.rd.fill()
	return dc.idle.CompareAndSwap(idleStateIdle, idleStateActive) && err == nil
}

// keepAliveDeadline is the deadline of a kept-alive connection waiting for
// its next request: idleTimeout from now, give or take idleSlack. The
// current deadline stays while it lies within [now+idleTimeout,
// now+idleTimeout+slack], as the stream idle timeout's does when both are
// at their default of 5 minutes: a busy connection then moves its deadline
// (a runtime timer update) once per slack, not twice per request.
func keepAliveDeadline(now, cur time.Time) time.Time {
	lo := now.Add(idleTimeout)
	hi := lo.Add(idleSlack(idleTimeout))
	if !cur.Before(lo) && !cur.After(hi) {
		return cur
	}
	return hi
}

// onHeadWait gives the rest of a partly received head readHeaderTimeout.
func (dc *downConn) onHeadWait() { dc.setDeadline(time.Now().Add(readHeaderTimeout)) }

// setDeadline sets the connection's read and write deadline, skipping the
// runtime timer update when it is unchanged (e.g. zero, no route timeout).
func (dc *downConn) setDeadline(t time.Time) {
	if t.Equal(dc.dl) {
		return
	}
	dc.dl = t
	_ = dc.nc.SetDeadline(t)
}

// lingerClose ends a connection whose caller may still be sending a body
// the proxy did not read: closing at once could reset the connection before
// the caller reads the reply. It half-closes, then reads and discards for a
// short while (like net/http's closeWriteAndWait). A caller still sending
// after lingerMaxBytes is no longer read (its writes block) until the end
// of that while: closing then would reset the connection at once, perhaps
// before the caller got to the reply (a 413 to a 50 MiB upload).
func (dc *downConn) lingerClose() {
	if cw, ok := dc.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	end := time.Now().Add(lingerTimeout)
	_ = dc.nc.SetReadDeadline(end)
	for total := 0; total < lingerMaxBytes; {
		n, err := dc.nc.Read(dc.rd.buf)
		total += n
		if err != nil {
			return
		}
	}
	time.Sleep(time.Until(end))
}

// needsSlowPath: upgrades, HTTP/1.0 and targets that are not origin-form.
func needsSlowPath(h *msgHead) bool {
	return h.upgrade || !h.http11 || len(h.target) == 0 || h.target[0] != '/'
}

// handle routes one request whose head (n bytes) is buffered and forwards
// it. keep: the connection can serve another request. slow: nothing was
// done and the request belongs to the slow path.
func (dc *downConn) handle(n int) (keep, slow bool) {
	s := dc.s
	req := &dc.req
	hasBody := req.chunked || req.contentLength > 0
	cfg := s.p.cfg.Load()
	lc := cfg.listeners[s.name]
	if lc != nil && lc.kind == kindHTTP {
		lc = lc.chain(dc.state != nil) // nil: the connection's chain went away
	}
	if lc == nil || lc.kind != kindHTTP {
		return dc.localReply(n, http.StatusServiceUnavailable, reasonListenerDraining, true), false
	}
	action, ok := dc.normalizePath(lc)
	if !ok {
		lc.stats.response(http.StatusBadRequest)
		return dc.localReply(n, http.StatusBadRequest, "", true), false
	}
	path := req.path
	table := lc.inlineRoutes
	if table == nil {
		table = cfg.routes[lc.rdsName]
	}
	ra := &dc.ra
	ra.reset()
	defer ra.reset() // a later reply outside this request carries no route headers
	var rt *route
	var c *cluster
	name := ""
	if table != nil {
		if rt = dc.matchFast(lc, table, path); rt != nil && rt.forwards() {
			name, ra.wc = rt.pickCluster()
			if c = cfg.clusters[name]; c != nil && c.http2 {
				return false, true
			}
		}
	}
	lc.stats.requests.Add(1)
	if action == pathnorm.Redirect {
		lr := pathRedirect(req.target, dc.grpcRequest())
		return dc.answer(lc, n, &lr, hasBody), false
	}
	if rt == nil {
		lc.stats.response(http.StatusNotFound)
		return dc.localReply(n, http.StatusNotFound, reasonRouteNotFound, hasBody), false
	}
	if code, reason := dc.sanitizeInbound(lc); code != 0 {
		lc.stats.response(code)
		return dc.localReply(n, code, reason, hasBody), false
	}
	ra.rt = rt
	if len(lc.filters.chain) > 0 {
		if done, keep := dc.runFilters(lc, rt, name, n, hasBody); done {
			return keep, false
		}
	}
	if !rt.forwards() {
		return dc.answerRoute(lc, rt, n, hasBody), false
	}
	if c == nil {
		lc.stats.response(http.StatusServiceUnavailable)
		return dc.localReply(n, http.StatusServiceUnavailable, reasonClusterNotFound, hasBody), false
	}
	dc.rewriteRequest(rt)
	if len(rt.mirrors) > 0 {
		dc.mirror(cfg, lc, rt, n)
	}
	c.stats.requests.Add(1)
	return dc.forward(lc, c, rt, n), false
}

// normalizePath normalizes the request target with the chain's path
// options (pathnorm): from here req.target (forwarded) and req.path (routed
// and authorized) are the result. ok is false for a path refused (400).
func (dc *downConn) normalizePath(lc *listenerConfig) (pathnorm.Action, bool) {
	req := &dc.req
	out, pathLen, action, err := pathnorm.NormalizeTarget(dc.path[:0], req.target, lc.pathOpts)
	if err != nil {
		dc.s.p.log.Debug("bad request path", "listener", dc.s.name, "error", err)
		return action, false
	}
	if &out[0] != &req.target[0] {
		dc.path = out // built in the scratch, kept for the next request
	}
	req.target, req.path = out, out[:pathLen]
	return action, true
}

// sanitizeInbound applies the chain's identity header policy to a routed
// request: client-sent x-forwarded-client-cert (SANITIZE, SANITIZE_SET)
// and x-trellis-* are dropped on every chain; SANITIZE_SET on an mTLS
// connection sets XFCC from the verified peer. x-forwarded-for is the
// connection's address on a plaintext connection (the app's side, or a
// PERMISSIVE client that is not a sidecar), and what the verified peer
// sidecar sent on an mTLS one. A non-zero code is a local reply.
func (dc *downConn) sanitizeInbound(lc *listenerConfig) (int, string) {
	tlsConn := dc.state != nil
	if tlsConn {
		dc.xff = dc.xff[:0]
	}
	for i := range dc.req.fields {
		f := &dc.req.fields[i]
		switch {
		case equalFold(f.name, headerXFCC) || (len(f.name) > 10 && hasPrefixFold(f.name, "X-Trellis-")):
			f.drop = true
		case tlsConn && equalFold(f.name, headerXFF):
			dc.xff = appendXFF(dc.xff, f.value)
		}
	}
	switch {
	case !tlsConn && !dc.connXFF:
		dc.xff = append(append(append(dc.xff[:0], headerXFF+": "...), connIP(dc.nc.RemoteAddr())...), "\r\n"...)
		dc.connXFF = true
	case tlsConn && len(dc.xff) > 0:
		dc.xff = append(dc.xff, "\r\n"...)
	}
	if !lc.setXFCC || !tlsConn {
		dc.xfccOwn, dc.xfcc = "", nil
		return 0, ""
	}
	if dc.peer == "" {
		peer, err := tlsutil.PeerID(dc.state)
		if err != nil {
			return http.StatusForbidden, reasonIdentity
		}
		dc.peer = peer.String()
	}
	own, err := dc.s.p.ownID.get(dc.s.p.id)
	if err != nil {
		dc.s.p.log.Error("own identity unavailable", "error", err)
		return http.StatusServiceUnavailable, reasonIdentity
	}
	if own != dc.xfccOwn || dc.xfcc == nil {
		dc.xfccOwn = own
		dc.xfcc = []byte(headerXFCC + ": By=" + own + ";URI=" + dc.peer + "\r\n")
	}
	return 0, ""
}

// appendXFF appends one X-Forwarded-For value to the line being built in
// b ("X-Forwarded-For: a, b"), without its CRLF.
func appendXFF(b, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	if len(b) == 0 {
		b = append(b, headerXFF+": "...)
	} else {
		b = append(b, ", "...)
	}
	return append(b, v...)
}

// protocolError answers a request the parser refused, then the connection
// closes. Timeouts and closed connections get no answer.
func (dc *downConn) protocolError(err error) {
	var he *h1Error
	if !errors.As(err, &he) {
		return
	}
	dc.s.p.log.Debug("bad request", "listener", dc.s.name, "error", err)
	dc.linger = true
	dc.writeReply(he.code, "", true)
	_ = dc.bw.Flush()
}

// localReply answers a request (head of n bytes) from the proxy itself.
// close: the connection closes after it (e.g. the body was not read).
func (dc *downConn) localReply(n, code int, reason string, close bool) bool {
	dc.linger = close
	close = close || dc.req.close || dc.s.draining.Load()
	dc.rd.r += n
	dc.writeReply(code, reason, close)
	return dc.bw.Flush() == nil && !close
}

// writeReply writes a proxy error reply (the route's response headers of a
// routed request apply, routeaction_h1.go).
func (dc *downConn) writeReply(code int, reason string, close bool) {
	lr := proxyError(code, reason)
	dc.writeLocalReply(&lr, close)
}
