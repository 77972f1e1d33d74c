package proxy

import (
	"fmt"
	"regexp"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// RouteVerdict is one route of the table checked against the request.
type RouteVerdict struct {
	Index   int    `json:"index"`
	Name    string `json:"name,omitempty"`
	Matched bool   `json:"matched"`
	// Checks are the route's match fields in the order the matcher checks
	// them: all of them for the route that matched, up to and including
	// the first that failed for the others.
	Checks []MatchCheck `json:"checks"`
	// Reason is why the route did not match: its first failing check.
	Reason string `json:"reason,omitempty"`
}

// MatchCheck is one field of a route's match checked against the request.
type MatchCheck struct {
	Field string `json:"field"` // path, header NAME, :method, query NAME
	Want  string `json:"want"`
	Got   string `json:"got"`
	Held  bool   `json:"held"`
}

// absent is what an explanation shows for a header or parameter the
// request does not have.
const absent = "(absent)"

// explainRoutes checks the routes of t in order up to winner (all of them
// when winner is nil). Each field is checked with the matcher's own
// functions; the decision itself was made by matchRoute.
func explainRoutes(t *routeTable, r *request[string], winner *route) []RouteVerdict {
	var out []RouteVerdict
	for i, rt := range t.routes {
		v := RouteVerdict{Index: i, Name: rt.name, Matched: rt == winner}
		for _, c := range matchChecks(&rt.match, r) {
			v.Checks = append(v.Checks, c)
			if !c.Held {
				v.Reason = fmt.Sprintf("%s: got %s, want %s", c.Field, c.Got, c.Want)
				break
			}
		}
		out = append(out, v)
		if rt == winner {
			break
		}
	}
	return out
}

// matchChecks lists the checks of m in the matcher's order: path, headers,
// query parameters.
func matchChecks(m *routeMatch, r *request[string]) []MatchCheck {
	pathOnly := *m
	pathOnly.headers, pathOnly.query = nil, nil
	checks := []MatchCheck{{Field: "path", Want: describePath(m), Got: quote(r.path), Held: matches(&pathOnly, r)}}
	for i := range m.headers {
		h := &m.headers[i]
		got := absent
		if v, ok := headerMatchValue(h, r); ok {
			got = quote(v)
		}
		checks = append(checks, MatchCheck{Field: headerField(h), Want: describeHeader(h), Got: got, Held: headerMatches(h, r)})
	}
	for i := range m.query {
		q := &m.query[i]
		got := absent
		if v, ok := queryParam(r.query, q.name); ok {
			got = quote(v)
		}
		want := "present"
		if !q.present {
			want = describeString(&q.str)
		}
		checks = append(checks, MatchCheck{Field: "query " + q.name, Want: want, Got: got, Held: matchQuery(q, r.query)})
	}
	return checks
}

func describePath(m *routeMatch) string {
	anyCase := ""
	if !m.caseSensitive {
		anyCase = " (any case)"
	}
	switch m.kind {
	case pathPrefix:
		return "prefix " + quote(m.value) + anyCase
	case pathExact:
		return "exact " + quote(m.value) + anyCase
	case pathRegex:
		return describeRegex(m.regex)
	}
	return "unknown path matcher"
}

// headerField names the request property a header matcher reads.
func headerField(h *headerMatcher) string {
	switch h.pseudo {
	case pseudoMethod:
		return ":method"
	case pseudoAuthority:
		return ":authority"
	case pseudoScheme:
		return ":scheme"
	case pseudoPath:
		return ":path"
	}
	return "header " + strings.ToLower(h.name)
}

// headerMatchValue returns the value a header matcher reads.
func headerMatchValue(h *headerMatcher, r *request[string]) (string, bool) {
	switch h.pseudo {
	case pseudoMethod:
		return r.method, true
	case pseudoAuthority:
		return r.authority, true
	case pseudoPath:
		return r.target, true
	case pseudoScheme:
		return r.scheme, true
	}
	return r.hdr.headerValue(h.name)
}

func describeHeader(h *headerMatcher) string {
	var d string
	switch {
	case h.present && h.invert:
		return "absent"
	case h.present:
		return "present"
	case h.invert:
		d = "not " + describeString(&h.str)
	default:
		d = describeString(&h.str)
	}
	if h.missingAsEmpty {
		d += " (missing counts as empty)"
	}
	return d
}

func describeString(s *stringMatcher) string {
	var d string
	switch s.kind {
	case stringExact:
		d = "exact " + quote(s.value)
	case stringPrefix:
		d = "prefix " + quote(s.value)
	case stringSuffix:
		d = "suffix " + quote(s.value)
	case stringContains:
		d = "contains " + quote(s.value)
	case stringRegex:
		return describeRegex(s.regex)
	default:
		return "unknown matcher"
	}
	if s.ignoreCase {
		d += " (any case)"
	}
	return d
}

// describeRegex shows a regex as configured: compileRegex wraps it to
// match the whole input.
func describeRegex(re *regexp.Regexp) string {
	s := re.String()
	anyCase := strings.HasPrefix(s, "(?i)")
	s = strings.TrimPrefix(s, "(?i)")
	s = strings.TrimSuffix(strings.TrimPrefix(s, "^(?:"), ")$")
	d := "regex " + quote(s) + " (whole value)"
	if anyCase {
		d += " (any case)"
	}
	return d
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// inlineRouteConfig returns the route_config of a listener's HTTP
// connection manager (translateListener has accepted it).
func inlineRouteConfig(l *listenerv3.Listener) *routev3.RouteConfiguration {
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			var hcm hcmv3.HttpConnectionManager
			if f.GetTypedConfig().UnmarshalTo(&hcm) == nil && hcm.GetRouteConfig() != nil {
				return hcm.GetRouteConfig()
			}
		}
	}
	return nil
}

// rawRoute returns the Route resource rt was translated from.
func rawRoute(rc *routev3.RouteConfiguration, rt *route, t *routeTable) *routev3.Route {
	routes := rc.GetVirtualHosts()
	if len(routes) != 1 {
		return nil
	}
	for i, x := range t.routes {
		if x == rt && i < len(routes[0].GetRoutes()) {
			return routes[0].GetRoutes()[i]
		}
	}
	return nil
}
