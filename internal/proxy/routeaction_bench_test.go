package proxy

import (
	"fmt"
	"net/http/httptest"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

// route100 is a table of 100 routes mixing path prefixes, exact paths,
// regexes, header (exact, regex, :method) and query matches; the request
// benchmarked only matches the last one, so every route is tried.
func route100(tb testing.TB) *routeTable {
	var routes []*routev3.Route
	for i := range 99 {
		var m *routev3.RouteMatch
		switch i % 5 {
		case 0:
			m = prefixMatch(fmt.Sprintf("/svc%d/", i))
		case 1:
			m = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: fmt.Sprintf("/api/v2/items/%d", i)}}
		case 2:
			m = &routev3.RouteMatch{PathSpecifier: regexPath(fmt.Sprintf("/api/v%d/items/[0-9]+", i))}
		case 3:
			m = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api/"},
				Headers: []*routev3.HeaderMatcher{hdrStr("x-canary", strMatch("exact", fmt.Sprint(i), false)),
					hdrStr(":method", strMatch("exact", "GET", false))}}
		case 4:
			m = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api/"},
				Headers:         []*routev3.HeaderMatcher{hdrStr("x-request-id", strMatch("regex", fmt.Sprintf("%d-[a-f0-9]+", i), false))},
				QueryParameters: []*routev3.QueryParameterMatcher{queryStr("id", strMatch("exact", fmt.Sprint(i), false))}}
		}
		routes = append(routes, routeTo(fmt.Sprintf("c%d", i), m))
	}
	routes = append(routes, routeTo("last", &routev3.RouteMatch{PathSpecifier: regexPath("/api/v2/items"),
		QueryParameters: []*routev3.QueryParameterMatcher{queryStr("id", strMatch("exact", "7", false))},
		Headers:         []*routev3.HeaderMatcher{hdrStr("x-canary", strMatch("exact", "1", false))}}))
	table, err := translateRouteConfig(proxytest.RouteConfig("r100", routes...))
	if err != nil {
		tb.Fatal(err)
	}
	return table
}

// BenchmarkRouteMatch100 is the cost of routing with 100 routes (regex and
// header matches included) on each request path.
func BenchmarkRouteMatch100(b *testing.B) {
	table := route100(b)
	b.Run("fast", func(b *testing.B) {
		var h msgHead
		if err := parseRequestHead([]byte(benchRequest), &h); err != nil {
			b.Fatal(err)
		}
		var scratch []byte
		b.ReportAllocs()
		for b.Loop() {
			path, _ := routedPath(&scratch, h.path, allPathOpts)
			v := request[[]byte]{path: path, target: h.target, query: splitQuery(h.target), method: h.method,
				authority: h.host, scheme: "http", hdr: &h}
			if rt := table.matchView(&v); rt == nil || rt.cluster != "last" {
				b.Fatalf("routed to %v", rt)
			}
		}
	})
	b.Run("nethttp", func(b *testing.B) {
		r := httptest.NewRequest("GET", "/api/v2/items?id=7", nil)
		r.Header.Set("X-Canary", "1")
		r.Header.Set("X-Request-Id", "5f0c2a")
		b.ReportAllocs()
		for b.Loop() {
			if rt := table.matchRequest(r); rt == nil || rt.cluster != "last" {
				b.Fatalf("routed to %v", rt)
			}
		}
	})
}
