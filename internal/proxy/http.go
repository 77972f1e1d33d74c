package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"

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
)

// errRouteTimeout is the cancellation cause of a request whose route timeout
// expired.
var errRouteTimeout = errors.New("route timeout")

// httpHandler routes the requests of one HTTP listener with the config
// current when each request arrives.
type httpHandler struct {
	p        *Proxy
	listener string
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := h.p.cfg.Load()
	lc := cfg.listeners[h.listener] // cfg is never nil once a listener serves
	if lc == nil || lc.kind != kindHTTP {
		// The listener was removed (or replaced by a TCP one) and is draining.
		w.Header().Set("Connection", "close")
		localReply(w, r, http.StatusServiceUnavailable, reasonListenerDraining)
		return
	}
	lc.stats.requests.Add(1)
	if lc.tls != nil {
		if !h.sanitizeInbound(w, r, lc) {
			return
		}
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
	w, r, ok := h.serveRoute(w, r, cfg, lc, rt, &view, name, wc)
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
	t := &forwardTarget{cluster: c, listenerStats: lc.stats}
	t.key, t.setCookie = stdHashKey(rt, c, r)
	ep, ok := st.pick(t.key, nil, nil)
	if !ok {
		lc.stats.response(http.StatusServiceUnavailable)
		c.stats.response(http.StatusServiceUnavailable)
		localReply(w, r, http.StatusServiceUnavailable, reasonNoHealthy)
		return
	}
	t.ep, t.endpoint = ep, ep.addr
	t.prepareRetry(rt, r)
	if rt.timeout > 0 {
		ctx, cancel := context.WithTimeoutCause(r.Context(), rt.timeout, errRouteTimeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	h.p.fwd.forward(w, r, t)
}

// sanitizeInbound removes client-supplied identity headers from a request
// that arrived over mTLS and sets x-forwarded-client-cert when configured.
func (h *httpHandler) sanitizeInbound(w http.ResponseWriter, r *http.Request, lc *listenerConfig) bool {
	for k := range r.Header {
		if len(k) > 10 && strings.EqualFold(k[:10], "X-Trellis-") {
			delete(r.Header, k)
		}
	}
	r.Header.Del(headerXFCC)
	if !lc.setXFCC {
		return true
	}
	peer, err := tlsutil.PeerID(requestTLS(r))
	if err != nil {
		// The TLS layer verified an SVID, so this does not happen.
		lc.stats.response(http.StatusForbidden)
		localReply(w, r, http.StatusForbidden, reasonIdentity)
		return false
	}
	own, err := h.p.ownID.get(h.p.id)
	if err != nil {
		h.p.log.Error("own identity unavailable", "error", err)
		lc.stats.response(http.StatusServiceUnavailable)
		localReply(w, r, http.StatusServiceUnavailable, reasonIdentity)
		return false
	}
	r.Header.Set(headerXFCC, "By="+own+";URI="+peer.String())
	return true
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
