package proxy

import (
	"net/http"
	"regexp"
	"strconv"
)

// routeFeatures are what a route does besides choosing a cluster. Each is
// nil or empty when the route does not use it, so a plain route costs
// nothing on the request path.
//
//	match ─► filters (fault, local rate limit; HCM order, per-route config)
//	      ─► local (direct_response / redirect) ─► or: request headers,
//	         host rewrite, path rewrite ─► mirrors ─► forward ─► response headers
type routeFeatures struct {
	name  string      // Route.name
	local *localRoute // direct_response or redirect: answered by the proxy
	// Request rewriting, in Envoy's order: headers, then host, then path.
	reqHeaders  *headerMutation // route, virtual host, route configuration levels
	respHeaders *headerMutation
	wcHeaders   []wcMutation // per weighted cluster, index-aligned, with the levels above
	hostRewrite *headerAdd   // host_rewrite_literal, as a Host line
	rewrite     *pathRewrite // prefix_rewrite or regex_rewrite
	filters     []filterConfig
	mirrors     []*mirrorPolicy
}

// wcMutation is the header mutation and host rewrite of one weighted
// cluster entry (the route's host rewrite, applied after it, wins).
type wcMutation struct {
	req, resp *headerMutation
	host      *headerAdd
}

// forwards reports whether the route forwards to a cluster (else the
// proxy answers: direct_response or redirect).
func (rt *route) forwards() bool { return rt.local == nil }

// requestMutation returns the request header mutation for the weighted
// cluster entry wc (-1: none).
func (rt *route) requestMutation(wc int) *headerMutation {
	if wc >= 0 && wc < len(rt.wcHeaders) {
		return rt.wcHeaders[wc].req
	}
	return rt.reqHeaders
}

// requestHost returns the Host line that replaces the request's, or nil.
func (rt *route) requestHost(wc int) *headerAdd {
	if rt.hostRewrite == nil && wc >= 0 && wc < len(rt.wcHeaders) {
		return rt.wcHeaders[wc].host
	}
	return rt.hostRewrite
}

func (rt *route) responseMutation(wc int) *headerMutation {
	if wc >= 0 && wc < len(rt.wcHeaders) {
		return rt.wcHeaders[wc].resp
	}
	return rt.respHeaders
}

// pathRewrite is prefix_rewrite or regex_rewrite. Both act on the path as
// received (not percent-decoded) and keep the query.
type pathRewrite struct {
	prefix   string         // prefix_rewrite
	regex    *regexp.Regexp // regex_rewrite.pattern (matches anywhere, all matches replaced)
	template string         // regex_rewrite.substitution in Go's Expand syntax
}

// rewriteTarget appends to dst the request target after the rewrite of a
// request matched by m. Envoy's rules: a prefix match replaces the matched
// prefix; an exact path or regex match replaces the whole path. A regex
// rewrite applies to the whole path. ok is false when nothing changes (a
// regex rewrite producing an empty path is ignored, as in Envoy).
func rewriteTarget[T text](rw *pathRewrite, m *routeMatch, target T, dst []byte) ([]byte, bool) {
	path, query := target, target[:0]
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			path, query = target[:i], target[i:]
			break
		}
	}
	if rw.regex != nil {
		var out []byte
		switch p := any(path).(type) {
		case string:
			out = []byte(rw.regex.ReplaceAllString(p, rw.template))
		case []byte:
			out = rw.regex.ReplaceAll(p, []byte(rw.template))
		}
		if len(out) == 0 {
			return dst, false
		}
		return append(append(dst, out...), query...), true
	}
	cut := len(path)
	if m.kind == pathPrefix {
		cut = rawPrefixLen(path, len(m.value))
	}
	dst = append(dst, rw.prefix...)
	dst = append(dst, path[cut:]...)
	return append(dst, query...), true
}

// rawPrefixLen returns how many bytes of the raw path decode to its first
// n bytes (the route matched the percent-decoded path).
func rawPrefixLen[T text](raw T, n int) int {
	i := 0
	for decoded := 0; decoded < n && i < len(raw); decoded++ {
		if raw[i] == '%' && i+2 < len(raw) && isHex(raw[i+1]) && isHex(raw[i+2]) {
			i += 3
		} else {
			i++
		}
	}
	return i
}

// localRoute is a route the proxy answers itself: direct_response, or
// redirect (then redirect is set).
type localRoute struct {
	code     int
	body     string
	redirect *redirectConfig
}

