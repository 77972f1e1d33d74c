package proxy

import (
	"math"
	"net/http/httptest"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

func routeTo(cluster string, m *routev3.RouteMatch) *routev3.Route {
	return &routev3.Route{Match: m, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
	}}}
}

func hdr[S interface {
	*routev3.HeaderMatcher_ExactMatch | *routev3.HeaderMatcher_StringMatch |
		*routev3.HeaderMatcher_SafeRegexMatch | *routev3.HeaderMatcher_PresentMatch
}](name string, spec S, invert bool) *routev3.HeaderMatcher {
	h := &routev3.HeaderMatcher{Name: name, InvertMatch: invert}
	switch s := any(spec).(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		h.HeaderMatchSpecifier = s
	case *routev3.HeaderMatcher_StringMatch:
		h.HeaderMatchSpecifier = s
	case *routev3.HeaderMatcher_SafeRegexMatch:
		h.HeaderMatchSpecifier = s
	case *routev3.HeaderMatcher_PresentMatch:
		h.HeaderMatchSpecifier = s
	}
	return h
}

func TestRouteMatching(t *testing.T) {
	rc := proxytest.RouteConfig("r",
		routeTo("exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}}),
		routeTo("exact-ci", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/CI"}, CaseSensitive: wrapperspb.Bool(false)}),
		routeTo("regex", &routev3.RouteMatch{PathSpecifier: regexPath("/items/[0-9]+")}),
		routeTo("hdr-exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/h"},
			Headers: []*routev3.HeaderMatcher{hdr("x-user", &routev3.HeaderMatcher_ExactMatch{ExactMatch: "alice"}, false)}}),
		routeTo("hdr-prefix", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/h"},
			Headers: []*routev3.HeaderMatcher{hdr("x-user", &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "bo"}}}, false)}}),
		routeTo("hdr-regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/h"},
			Headers: []*routev3.HeaderMatcher{hdr("x-user", &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "c[a-z]+"}}, false)}}),
		routeTo("hdr-present", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/h"},
			Headers: []*routev3.HeaderMatcher{hdr("x-debug", &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, false)}}),
		routeTo("hdr-invert", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/h"},
			Headers: []*routev3.HeaderMatcher{hdr("x-env", &routev3.HeaderMatcher_ExactMatch{ExactMatch: "prod"}, true)}}),
		routeTo("prefix-ci", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/Static/"}, CaseSensitive: wrapperspb.Bool(false)}),
		routeTo("default", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"}}),
	)
	table, err := translateRouteConfig(rc)
	if err != nil {
		t.Fatalf("translate: %v", err)
	}
	tests := []struct {
		path    string
		headers map[string]string
		want    string // "" = no route
	}{
		{"/exact", nil, "exact"},
		{"/exact/more", nil, ""},
		{"/EXACT", nil, ""},
		{"/ci", nil, "exact-ci"},
		{"/items/42", nil, "regex"},
		{"/items/42/x", nil, ""}, // regex must match the whole path
		{"/items/abc", nil, ""},
		{"/h", map[string]string{"X-User": "alice"}, "hdr-exact"},
		{"/h", map[string]string{"X-User": "bob"}, "hdr-prefix"},
		{"/h", map[string]string{"X-User": "carol"}, "hdr-regex"},
		{"/h", map[string]string{"X-User": "dave", "X-Debug": ""}, "hdr-present"},
		{"/h", map[string]string{"X-Env": "dev"}, "hdr-invert"},
		{"/h", map[string]string{"X-Env": "prod"}, ""},
		{"/h", nil, ""}, // a missing header fails an inverted exact match, as in Envoy
		{"/static/app.js", nil, "prefix-ci"},
		{"/api/v1", nil, "default"},
		{"/other", nil, ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", tt.path, nil)
		for k, v := range tt.headers {
			r.Header.Set(k, v)
		}
		got := ""
		if rt := table.matchRequest(r); rt != nil {
			got = rt.cluster
		}
		if got != tt.want {
			t.Errorf("%s %v: routed to %q, want %q", tt.path, tt.headers, got, tt.want)
		}
		// The fast path, matching on the raw head, routes the same.
		raw := "GET " + tt.path + " HTTP/1.1\r\nHost: s\r\n"
		for k, v := range tt.headers {
			raw += strings.ToLower(k) + ": " + v + "\r\n"
		}
		var h msgHead
		if err := parseRequestHead([]byte(raw+"\r\n"), &h); err != nil {
			t.Fatalf("parse %q: %v", raw, err)
		}
		var scratch []byte
		path, _ := routedPath(&scratch, h.path, noPathOpts)
		fast := ""
		if rt := table.match(path, &h); rt != nil {
			fast = rt.cluster
		}
		if fast != got {
			t.Errorf("%s %v: fast path routed to %q, net/http path to %q", tt.path, tt.headers, fast, got)
		}
	}
}

func TestWeightedPickDistribution(t *testing.T) {
	wc, err := translateWeighted(&routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
		{Name: "v1", Weight: wrapperspb.UInt32(90)},
		{Name: "zero", Weight: wrapperspb.UInt32(0)},
		{Name: "v2", Weight: wrapperspb.UInt32(10)},
	}})
	if err != nil {
		t.Fatalf("translate: %v", err)
	}
	rt := &route{weighted: wc}
	const n = 10000
	counts := map[string]int{}
	for range n {
		counts[rt.clusterName()]++
	}
	if counts["zero"] != 0 {
		t.Errorf("zero-weight cluster picked %d times", counts["zero"])
	}
	// 90/10 over 10k picks: standard deviation is 30, allow 5 sigma.
	if d := math.Abs(float64(counts["v1"]) - 0.9*n); d > 150 {
		t.Errorf("v1 picked %d of %d, want about %d", counts["v1"], n, int(0.9*n))
	}
	if counts["v1"]+counts["v2"] != n {
		t.Errorf("counts = %v", counts)
	}
	// The mapping from the random draw is exact at the boundaries.
	for n, want := range map[uint32]string{0: "v1", 89: "v1", 90: "v2", 99: "v2"} {
		if got := wc.pick(n); got != want {
			t.Errorf("pick(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestRoundRobinHealthyOnly(t *testing.T) {
	cla := proxytest.CLA(t, "c", []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"}, "127.0.0.1:2")
	c := testCluster(healthyEndpoints(cla))
	var got []string
	for range 6 {
		ep, ok := c.pick()
		if !ok {
			t.Fatal("no endpoint")
		}
		got = append(got, ep)
	}
	want := []string{"127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:4"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round robin (-want +got):\n%s", diff)
	}
	empty := testCluster(nil)
	if _, ok := empty.pick(); ok {
		t.Error("pick from a cluster without endpoints succeeded")
	}
}
