package proxy

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

func regexSubst(pattern, subst string) *matcherv3.RegexMatchAndSubstitute {
	return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: pattern}, Substitution: subst}
}

func TestRewriteTarget(t *testing.T) {
	prefix := routeMatch{kind: pathPrefix, value: "/api/", caseSensitive: true}
	prefixCI := routeMatch{kind: pathPrefix, value: "/api/"} // lower-cased at translation
	exact := routeMatch{kind: pathExact, value: "/old"}
	regex := routeMatch{kind: pathRegex}
	tests := []struct {
		name    string
		prefix  string
		rr      *matcherv3.RegexMatchAndSubstitute
		m       *routeMatch
		target  string
		want    string
		changed bool
	}{
		{"prefix", "/v2/", nil, &prefix, "/api/items?id=1", "/v2/items?id=1", true},
		{"prefix to root", "/", nil, &prefix, "/api/items", "/items", true},
		{"prefix case-insensitive keeps the rest", "/v2/", nil, &prefixCI, "/API/Items", "/v2/Items", true},
		{"prefix over an escaped match", "/v2/", nil, &prefix, "/%61pi/x%2Fy", "/v2/x%2Fy", true},
		{"exact path replaced whole", "/new", nil, &exact, "/old?q", "/new?q", true},
		{"regex match replaced whole", "/r", nil, &regex, "/any/thing?q=1", "/r?q=1", true},
		{"regex rewrite, all matches", "", regexSubst("o", "0"), &prefix, "/foo/boo?o=o", "/f00/b00?o=o", true},
		{"regex rewrite groups", "", regexSubst(`^/service/([^/]+)(/.*)$`, `\2/instance/\1`), &prefix, "/service/foo/v1/api", "/v1/api/instance/foo", true},
		{"regex rewrite to empty is ignored", "", regexSubst(".*", ""), &prefix, "/x", "", false},
		{"regex literal dollar and backslash", "", regexSubst("x", `$\\`), &prefix, "/x", `/$\`, true},
	}
	for _, tt := range tests {
		rw, err := translatePathRewrite(tt.prefix, tt.rr)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got, ok := rewriteTarget(rw, tt.m, tt.target, nil)
		if ok != tt.changed || (ok && string(got) != tt.want) {
			t.Errorf("%s: %q -> %q, %v; want %q, %v", tt.name, tt.target, got, ok, tt.want, tt.changed)
		}
		gotB, okB := rewriteTarget(rw, tt.m, []byte(tt.target), nil)
		if string(gotB) != string(got) || okB != ok {
			t.Errorf("%s: bytes %q, %v differ from string %q, %v", tt.name, gotB, okB, got, ok)
		}
	}
}

func TestRE2Substitution(t *testing.T) {
	tests := []struct {
		in     string
		groups int
		want   string
		err    bool
	}{
		{`\1-\0`, 1, `${1}-${0}`, false},
		{`a$b\\c`, 0, `a$$b\c`, false},
		{`\2`, 1, "", true},
		{`\n`, 1, "", true},
		{`trailing\`, 0, "", true},
	}
	for _, tt := range tests {
		got, err := re2Substitution(tt.in, tt.groups)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("re2Substitution(%q, %d) = %q, %v; want %q, err %v", tt.in, tt.groups, got, err, tt.want, tt.err)
		}
	}
}

func TestLocation(t *testing.T) {
	prefix := routeMatch{kind: pathPrefix, value: "/old/", caseSensitive: true}
	tests := []struct {
		name      string
		redirect  *routev3.RedirectAction
		direct    int // direct_response status instead
		scheme    string
		authority string
		target    string
		want      string
	}{
		{"keep all", &routev3.RedirectAction{}, 0, "http", "svc:8080", "/old/x?q=1", "http://svc:8080/old/x?q=1"},
		{"https upgrade strips default port", &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}},
			0, "http", "svc:80", "/a", "https://svc/a"},
		{"https upgrade keeps other port", &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}},
			0, "http", "svc:8080", "/a", "https://svc:8080/a"},
		{"scheme redirect to http strips 443", &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "http"}},
			0, "https", "svc:443", "/a", "http://svc/a"},
		{"port redirect replaces port", &routev3.RedirectAction{PortRedirect: 9090}, 0, "http", "svc:8080", "/a", "http://svc:9090/a"},
		{"host redirect", &routev3.RedirectAction{HostRedirect: "new.example.com", PortRedirect: 8443}, 0, "http", "svc:8080", "/a", "http://new.example.com:8443/a"},
		{"ipv6 port redirect", &routev3.RedirectAction{PortRedirect: 1}, 0, "http", "[::1]:8080", "/a", "http://[::1]:1/a"},
		{"path redirect keeps query", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"}},
			0, "http", "svc", "/old/x?q=1", "http://svc/new?q=1"},
		{"path redirect with its own query", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new?a=b"}, StripQuery: true},
			0, "http", "svc", "/old/x?q=1", "http://svc/new?a=b"},
		{"strip query", &routev3.RedirectAction{StripQuery: true}, 0, "http", "svc", "/old/x?q=1", "http://svc/old/x"},
		{"prefix rewrite", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/new/"}},
			0, "http", "svc", "/old/x?q=1", "http://svc/new/x?q=1"},
		{"regex rewrite", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_RegexRewrite{RegexRewrite: regexSubst("^/old/(.*)$", `/v2/\1`)}},
			0, "http", "svc", "/old/x?q=1", "http://svc/v2/x?q=1"},
		{"path without slash", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "rel"}},
			0, "http", "svc", "/a", "http://svc/rel"},
		{"direct 3xx points at the request", nil, 302, "https", "svc", "/a?b", "https://svc/a?b"},
	}
	for _, tt := range tests {
		var l *localRoute
		var err error
		if tt.redirect != nil {
			l, err = translateRedirect(tt.redirect)
		} else {
			l, err = translateDirectResponse(&routev3.DirectResponseAction{Status: uint32(tt.direct)}, 4096)
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !l.addsLocation() {
			t.Fatalf("%s: no Location", tt.name)
		}
		r := request[string]{target: tt.target, scheme: tt.scheme, authority: tt.authority}
		if got := string(location(l, &prefix, &r, nil)); got != tt.want {
			t.Errorf("%s: Location %q, want %q", tt.name, got, tt.want)
		}
		rb := request[[]byte]{target: []byte(tt.target), scheme: tt.scheme, authority: []byte(tt.authority)}
		if got := string(location(l, &prefix, &rb, nil)); got != tt.want {
			t.Errorf("%s: fast path Location %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"reviews":       "reviews-shadow",
		"reviews:9080":  "reviews-shadow:9080",
		"[::1]:80":      "[::1]-shadow:80",
		"[::1]":         "[::1]-shadow",
		"a.b.svc:15001": "a.b.svc-shadow:15001",
	} {
		if got := shadowHost(in); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGRPCHelpers(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": true,
		"application/grpc-web": false, "application/json": false, "": false,
	} {
		if isGRPC(ct) != want {
			t.Errorf("isGRPC(%q) = %v", ct, !want)
		}
	}
	for code, want := range map[int]int{400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14, 500: 2, 200: 2} {
		if got := grpcStatusForHTTP(code); got != want {
			t.Errorf("grpcStatusForHTTP(%d) = %d, want %d", code, got, want)
		}
	}
	if got := string(appendPercentEncoded(nil, "fault 100% é\n")); got != "fault 100%25 %C3%A9%0A" {
		t.Errorf("grpc-message encoding = %q", got)
	}
}

// The fast path's request rewriting (headers, host, prefix rewrite) and
// response header mutation reuse the connection's buffers: nothing is
// allocated per request once they have grown.
func TestFastPathRewritesAllocateNothing(t *testing.T) {
	rc := proxytest.RouteConfig("r", &routev3.Route{
		Match:                prefixMatch("/api/"),
		RequestHeadersToAdd:  []*corev3.HeaderValueOption{hvo("x-a", "1", overwriteOrAdd), hvo("x-b", "2", appendOrAdd)},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{hvo("x-c", "3", overwriteOrAdd)},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier:     &routev3.RouteAction_Cluster{Cluster: "c"},
			PrefixRewrite:        "/v2/",
			HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "backend"},
		}},
	})
	table, err := translateRouteConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte(benchRequest)
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-C: old\r\n\r\n")
	dc := &downConn{}
	var scratch []byte
	run := func() {
		if err := parseRequestHead(raw, &dc.req); err != nil {
			t.Fatal(err)
		}
		if err := parseResponseHead(resp, &dc.res); err != nil {
			t.Fatal(err)
		}
		dc.ra.reset()
		path, _ := routedPath(&scratch, dc.req.path, noPathOpts)
		rt := dc.matchFast(&listenerConfig{}, table, path)
		if rt == nil {
			t.Fatal("no route")
		}
		dc.ra.rt = rt
		dc.rewriteRequest(rt)
		dc.mutateResponse()
	}
	run()
	if string(dc.req.target) != "/v2/v2/items?id=7" {
		t.Fatalf("target %q", dc.req.target)
	}
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Errorf("%v allocations per request", allocs)
	}
}
