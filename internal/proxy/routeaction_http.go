package proxy

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// serveRoute runs the route features of the net/http path for a request
// matched to rt, before the cluster is used: the HCM's filters (jwt_authn,
// rbac, fault, local rate limit, buffer), a local route's answer, request
// rewriting and mirrors. It returns the writer and request to forward with,
// or ok=false when it answered (or the caller left). The writer applies
// the route's response headers and x-ratelimit-* to whatever response
// follows, as on the fast path. body is what the buffer filter read (nil:
// nothing), which the caller releases when the request is done, answered
// or not.
func (h *httpHandler) serveRoute(w http.ResponseWriter, r *http.Request, cfg *runtimeConfig, lc *listenerConfig,
	rt *route, view *request[string], cluster string, wc int) (_ http.ResponseWriter, _ *http.Request, body *bufferedBody, ok bool) {
	var rl rlHeaders
	mut := rt.responseMutation(wc)
	isHead := r.Method == http.MethodHead
	var az *httpAuthz // the authz filters' view, made when the first one runs
	for i := range lc.filters.chain {
		if f := &lc.filters.chain[i]; f.kind == filterJWT || f.kind == filterRBAC {
			if f.disabledOn(rt) {
				continue
			}
			if az == nil {
				az = newHTTPAuthz(r, view, lc)
			}
			if !h.runAuthz(w, az, f, mut, &rl) {
				return nil, nil, body, false
			}
			continue
		} else if f.kind == filterBuffer {
			if bp := f.resolveBuffer(rt); bp != nil && body == nil {
				if body, ok = h.bufferHTTP(w, r, lc, bp, mut, &rl); !ok {
					return nil, nil, body, false
				}
			}
			continue
		}
		fp, lp := lc.filters.chain[i].resolve(rt)
		switch {
		case fp != nil:
			if !faultApplies(fp, view, cluster) {
				continue
			}
			if d := fp.sampleDelay(); d > 0 && fp.acquire() {
				lc.stats.faultDelays.Add(1)
				stayed := waitDelay(r.Context(), d)
				fp.release()
				if !stayed {
					lc.stats.downstreamGone.Add(1)
					return nil, nil, body, false
				}
			}
			if fp.sampleAbort() && fp.acquire() {
				lc.stats.faultAborts.Add(1)
				lr := fp.abortReply(isGRPC(r.Header.Get("Content-Type")))
				lc.stats.response(lr.status())
				writeLocalHTTP(w, &lr, isHead, mut, &rl)
				fp.release()
				return nil, nil, body, false
			}
		case lp != nil && lp.enabled:
			d, refuse := lp.take(time.Now())
			rl = d
			if d.d.Allowed {
				continue
			}
			lc.stats.rateLimited.Add(1)
			if refuse {
				lr := lp.limitedReply(isGRPC(r.Header.Get("Content-Type")))
				lc.stats.response(lr.status())
				writeLocalHTTP(w, &lr, isHead, mut, &rl)
				return nil, nil, body, false
			}
			lp.reqHeaders.applyHTTP(r.Header)
		}
	}
	if l := rt.local; l != nil {
		lr := proxyReply{code: l.code, body: l.body, grpc: isGRPC(r.Header.Get("Content-Type")), grpcStatus: -1}
		if l.body != "" {
			lr.contentType = "text/plain"
		}
		if l.addsLocation() {
			lr.location = location(l, &rt.match, view, nil)
		}
		lc.stats.response(lr.status())
		writeLocalHTTP(w, &lr, isHead, mut, &rl)
		return nil, nil, body, false
	}
	rt.requestMutation(wc).applyHTTP(r.Header)
	if hl := rt.requestHost(wc); hl != nil {
		r.Host = hl.value
	}
	if rt.rewrite != nil {
		if t, ok := rewriteTarget(rt.rewrite, &rt.match, view.target, nil); ok {
			setTarget(r, string(t))
		}
	}
	if len(rt.mirrors) > 0 {
		h.mirror(cfg, lc, rt, r)
	}
	if !mut.empty() || rl.set {
		w = &routeWriter{ResponseWriter: w, mut: mut, rl: rl}
	}
	return w, r, body, true
}

// setTarget sets the request target the upstream gets (path, its raw
// encoding, and query).
func setTarget(r *http.Request, target string) {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return // rewritten to something unparseable: forward unchanged
	}
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
}

// mirror sends the copies the route's mirror policies sample: the request
// as forwarded. A body is copied as the upstream reads it, and the copies
// leave once it ended within maxMirrorBody bytes (else they are dropped).
func (h *httpHandler) mirror(cfg *runtimeConfig, lc *listenerConfig, rt *route, r *http.Request) {
	bits := sampleMirrors(rt.mirrors)
	if bits == 0 {
		return
	}
	hdr := mirrorHeaderHTTP(r.Header)
	method, target, host, timeout := r.Method, r.URL.RequestURI(), r.Host, rt.timeout
	send := func(body []byte, ok bool) {
		for i, mp := range rt.mirrors {
			if bits&(1<<i) == 0 {
				continue
			}
			if !ok {
				lc.stats.mirrorsDropped.Add(1)
				continue
			}
			req, valid := newMirrorRequest(method, target, host, hdr.Clone(), body)
			if !valid {
				lc.stats.mirrorsDropped.Add(1)
				continue
			}
			h.p.sendMirror(cfg, lc, mp, req, timeout)
		}
	}
	switch {
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		send(nil, true)
	case r.ContentLength > maxMirrorBody:
		send(nil, false)
	default:
		r.Body = &mirrorTee{ReadCloser: r.Body, send: send}
	}
}

// mirrorTee copies a request body as it is read and sends the mirror
// copies when it ends: with the body when it fit maxMirrorBody, else
// dropped; dropped too if the body is closed before its end.
type mirrorTee struct {
	io.ReadCloser
	buf  []byte
	over bool
	done bool
	send func(body []byte, ok bool)
}

func (t *mirrorTee) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if !t.over {
		if len(t.buf)+n > maxMirrorBody {
			t.over, t.buf = true, nil
		} else {
			t.buf = append(t.buf, p[:n]...)
		}
	}
	if err == io.EOF && !t.done {
		t.done = true
		t.send(t.buf, !t.over)
	}
	return n, err
}

func (t *mirrorTee) Close() error {
	if !t.done {
		t.done = true
		t.send(nil, false)
	}
	return t.ReadCloser.Close()
}

// mirrorHeaderHTTP clones a request header without hop-by-hop fields (as
// ReverseProxy strips them) and X-Forwarded-*/Forwarded (as the fast path).
func mirrorHeaderHTTP(h http.Header) http.Header {
	out := h.Clone()
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				delete(out, http.CanonicalHeaderKey(tok))
			}
		}
	}
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
		"Proxy-Authorization", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		delete(out, k)
	}
	if te := out["Te"]; len(te) > 0 && !(len(te) == 1 && strings.EqualFold(te[0], "trailers")) {
		delete(out, "Te") // only "trailers" (gRPC) is passed on
	}
	return out
}
