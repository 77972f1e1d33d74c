package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/trellis-mesh/trellis/internal/proxy/pathnorm"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

// Values of the x-trellis-reason header on local replies.
const (
	headerReason           = "X-Trellis-Reason"
	reasonClusterNotFound  = "cluster_not_found"
	reasonNoHealthy        = "no_healthy_upstream"
	reasonConnectFailure   = "upstream_connect_failure"
	reasonReset            = "upstream_reset"
	reasonTimeout          = "upstream_timeout"
	reasonRouteNotFound    = "route_not_found"
	reasonListenerDraining = "listener_draining"
	reasonIdentity         = "identity_unavailable"
	headerXFCC             = "X-Forwarded-Client-Cert"
	headerXFF              = "X-Forwarded-For"
)

// errRouteTimeout is the cancellation cause of a request whose route timeout
// expired.
var errRouteTimeout = errors.New("route timeout")

// httpHandler routes the requests of one HTTP listener with the config
// current when each request arrives.
type httpHandler struct {
	p        *Proxy
	listener string
	watches  sync.Pool // *streamWatch (streamidle.go)
	// connXFF is the X-Forwarded-For of the last plaintext caller, kept
	// for the next request from the same address (an h2srv connection
	// has a handler of its own: every stream but the first finds it).
	connXFF atomic.Pointer[connXFF]
}

