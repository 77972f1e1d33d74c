package proxy

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
)

// text is a request path or header value: a string on the net/http path,
// bytes of the raw head on the fast path. Matching allocates neither.
type text interface{ string | []byte }

// headerSource gives a route matcher the value of a request header: the
// values of every field with that name joined with ",", as Envoy matches
// them.
type headerSource[T text] interface {
	headerValue(canonicalName string) (T, bool)
}

// stdHeader adapts an http.Header (the net/http path) to headerSource.
type stdHeader http.Header

func (h stdHeader) headerValue(name string) (string, bool) {
	vals, ok := h[name]
	if !ok {
		return "", false
	}
	if len(vals) == 1 {
		return vals[0], true
	}
	return strings.Join(vals, ","), true
}

// request is what a route matches on, read in place from the request. It
// is built per request without allocating (on the fast path it lives in
// the connection).
type request[T text] struct {
	path      T      // the normalized path without the query (pathnorm): the path matchers
	target    T      // ":path": path and query as received
	query     T      // the query string without "?", not decoded (as Envoy matches it)
	method    T      // ":method"
	authority T      // ":authority" (Host)
	scheme    string // ":scheme": "https" on TLS listeners, else "http"
	hdr       headerSource[T]
}

// splitQuery returns the query of a request target ("" when none).
func splitQuery[T text](target T) T {
	var i int
	switch t := any(target).(type) {
	case string:
		i = strings.IndexByte(t, '?')
	case []byte:
		i = bytes.IndexByte(t, '?')
	}
	if i < 0 {
		return target[:0]
	}
	return target[i+1:]
}

// matchRoute returns the first route of the table matching r, or nil.
func matchRoute[T text](t *routeTable, r *request[T]) *route {
	for _, rt := range t.routes {
		if matches(&rt.match, r) {
			return rt
		}
	}
	return nil
}

// match matches a request of the fast path on a plaintext listener (tests
// and benchmarks; the fast path builds its request view once, matchView).
func (t *routeTable) match(path []byte, h *msgHead) *route {
	r := request[[]byte]{path: path, target: h.target, query: splitQuery(h.target), method: h.method,
		authority: h.host, scheme: "http", hdr: h}
	return matchRoute(t, &r)
}

// matchView matches a request view.
func (t *routeTable) matchView(r *request[[]byte]) *route { return matchRoute(t, r) }

// matchRequest matches a net/http request.
func (t *routeTable) matchRequest(r *http.Request) *route {
	v := stdRequest(r)
	return matchRoute(t, &v)
}

// stdRequest is the match view of a net/http request.
func stdRequest(r *http.Request) request[string] {
	target := r.RequestURI
	if target == "" || target[0] != '/' {
		target = r.URL.RequestURI() // absolute-form: :path is the path and query
	}
	scheme := "http"
	if requestTLS(r) != nil {
		scheme = "https"
	}
	return request[string]{path: requestPath(r), target: target, query: r.URL.RawQuery, method: r.Method,
		authority: r.Host, scheme: scheme, hdr: stdHeader(r.Header)}
}

func matches[T text](m *routeMatch, r *request[T]) bool {
	path := r.path
	switch m.kind {
	case pathPrefix:
		if m.caseSensitive {
			if len(path) < len(m.value) || string(path[:len(m.value)]) != m.value {
				return false
			}
		} else if !hasPrefixFold(path, m.value) {
			return false
		}
	case pathExact:
		if m.caseSensitive {
			if string(path) != m.value {
				return false
			}
		} else if !equalFold(path, m.value) {
			return false
		}
	case pathRegex:
		if !regexMatch(m.regex, path) {
			return false
		}
	default:
		return false
	}
	for i := range m.headers {
		if !headerMatches(&m.headers[i], r) {
			return false
		}
	}
	for i := range m.query {
		if !matchQuery(&m.query[i], r.query) {
			return false
		}
	}
	return true
}

// pseudoHeader names a request property matched like a header.
type pseudoHeader int

const (
	pseudoNone pseudoHeader = iota
	pseudoMethod
	pseudoAuthority
	pseudoScheme
	pseudoPath
)

