package proxy

import (
	"math/rand/v2"
	"net/http"
	"strings"
)

// match returns the first route of the table matching r, or nil.
func (t *routeTable) match(r *http.Request) *route {
	for _, rt := range t.routes {
		if rt.match.matches(r) {
			return rt
		}
	}
	return nil
}

func (m *routeMatch) matches(r *http.Request) bool {
	path := r.URL.Path
	switch m.kind {
	case pathPrefix:
		if m.caseSensitive {
			if !strings.HasPrefix(path, m.value) {
				return false
			}
		} else if len(path) < len(m.value) || !strings.EqualFold(path[:len(m.value)], m.value) {
			return false
		}
	case pathExact:
		if m.caseSensitive {
			if path != m.value {
				return false
			}
		} else if !strings.EqualFold(path, m.value) {
			return false
		}
	case pathRegex:
		if !m.regex.MatchString(path) {
			return false
		}
	default:
		return false
	}
	for i := range m.headers {
		if !m.headers[i].matches(r.Header) {
			return false
		}
	}
	return true
}

func (h *headerMatcher) matches(hdr http.Header) bool {
	vals, present := hdr[h.name]
	if !present {
		// As in Envoy: a missing header matches only an inverted present_match.
		return h.kind == headerPresent && h.invert
	}
	var ok bool
	{
		// Envoy matches multiple values of a header joined with ",".
		v := vals[0]
		if len(vals) > 1 {
			v = strings.Join(vals, ",")
		}
		switch h.kind {
		case headerExact:
			ok = v == h.value
		case headerPrefix:
			ok = strings.HasPrefix(v, h.value)
		case headerRegex:
			ok = h.regex.MatchString(v)
		case headerPresent:
			ok = true
		}
	}
	if h.invert {
		return !ok
	}
	return ok
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