// connXFF is a caller's address and the X-Forwarded-For value made of it,
// shared by its requests' headers: never written after it is made (the
// slice is full, so appending copies it).
type connXFF struct {
	remote string
	xff    []string
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// HTTP/2 rapid reset: a stream reset before its handler ran is not
	// forwarded; resets are counted and an abusive connection closed.
	h2s, serve := startH2Stream(r) // h2abuse.go
	if !serve {
		return
	}
	defer h2s.end()
	cfg := h.p.cfg.Load()
	lc := cfg.listeners[h.listener] // cfg is never nil once a listener serves
	if lc == nil || lc.kind != kindHTTP {
		// The listener was removed (or replaced by a TCP one) and is draining.
		w.Header().Set("Connection", "close")
		localReply(w, r, http.StatusServiceUnavailable, reasonListenerDraining)
		return
	}
	if lc = lc.chain(requestTLS(r) != nil); lc == nil {
		// The connection's filter chain went away (e.g. PERMISSIVE to STRICT).
		w.Header().Set("Connection", "close")
		localReply(w, r, http.StatusServiceUnavailable, reasonListenerDraining)
		return
	}
	lc.stats.requests.Add(1)
	redirect, ok := normalizeRequest(r, lc.pathOpts)
	if !ok {
		lc.stats.response(http.StatusBadRequest)
		localReply(w, r, http.StatusBadRequest, "")
		return
	}
	if redirect {
		lr := pathRedirect([]byte(r.RequestURI), isGRPC(r.Header.Get("Content-Type")))
		lc.stats.response(lr.status())
		writeLocalHTTP(w, &lr, r.Method == http.MethodHead, nil, &rlHeaders{})
		return
	}
	xff, ok := h.sanitizeInbound(w, r, lc)
	if !ok {
		return
	}
	table := lc.inlineRoutes
	if table == nil {
		table = cfg.routes[lc.rdsName]
	}
	var rt *route
	var view request[string]
	if table != nil {
		view = stdRequest(r)
		rt = matchRoute(table, &view)
	}
	if rt == nil {
		lc.stats.response(http.StatusNotFound)
		localReply(w, r, http.StatusNotFound, reasonRouteNotFound)
		return
	}
	name, wc := "", -1
	if rt.forwards() {
		name, wc = rt.pickCluster()
	}
	var body *bufferedBody // read whole by the buffer filter (buffer_filter.go)
	w, r, body, ok = h.serveRoute(w, r, cfg, lc, rt, &view, name, wc)
	defer body.release()
	if !ok {
		return
	}
	c := cfg.clusters[name]
	if c == nil {
		lc.stats.response(http.StatusServiceUnavailable)
		localReply(w, r, http.StatusServiceUnavailable, reasonClusterNotFound)
		return
	}
	c.stats.requests.Add(1)
	st := c.state
	if !st.br.Requests.TryAcquire() {
		c.stats.upstreamOverflow.Add(1)
		lc.stats.response(http.StatusServiceUnavailable)
		c.stats.response(http.StatusServiceUnavailable)
		localReply(w, r, http.StatusServiceUnavailable, reasonOverflow)
		return
	}
	defer st.br.Requests.Release()
	st.budget.Request()
	t := &forwardTarget{cluster: c, listenerStats: lc.stats, xff: xff}
	if body != nil {
		t.body = body // whole: replayed by retries whatever its size
	}
	t.key, t.setCookie = stdHashKey(rt, c, r)
	ep, ok := st.pick(t.key, nil, nil)
	if !ok {
		lc.stats.response(http.StatusServiceUnavailable)
		c.stats.response(http.StatusServiceUnavailable)
		localReply(w, r, http.StatusServiceUnavailable, reasonNoHealthy)
		return
	}
	t.ep, t.endpoint = ep, ep.addr
	w, r, sw := h.watchStreamIdle(w, r, lc) // stream idle timeout (streamidle.go)
	defer h.endStreamIdle(sw)
	t.prepareRetry(rt, r)
	if rt.timeout > 0 {
		ctx, cancel := context.WithTimeoutCause(r.Context(), rt.timeout, errRouteTimeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	h.p.fwd.forward(w, r, t)
}

// sanitizeInbound applies the chain's identity header policy (as the fast
// path's sanitizeInbound): client-sent x-trellis-* and XFCC dropped on
// every chain, XFCC set from the verified peer with SANITIZE_SET on mTLS.
// xff is the X-Forwarded-For to forward: the peer sidecar's on mTLS, else
// the connection's address. ok is false when it answered.
func (h *httpHandler) sanitizeInbound(w http.ResponseWriter, r *http.Request, lc *listenerConfig) (xff []string, ok bool) {
	for k := range r.Header {
		if len(k) > 10 && strings.EqualFold(k[:10], "X-Trellis-") {
			delete(r.Header, k)
		}
	}
	r.Header.Del(headerXFCC)
	cs := requestTLS(r)
	if cs == nil {
		if c := h.connXFF.Load(); c != nil && c.remote == r.RemoteAddr {
			return c.xff, true
		}
		c := &connXFF{remote: r.RemoteAddr, xff: []string{connIP(remoteAddr(r.RemoteAddr))}}
		h.connXFF.Store(c)
		return c.xff, true
	}
	xff = r.Header.Values(headerXFF)
	if !lc.setXFCC {
		return xff, true
	}
	peer, err := tlsutil.PeerID(cs)
	if err != nil {
		// The TLS layer verified an SVID, so this does not happen.
		lc.stats.response(http.StatusForbidden)
		localReply(w, r, http.StatusForbidden, reasonIdentity)
		return nil, false
	}
	own, err := h.p.ownID.get(h.p.id)
	if err != nil {
		h.p.log.Error("own identity unavailable", "error", err)
		lc.stats.response(http.StatusServiceUnavailable)
		localReply(w, r, http.StatusServiceUnavailable, reasonIdentity)
		return nil, false
	}
	r.Header.Set(headerXFCC, "By="+own+";URI="+peer.String())
	return xff, true
}

// remoteAddr is net/http's RemoteAddr string as a net.Addr.
type remoteAddr string

func (a remoteAddr) Network() string { return "tcp" }
func (a remoteAddr) String() string  { return string(a) }

// normalizeRequest normalizes the request's path with the chain's options
// (pathnorm): r.RequestURI (what header matchers see as :path), r.URL.RawPath
// (routed and authorized, requestPath) and r.URL.Path/RawQuery (what is
// forwarded) become the result. Targets that are not a path ("*",
// CONNECT's authority) are left alone. ok is false for a path refused.
func normalizeRequest(r *http.Request, opts pathnorm.Options) (redirect, ok bool) {
	target := r.RequestURI
	if target == "" || target[0] != '/' {
		if r.URL.Path == "" || r.URL.Path[0] != '/' {
			return false, true
		}
		target = r.URL.RequestURI() // absolute-form
	}
	var buf [256]byte // the target's bytes, on the stack when it fits
	out, pathLen, action, err := pathnorm.NormalizeTarget(nil, append(buf[:0], target...), opts)
	if err != nil {
		return false, false
	}
	norm := target[:min(len(out), len(target))] // unchanged (or a fragment dropped): no copy
	if string(out) != norm {
		norm = string(out)
	}
	path, query := norm[:pathLen], norm[pathLen:]
	decoded, err := url.PathUnescape(path)
	if err != nil {
		return false, false // validated by pathnorm: does not happen
	}
	r.RequestURI = norm
	r.URL.Path, r.URL.RawPath = decoded, path
	r.URL.RawQuery, r.URL.ForceQuery = strings.TrimPrefix(query, "?"), query == "?"
	r.URL.Fragment, r.URL.RawFragment = "", ""
	return action == pathnorm.Redirect, true
}

// grpcInternal is gRPC's status code INTERNAL.
const grpcInternal = 13

// pathRedirect answers a request whose path UNESCAPE_AND_REDIRECT rewrote:
// 307 to the normalized target; a gRPC request, which cannot follow it,
// gets INTERNAL, as from Envoy.
func pathRedirect(location []byte, grpc bool) proxyReply {
	if grpc {
		return proxyReply{code: http.StatusBadRequest, grpc: true, grpcStatus: grpcInternal}
	}
	return proxyReply{code: http.StatusTemporaryRedirect, location: location, grpcStatus: -1}
}

// requestPath is the path a net/http request is routed and authorized on:
// after normalizeRequest, the normalized path (escapes as normalized, not
// decoded), as the fast path matches it.
func requestPath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	return r.URL.Path
}

// localReply answers an error the proxy itself found. A gRPC request gets
// it as gRPC does: trailers-only, with the grpc-status of the HTTP code
// (UNAVAILABLE for a 503), and DEADLINE_EXCEEDED for a timeout.
func localReply(w http.ResponseWriter, r *http.Request, code int, reason string) {
	lr := proxyError(code, reason)
	if isGRPC(r.Header.Get("Content-Type")) {
		lr.grpc = true
		if reason == reasonTimeout {
			lr.grpcStatus = grpcDeadlineExceeded
		}
	}
	writeLocalHTTP(w, &lr, r.Method == http.MethodHead, nil, &rlHeaders{})
}

// grpcDeadlineExceeded is gRPC's status code DEADLINE_EXCEEDED.
const grpcDeadlineExceeded = 4
