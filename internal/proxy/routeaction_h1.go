package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"time"
)

// routeState is the fast path's per-request state of the route features.
// It lives in the connection and its buffers are reused, so a request on a
// plain route allocates nothing, and one using the features allocates only
// what they need (mirrors, regex rewrites).
type routeState struct {
	rt     *route // the matched route, nil outside a routed request
	wc     int    // the weighted cluster entry chosen, -1: none
	view   request[[]byte]
	target []byte       // the rewritten request target
	reqAdd []*headerAdd // request lines added by header mutation
	resAdd []*headerAdd // response lines added
	rl     rlHeaders
	loc    []byte
	reply  []byte // a local reply's head lines
	spans  []lineSpan
	fields []hdrField
	authz  h1Authz         // the jwt_authn and rbac filters' view (authz_h1.go)
	buf    bufferedRequest // the body the buffer filter read (buffer_filter_h1.go)
}

type lineSpan struct{ start, colon, end int }

func (rs *routeState) reset() {
	rs.rt, rs.wc, rs.rl = nil, -1, rlHeaders{}
	rs.reqAdd, rs.resAdd = rs.reqAdd[:0], rs.resAdd[:0]
	rs.authz.resetRequest()
	rs.buf.release()
}

// scheme is the :scheme of the listener's requests.
func (lc *listenerConfig) scheme() string {
	if lc.tls != nil {
		return "https"
	}
	return "http"
}

// matchFast builds the request view of the current request and matches it.
func (dc *downConn) matchFast(lc *listenerConfig, table *routeTable, path []byte) *route {
	req := &dc.req
	dc.ra.view = request[[]byte]{path: path, target: req.target, query: splitQuery(req.target), method: req.method,
		authority: req.host, scheme: lc.scheme(), hdr: req}
	return table.matchView(&dc.ra.view)
}

func (dc *downConn) grpcRequest() bool {
	v, ok := dc.req.headerValue("Content-Type")
	return ok && isGRPC(v)
}

// runFilters runs the HCM's jwt_authn, rbac, fault and local rate limit
// filters, in order, for the current request (head of n bytes). done: a
// filter answered (or the caller left); keep is then the connection's fate.
func (dc *downConn) runFilters(lc *listenerConfig, rt *route, cluster string, n int, hasBody bool) (done, keep bool) {
	rs := &dc.ra
	for i := range lc.filters.chain {
		if f := &lc.filters.chain[i]; f.kind == filterJWT || f.kind == filterRBAC {
			if f.disabledOn(rt) {
				continue
			}
			if done, keep := dc.runAuthz(lc, f, n, hasBody); done {
				return true, keep
			}
			continue
		} else if f.kind == filterBuffer {
			if done, keep := dc.runBuffer(lc, f, rt, n); done {
				return true, keep
			}
			hasBody = hasBody && !rs.buf.active // read: a later reply keeps the connection
			continue
		}
		fp, lp := lc.filters.chain[i].resolve(rt)
		switch {
		case fp != nil:
			if !faultApplies(fp, &rs.view, cluster) {
				continue
			}
			if d := fp.sampleDelay(); d > 0 && fp.acquire() {
				lc.stats.faultDelays.Add(1)
				stayed := dc.faultDelay(d)
				fp.release()
				if !stayed {
					lc.stats.downstreamGone.Add(1)
					return true, false
				}
			}
			if fp.sampleAbort() && fp.acquire() {
				lc.stats.faultAborts.Add(1)
				lr := fp.abortReply(dc.grpcRequest())
				keep := dc.answer(lc, n, &lr, hasBody)
				fp.release()
				return true, keep
			}
		case lp != nil && lp.enabled:
			h, refuse := lp.take(time.Now())
			rs.rl = h
			if h.d.Allowed {
				continue
			}
			lc.stats.rateLimited.Add(1)
			if refuse {
				lr := lp.limitedReply(dc.grpcRequest())
				return true, dc.answer(lc, n, &lr, hasBody)
			}
			lp.reqHeaders.applyRaw(dc.req.fields, &rs.reqAdd)
		}
	}
	return false, false
}

// answerRoute answers a direct_response or redirect route.
func (dc *downConn) answerRoute(lc *listenerConfig, rt *route, n int, hasBody bool) bool {
	l := rt.local
	lr := proxyReply{code: l.code, body: l.body, grpc: dc.grpcRequest(), grpcStatus: -1}
	if l.body != "" {
		lr.contentType = "text/plain"
	}
	if l.addsLocation() {
		dc.ra.loc = location(l, &rt.match, &dc.ra.view, dc.ra.loc[:0])
		lr.location = dc.ra.loc
	}
	return dc.answer(lc, n, &lr, hasBody)
}