func headerMatches[T text](h *headerMatcher, r *request[T]) bool {
	var v T
	present := true
	switch h.pseudo {
	case pseudoMethod:
		v = r.method
	case pseudoAuthority:
		v = r.authority
	case pseudoPath:
		v = r.target
	case pseudoScheme:
		// Always present; a string on both paths.
		if h.present {
			return !h.invert
		}
		return matchString(&h.str, r.scheme) != h.invert
	default:
		v, present = r.hdr.headerValue(h.name)
	}
	if !present {
		if !h.missingAsEmpty {
			// As in Envoy: a missing header matches only an inverted present_match.
			return h.present && h.invert
		}
		v = v[:0]
	}
	if h.present {
		return !h.invert
	}
	return matchString(&h.str, v) != h.invert
}

// stringMatcher is Envoy's StringMatcher: exact, prefix, suffix, contains
// (ASCII case-insensitive with ignore_case) or a whole-string RE2 regex.
type stringMatcher struct {
	kind       stringKind
	value      string
	ignoreCase bool
	regex      *regexp.Regexp
}

type stringKind int

const (
	stringExact stringKind = iota + 1
	stringPrefix
	stringSuffix
	stringContains
	stringRegex
)

func matchString[T text](s *stringMatcher, v T) bool {
	n := len(s.value)
	switch s.kind {
	case stringExact:
		if s.ignoreCase {
			return equalFold(v, s.value)
		}
		return string(v) == s.value
	case stringPrefix:
		if s.ignoreCase {
			return hasPrefixFold(v, s.value)
		}
		return len(v) >= n && string(v[:n]) == s.value
	case stringSuffix:
		if len(v) < n {
			return false
		}
		if s.ignoreCase {
			return equalFold(v[len(v)-n:], s.value)
		}
		return string(v[len(v)-n:]) == s.value
	case stringContains:
		for i := 0; i+n <= len(v); i++ {
			if s.ignoreCase && equalFold(v[i:i+n], s.value) || !s.ignoreCase && string(v[i:i+n]) == s.value {
				return true
			}
		}
		return false
	case stringRegex:
		return regexMatch(s.regex, v)
	}
	return false
}

// queryMatcher is Envoy's QueryParameterMatcher: the first value of the
// named parameter, as it appears in the request (not percent-decoded).
type queryMatcher struct {
	name    string
	present bool // present_match (or no matcher): the parameter exists
	str     stringMatcher
}

func matchQuery[T text](q *queryMatcher, query T) bool {
	v, ok := queryParam(query, q.name)
	if !ok {
		return false
	}
	if q.present {
		return true
	}
	return matchString(&q.str, v)
}

// queryParam returns the first value of parameter name in query, split on
// "&" and "=" as Envoy's QueryParamsMulti::parseQueryString does: a
// parameter without "=" has the value "".
func queryParam[T text](query T, name string) (T, bool) {
	for len(query) > 0 {
		var key, value T
		key, value, query = cutQueryParam(query)
		if string(key) == name {
			return value, true
		}
	}
	return query, false
}

// cutQueryParam splits the first parameter off query: its name, its value
// (empty without "="), and the parameters after it.
func cutQueryParam[T text](query T) (name, value, rest T) {
	end := len(query)
	for i := 0; i < len(query); i++ {
		if query[i] == '&' {
			end = i
			break
		}
	}
	param := query[:end]
	if end < len(query) {
		rest = query[end+1:]
	} else {
		rest = query[:0]
	}
	eq := len(param)
	for i := 0; i < len(param); i++ {
		if param[i] == '=' {
			eq = i
			break
		}
	}
	if eq == len(param) {
		return param, param[eq:], rest
	}
	return param[:eq], param[eq+1:], rest
}

func regexMatch[T text](re *regexp.Regexp, v T) bool {
	switch v := any(v).(type) {
	case string:
		return re.MatchString(v)
	case []byte:
		return re.Match(v)
	}
	return false
}

// pickCluster returns the cluster a request on this route goes to, picking
// by weight for weighted routes (index i >= 0 of the weighted entry, else
// -1). math/rand/v2's top-level functions use a per-thread generator, so
// picking takes no lock.
func (rt *route) pickCluster() (name string, i int) {
	if rt.weighted == nil {
		return rt.cluster, -1
	}
	i = rt.weighted.index(rand.Uint32N(rt.weighted.total))
	return rt.weighted.names[i], i
}

// clusterName returns the cluster a request on this route goes to.
func (rt *route) clusterName() string {
	name, _ := rt.pickCluster()
	return name
}

// pick maps n in [0,total) to a cluster name by cumulative weight.
func (w *weightedClusters) pick(n uint32) string { return w.names[w.index(n)] }

func (w *weightedClusters) index(n uint32) int {
	for i, c := range w.cumulative {
		if n < c {
			return i
		}
	}
	return len(w.names) - 1
}
