package proxy

import (
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

// matchRoute returns the first route of the table matching a request with
// this (percent-decoded) path and headers, or nil.
func matchRoute[T text](t *routeTable, path T, hdr headerSource[T]) *route {
	for _, rt := range t.routes {
		if matches(&rt.match, path, hdr) {
			return rt
		}
	}
	return nil
}

// match matches a request of the fast path.
func (t *routeTable) match(path []byte, h *msgHead) *route {
	return matchRoute[[]byte](t, path, h)
}

// matchRequest matches a net/http request.
func (t *routeTable) matchRequest(r *http.Request) *route {
	return matchRoute[string](t, r.URL.Path, stdHeader(r.Header))
}

func matches[T text](m *routeMatch, path T, hdr headerSource[T]) bool {
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
		if !headerMatches(&m.headers[i], hdr) {
			return false
		}
	}
	return true
}

func headerMatches[T text](h *headerMatcher, hdr headerSource[T]) bool {
	v, present := hdr.headerValue(h.name)
	if !present {
		// As in Envoy: a missing header matches only an inverted present_match.
		return h.kind == headerPresent && h.invert
	}
	var ok bool
	switch h.kind {
	case headerExact:
		ok = string(v) == h.value
	case headerPrefix:
		ok = len(v) >= len(h.value) && string(v[:len(h.value)]) == h.value
	case headerRegex:
		ok = regexMatch(h.regex, v)
	case headerPresent:
		ok = true
	}
	if h.invert {
		return !ok
	}
	return ok
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

// clusterName returns the cluster a request on this route goes to, picking
// by weight for weighted routes. math/rand/v2's top-level functions use a
// per-thread generator, so picking takes no lock.
func (rt *route) clusterName() string {
	if rt.weighted == nil {
		return rt.cluster
	}
	return rt.weighted.pick(rand.Uint32N(rt.weighted.total))
}

// pick maps n in [0,total) to a cluster name by cumulative weight.
func (w *weightedClusters) pick(n uint32) string {
	for i, c := range w.cumulative {
		if n < c {
			return w.names[i]
		}
	}
	return w.names[len(w.names)-1]
}