// redirectConfig is Envoy's RedirectAction.
type redirectConfig struct {
	scheme       string // scheme_redirect, or "https" for https_redirect; "" keeps the request's
	host         string // host_redirect
	port         string // ":" + port_redirect, or ""
	path         string // path_redirect
	pathHasQuery bool   // path_redirect carries a query: it replaces the request's and is kept
	rewrite      *pathRewrite
	stripQuery   bool
}

// addsLocation: Envoy sets Location on 201 and 3xx direct responses
// (RFC 9110 10.2.2), and on redirects.
func (l *localRoute) addsLocation() bool {
	return l.code == http.StatusCreated || (l.code >= 300 && l.code < 400)
}

// location appends the Location of a local route's response to dst, as
// Envoy's Http::Utility::newUri builds it: scheme://host[:port]/path.
func location[T text](l *localRoute, m *routeMatch, r *request[T], dst []byte) []byte {
	rc := l.redirect
	if rc == nil {
		rc = &redirectConfig{}
	}
	scheme := r.scheme
	if rc.scheme != "" {
		scheme = rc.scheme
	}
	dst = append(dst, scheme...)
	dst = append(dst, "://"...)
	if rc.host != "" {
		dst = append(dst, rc.host...)
	} else {
		dst = append(dst, redirectHost(r.authority, r.scheme, scheme, rc.port)...)
	}
	dst = append(dst, rc.port...)
	start := len(dst)
	switch {
	case rc.path != "" && rc.pathHasQuery:
		dst = append(dst, rc.path...)
	case rc.path != "":
		dst = append(dst, rc.path...)
		if q := splitQuery(r.target); len(q) > 0 || hasQueryMark(r.target) {
			dst = append(append(dst, '?'), q...)
		}
	case rc.rewrite != nil:
		var ok bool
		if dst, ok = rewriteTarget(rc.rewrite, m, r.target, dst); !ok {
			dst = append(dst, r.target...)
		}
	default:
		dst = append(dst, r.target...)
	}
	if len(dst) == start || dst[start] != '/' {
		dst = append(dst, 0)
		copy(dst[start+1:], dst[start:])
		dst[start] = '/'
	}
	if rc.stripQuery && !rc.pathHasQuery {
		for i := start; i < len(dst); i++ {
			if dst[i] == '?' {
				return dst[:i]
			}
		}
	}
	return dst
}

func hasQueryMark[T text](target T) bool {
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			return true
		}
	}
	return false
}

// redirectHost is Envoy's processRequestHost: the request's authority,
// without its port when a port_redirect replaces it, or when the scheme
// changes and the port was the old scheme's default.
func redirectHost[T text](authority T, oldScheme, newScheme, newPort string) T {
	end := -1
	if len(authority) > 0 && authority[0] == '[' {
		for i := len(authority) - 1; i > 0; i-- {
			if authority[i] == ':' && authority[i-1] == ']' {
				end = i
				break
			}
		}
	} else {
		for i := len(authority) - 1; i >= 0; i-- {
			if authority[i] == ':' {
				end = i
				break
			}
		}
	}
	if end < 0 {
		return authority
	}
	port := string(authority[end:])
	remove := newPort != ""
	if newScheme != oldScheme {
		remove = remove || (oldScheme == "https" && port == ":443") || (oldScheme == "http" && port == ":80")
	}
	if remove {
		return authority[:end]
	}
	return authority
}

// isGRPC reports a gRPC request by its content-type, as Envoy's
// Grpc::Common::hasGrpcContentType does.
func isGRPC[T text](contentType T) bool {
	const g = "application/grpc"
	if len(contentType) < len(g) || string(contentType[:len(g)]) != g {
		return false
	}
	return len(contentType) == len(g) || contentType[len(g)] == '+' || contentType[len(g)] == ';'
}

// grpcStatusForHTTP maps an HTTP status to a gRPC status code as Envoy's
// Grpc::Utility::httpToGrpcStatus does.
func grpcStatusForHTTP(code int) int {
	switch code {
	case http.StatusBadRequest:
		return 13 // INTERNAL
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// appendPercentEncoded appends s encoded as a grpc-message value: bytes
// outside printable ASCII, and "%", are percent-encoded.
func appendPercentEncoded(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || c == '%' {
			dst = append(dst, '%', hex[c>>4], hex[c&15])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

func appendUint(dst []byte, v uint64) []byte { return strconv.AppendUint(dst, v, 10) }