// answer writes a local reply to the request (head of n bytes). With a
// request body not read, the connection closes after it.
func (dc *downConn) answer(lc *listenerConfig, n int, lr *proxyReply, hasBody bool) bool {
	hasBody = hasBody && !dc.ra.buf.active // the buffer filter read it
	lc.stats.response(lr.status())
	dc.linger = hasBody
	close := hasBody || dc.req.close || dc.s.draining.Load()
	dc.rd.r += n
	dc.writeLocalReply(lr, close)
	return dc.bw.Flush() == nil && !close
}

// writeLocalReply writes a local reply head and body to the caller. The
// route's response headers and x-ratelimit-* of the current request apply
// to it as to a forwarded response.
func (dc *downConn) writeLocalReply(lr *proxyReply, close bool) {
	rs := &dc.ra
	buf, spans := rs.reply[:0], rs.spans[:0]
	if lr.grpc {
		buf, spans = appendField(buf, spans, "Content-Type", "application/grpc")
		var num [20]byte
		buf, spans = appendField(buf, spans, "Grpc-Status", strconv.AppendInt(num[:0], int64(lr.grpcCode()), 10))
		if lr.body != "" {
			start := len(buf)
			buf = append(buf, "Grpc-Message: "...)
			buf = lr.grpcMessage(buf)
			buf = append(buf, "\r\n"...)
			spans = append(spans, lineSpan{start: start, colon: start + len("Grpc-Message"), end: len(buf)})
		}
	} else if lr.body != "" {
		buf, spans = appendField(buf, spans, "Content-Type", lr.contentType)
	}
	if lr.nosniff {
		buf, spans = appendField(buf, spans, "X-Content-Type-Options", "nosniff")
	}
	if lr.reason != "" {
		buf, spans = appendField(buf, spans, headerReason, lr.reason)
	}
	if lr.location != nil {
		buf, spans = appendField(buf, spans, "Location", lr.location)
	}
	if lr.authenticate != nil {
		buf, spans = appendField(buf, spans, "Www-Authenticate", lr.authenticate)
	}
	fields := rs.fields[:0]
	for _, sp := range spans {
		fields = append(fields, hdrField{name: buf[sp.start:sp.colon], value: buf[sp.colon+2 : sp.end-2], line: buf[sp.start:sp.end]})
	}
	rs.reply, rs.spans, rs.fields = buf, spans, fields
	rs.resAdd = rs.resAdd[:0]
	if rs.rt != nil {
		rs.rt.responseMutation(rs.wc).applyRaw(fields, &rs.resAdd)
	}
	lr.extra.applyRaw(fields, &rs.resAdd)

	bw := dc.bw
	code := lr.status()
	b := append(bw.AvailableBuffer(), "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\n"...)
	_, _ = bw.Write(b)
	for i := range fields {
		if !fields[i].drop {
			_, _ = bw.Write(fields[i].line)
		}
	}
	dc.writeResponseExtras(bw)
	bodyLen := len(lr.body)
	if lr.grpc {
		bodyLen = 0
	}
	b = bw.AvailableBuffer()
	if close {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(bodyLen), 10)
	b = append(b, "\r\n\r\n"...)
	_, _ = bw.Write(b)
	if bodyLen > 0 && string(dc.req.method) != http.MethodHead {
		_, _ = bw.WriteString(lr.body)
	}
}

func appendField[T text](buf []byte, spans []lineSpan, name string, value T) ([]byte, []lineSpan) {
	start := len(buf)
	buf = append(buf, name...)
	colon := len(buf)
	buf = append(buf, ": "...)
	buf = append(buf, value...)
	buf = append(buf, "\r\n"...)
	return buf, append(spans, lineSpan{start: start, colon: colon, end: len(buf)})
}

// rewriteRequest applies the route's request headers, host rewrite and
// path rewrite to the request head, in Envoy's order. sendRequest writes
// the fields left and the added lines.
func (dc *downConn) rewriteRequest(rt *route) {
	rs, req := &dc.ra, &dc.req
	rt.requestMutation(rs.wc).applyRaw(req.fields, &rs.reqAdd)
	if h := rt.requestHost(rs.wc); h != nil {
		rawHeaders{fields: req.fields, added: &rs.reqAdd}.remove("Host")
		rs.reqAdd = append(rs.reqAdd, h)
	}
	if rt.rewrite != nil {
		if t, ok := rewriteTarget(rt.rewrite, &rt.match, req.target, rs.target[:0]); ok {
			rs.target, req.target = t, t
		}
	}
}

// mutateResponse applies the route's response headers to the upstream's
// response head before copyResponse writes it.
func (dc *downConn) mutateResponse() {
	rs := &dc.ra
	rs.resAdd = rs.resAdd[:0]
	if rs.rt != nil {
		rs.rt.responseMutation(rs.wc).applyRaw(dc.res.fields, &rs.resAdd)
	}
}

// writeResponseExtras writes the response lines the route added and the
// x-ratelimit-* headers.
func (dc *downConn) writeResponseExtras(bw *bufio.Writer) {
	writeAdded(bw, dc.ra.resAdd)
	if dc.ra.rl.set {
		_, _ = bw.Write(dc.ra.rl.appendRaw(bw.AvailableBuffer()))
	}
}

// mirror sends the copies the route's mirror policies sample. The copy is
// the request as forwarded (after rewrites). A body is mirrored when it
// has a Content-Length of at most maxMirrorBody, read here before
// forwarding; otherwise the copy is dropped and counted.
func (dc *downConn) mirror(cfg *runtimeConfig, lc *listenerConfig, rt *route, n int) {
	bits := sampleMirrors(rt.mirrors)
	if bits == 0 {
		return
	}
	body, ok := dc.mirrorBody(n)
	var h http.Header
	var host string
	if ok {
		h, host = dc.mirrorHeaders()
	}
	for i, mp := range rt.mirrors {
		if bits&(1<<i) == 0 {
			continue
		}
		if !ok {
			lc.stats.mirrorsDropped.Add(1)
			continue
		}
		req, valid := newMirrorRequest(string(dc.req.method), string(dc.req.target), host, h.Clone(), body)
		if !valid {
			lc.stats.mirrorsDropped.Add(1)
			continue
		}
		dc.s.p.sendMirror(cfg, lc, mp, req, rt.timeout)
	}
}

// mirrorHeaders returns the header map and authority of a copy.
func (dc *downConn) mirrorHeaders() (http.Header, string) {
	req := &dc.req
	h := make(http.Header, len(req.fields)+len(dc.ra.reqAdd))
	host := string(req.host)
	for i := range req.fields {
		f := &req.fields[i]
		if f.drop || isForwardedHeader(f.name) || equalFold(f.name, "Host") || equalFold(f.name, "Content-Length") {
			continue
		}
		k := http.CanonicalHeaderKey(string(f.name))
		h[k] = append(h[k], string(f.value))
	}
	for _, a := range dc.ra.reqAdd {
		if a.name == "Host" {
			host = a.value
			continue
		}
		if a.name == "Content-Length" { // the buffer filter's, for a chunked body
			continue
		}
		h[a.name] = append(h[a.name], a.value)
	}
	if dc.xfcc != nil && dc.state != nil {
		v := bytes.TrimSuffix(dc.xfcc[len(headerXFCC)+2:], []byte("\r\n"))
		h[headerXFCC] = []string{string(v)}
	}
	return h, host
}

// mirrorBody returns a copy of the request body (head of n bytes), reading
// it into the connection's buffer first (the forwarded request then sends
// it from there): nil for no body, false when the body is not mirrored
// (chunked, larger than maxMirrorBody, or the caller failed to send it).
func (dc *downConn) mirrorBody(n int) ([]byte, bool) {
	req := &dc.req
	if b := &dc.ra.buf; b.active { // read whole by the buffer filter
		return bytes.Clone(b.body), len(b.body) <= maxMirrorBody
	}
	switch {
	case req.chunked || req.contentLength > maxMirrorBody:
		return nil, false
	case req.contentLength <= 0:
		return nil, true
	}
	need, start := int(req.contentLength), dc.rd.r+n
	if req.expect100 {
		// The caller waits for this before sending the body.
		_, _ = dc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if dc.bw.Flush() != nil {
			return nil, false
		}
		req.expect100 = false
	}
	rd := &dc.rd
	for rd.w-start < need {
		if rd.w == len(rd.buf) {
			// Offsets are kept: the head's slices stay valid in the old array.
			grown := make([]byte, max(2*len(rd.buf), start+need))
			copy(grown, rd.buf[:rd.w])
			rd.buf = grown
		}
		m, err := rd.rd.Read(rd.buf[rd.w:])
		rd.w += m
		if err != nil && m == 0 {
			return nil, false
		}
	}
	return bytes.Clone(rd.buf[start : start+need]), true
}
