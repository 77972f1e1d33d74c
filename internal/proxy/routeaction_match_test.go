package proxy

import (
	"crypto/tls"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

func strMatch(kind string, v string, ignoreCase bool) *matcherv3.StringMatcher {
	sm := &matcherv3.StringMatcher{IgnoreCase: ignoreCase}
	switch kind {
	case "exact":
		sm.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: v}
	case "prefix":
		sm.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: v}
	case "suffix":
		sm.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: v}
	case "contains":
		sm.MatchPattern = &matcherv3.StringMatcher_Contains{Contains: v}
	case "regex":
		sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}
	}
	return sm
}

func hdrStr(name string, sm *matcherv3.StringMatcher) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}

func queryStr(name string, sm *matcherv3.StringMatcher) *routev3.QueryParameterMatcher {
	return &routev3.QueryParameterMatcher{Name: name, QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}}
}

func prefixMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

// matchCase is a request and the cluster it must route to ("" = none), on
// both request paths.
type matchCase struct {
	target  string
	method  string
	host    string
	tls     bool
	headers [][2]string
	want    string
}

// routeOnBothPaths matches tc with the net/http path's and the fast path's
// views and checks they agree with want.
func routeOnBothPaths(t *testing.T, table *routeTable, tc matchCase) {
	t.Helper()
	method := tc.method
	if method == "" {
		method = "GET"
	}
	host := tc.host
	if host == "" {
		host = "server"
	}
	r := httptest.NewRequest(method, tc.target, nil)
	r.Host = host
	if tc.tls {
		r.TLS = &tls.ConnectionState{}
	}
	for _, h := range tc.headers {
		r.Header.Add(h[0], h[1])
	}
	got := ""
	if rt := table.matchRequest(r); rt != nil {
		got = rt.cluster
	}
	if got != tc.want {
		t.Errorf("%s %s %v: net/http path routed to %q, want %q", method, tc.target, tc.headers, got, tc.want)
	}
	raw := method + " " + tc.target + " HTTP/1.1\r\nHost: " + host + "\r\n"
	for _, h := range tc.headers {
		raw += h[0] + ": " + h[1] + "\r\n"
	}
	var h msgHead
	if err := parseRequestHead([]byte(raw+"\r\n"), &h); err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	var scratch []byte
	path, _ := routedPath(&scratch, h.path, noPathOpts)
	scheme := "http"
	if tc.tls {
		scheme = "https"
	}
	v := request[[]byte]{path: path, target: h.target, query: splitQuery(h.target), method: h.method,
		authority: h.host, scheme: scheme, hdr: &h}
	fast := ""
	if rt := table.matchView(&v); rt != nil {
		fast = rt.cluster
	}
	if fast != tc.want {
		t.Errorf("%s %s %v: fast path routed to %q, want %q", method, tc.target, tc.headers, fast, tc.want)
	}
}

func TestRouteMatchQueryAndPseudoHeaders(t *testing.T) {
	rc := proxytest.RouteConfig("r",
		routeTo("q-exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/q"},
			QueryParameters: []*routev3.QueryParameterMatcher{queryStr("user", strMatch("exact", "jason", false))}}),
		routeTo("q-present", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/q"},
			QueryParameters: []*routev3.QueryParameterMatcher{{Name: "debug", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}}),
		routeTo("q-regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/q"},
			QueryParameters: []*routev3.QueryParameterMatcher{queryStr("v", strMatch("regex", "[0-9]+", false))}}),
		routeTo("q-prefix-ci", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/q"},
			QueryParameters: []*routev3.QueryParameterMatcher{queryStr("lang", strMatch("prefix", "EN", true))}}),
		routeTo("method", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/m"},
			Headers: []*routev3.HeaderMatcher{hdrStr(":method", strMatch("exact", "POST", false))}}),
		routeTo("authority", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/a"},
			Headers: []*routev3.HeaderMatcher{hdrStr(":authority", strMatch("suffix", ".example.com", true))}}),
		routeTo("host-alias", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/a"},
			Headers: []*routev3.HeaderMatcher{hdrStr("host", strMatch("exact", "other:8080", false))}}),
		routeTo("https", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/s"},
			Headers: []*routev3.HeaderMatcher{hdrStr(":scheme", strMatch("exact", "https", false))}}),
		routeTo("http", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/s"},
			Headers: []*routev3.HeaderMatcher{hdrStr(":scheme", strMatch("exact", "http", false))}}),
		routeTo("path", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/p"},
			Headers: []*routev3.HeaderMatcher{hdrStr(":path", strMatch("contains", "?x=1", false))}}),
		routeTo("ci-exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/c"},
			Headers: []*routev3.HeaderMatcher{hdrStr("x-user", strMatch("exact", "Alice", true))}}),
		routeTo("contains", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/c"},
			Headers: []*routev3.HeaderMatcher{hdrStr("cookie", strMatch("regex", ".*user=jason.*", false))}}),
		routeTo("missing-empty", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/opt"},
			Headers: []*routev3.HeaderMatcher{{Name: "x-opt", TreatMissingHeaderAsEmpty: true,
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: strMatch("exact", "", false)}}}}),
		routeTo("absent", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/n"},
			Headers: []*routev3.HeaderMatcher{{Name: "x-debug", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}}}}),
		routeTo("ci-path", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/Exact/case"}, CaseSensitive: wrapperspb.Bool(false)}),
	)
	table, err := translateRouteConfig(rc)
	if err != nil {
		t.Fatalf("translate: %v", err)
	}
	for _, tc := range []matchCase{
		{target: "/q?user=jason", want: "q-exact"},
		{target: "/q?a=1&user=jason&user=bob", want: "q-exact"},
		{target: "/q?user=bob&user=jason", want: ""}, // the first value counts, as in Envoy
		{target: "/q?user=Jason", want: ""},
		{target: "/q?user=jas%6Fn", want: ""}, // not percent-decoded, as in Envoy
		{target: "/q?debug", want: "q-present"},
		{target: "/q?debug=", want: "q-present"},
		{target: "/q?xdebug=1", want: ""},
		{target: "/q?v=123", want: "q-regex"},
		{target: "/q?v=12a", want: ""}, // regex must match the whole value
		{target: "/q?lang=en-US", want: "q-prefix-ci"},
		{target: "/m", method: "POST", want: "method"},
		{target: "/m", method: "GET", want: ""},
		{target: "/a", host: "api.EXAMPLE.com", want: "authority"},
		{target: "/a", host: "other:8080", want: "host-alias"},
		{target: "/a", host: "example.com", want: ""},
		{target: "/s", tls: true, want: "https"},
		{target: "/s", want: "http"},
		{target: "/p/x?x=1", want: "path"},
		{target: "/p/x?y=1", want: ""},
		{target: "/c", headers: [][2]string{{"X-User", "aLiCe"}}, want: "ci-exact"},
		{target: "/c", headers: [][2]string{{"Cookie", "a=b; user=jason"}}, want: "contains"},
		{target: "/opt", want: "missing-empty"},
		{target: "/opt", headers: [][2]string{{"X-Opt", ""}}, want: "missing-empty"},
		{target: "/opt", headers: [][2]string{{"X-Opt", "1"}}, want: ""},
		{target: "/n", want: "absent"},
		{target: "/n", headers: [][2]string{{"X-Debug", "1"}}, want: ""},
		// Without path options (listener translation tests them) the path is
		// matched as received, as Envoy does: %2F is not a "/".
		{target: "/exact%2FCASE", want: ""},
		{target: "/exact/CASE", want: "ci-path"},
	} {
		routeOnBothPaths(t, table, tc)
	}
}

func TestStringMatcher(t *testing.T) {
	tests := []struct {
		kind, pattern string
		ignoreCase    bool
		value         string
		want          bool
	}{
		{"exact", "abc", false, "abc", true},
		{"exact", "abc", false, "ABC", false},
		{"exact", "abc", true, "ABC", true},
		{"prefix", "ab", false, "abc", true},
		{"prefix", "AB", true, "abc", true},
		{"prefix", "abcd", false, "abc", false},
		{"suffix", "bc", false, "abc", true},
		{"suffix", "BC", true, "abc", true},
		{"suffix", "xbc", false, "bc", false},
		{"contains", "b", false, "abc", true},
		{"contains", "B", true, "abc", true},
		{"contains", "B", false, "abc", false},
		{"contains", "abcd", false, "abc", false},
		{"regex", "a.c", false, "abc", true},
		{"regex", "a.c", false, "abcd", false}, // whole string
		{"regex", "A.C", true, "abc", false},   // ignore_case has no effect on safe_regex
		{"exact", "é", true, "É", false},       // ASCII case folding only, as Envoy
		{"exact", "", false, "", true},
	}
	for _, tt := range tests {
		sm, err := translateStringMatcher(strMatch(tt.kind, tt.pattern, tt.ignoreCase))
		if err != nil {
			t.Fatalf("%s %q: %v", tt.kind, tt.pattern, err)
		}
		if got := matchString(&sm, tt.value); got != tt.want {
			t.Errorf("%s %q ignore_case=%v on %q: string %v, want %v", tt.kind, tt.pattern, tt.ignoreCase, tt.value, got, tt.want)
		}
		if got := matchString(&sm, []byte(tt.value)); got != tt.want {
			t.Errorf("%s %q ignore_case=%v on %q: bytes %v, want %v", tt.kind, tt.pattern, tt.ignoreCase, tt.value, got, tt.want)
		}
	}
}

func TestQueryParam(t *testing.T) {
	tests := []struct {
		query, name, want string
		ok                bool
	}{
		{"a=1&b=2", "b", "2", true},
		{"a=1&a=2", "a", "1", true},
		{"a", "a", "", true},
		{"a=", "a", "", true},
		{"a=b=c", "a", "b=c", true},
		{"&&a=1&", "a", "1", true},
		{"ab=1", "a", "", false},
		{"", "a", "", false},
		{"%61=1", "a", "", false},
	}
	for _, tt := range tests {
		got, ok := queryParam(tt.query, tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("queryParam(%q, %q) = %q, %v; want %q, %v", tt.query, tt.name, got, ok, tt.want, tt.ok)
		}
		gotB, okB := queryParam([]byte(tt.query), tt.name)
		if string(gotB) != tt.want || okB != tt.ok {
			t.Errorf("queryParam(bytes %q, %q) = %q, %v; want %q, %v", tt.query, tt.name, gotB, okB, tt.want, tt.ok)
		}
	}
}

// FuzzRouteMatch routes arbitrary requests through a table using every
// matcher kind: both request paths must agree, and nothing may panic.
func FuzzRouteMatch(f *testing.F) {
	table, err := translateRouteConfig(fuzzRouteConfig())
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"GET /api/v1/items?id=7&user=jason HTTP/1.1\r\nHost: server\r\nX-User: alice\r\n\r\n",
		"POST /q?debug HTTP/1.1\r\nHost: a.example.com\r\nCookie: user=jason\r\n\r\n",
		"GET /Static/%41pp.js?v=1 HTTP/1.1\r\nHost: server:80\r\nX-Env: prod\r\nX-Env: dev\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, tlsConn bool) {
		var h msgHead
		if parseRequestHead(raw, &h) != nil || needsSlowPath(&h) {
			return
		}
		var scratch []byte
		path, ok := routedPath(&scratch, h.path, noPathOpts)
		if !ok {
			return
		}
		scheme := "http"
		if tlsConn {
			scheme = "https"
		}
		v := request[[]byte]{path: path, target: h.target, query: splitQuery(h.target), method: h.method,
			authority: h.host, scheme: scheme, hdr: &h}
		fast := table.matchView(&v)
		// The same request as the net/http path sees it (headers joined by
		// name as net/http keeps them; Host moves to the authority).
		std := request[string]{path: string(path), target: string(h.target), query: string(splitQuery(h.target)),
			method: string(h.method), authority: string(h.host), scheme: scheme, hdr: fuzzHeaders(&h)}
		slow := matchRoute(table, &std)
		if fast != slow {
			t.Errorf("fast path routed to %v, net/http view to %v", fast, slow)
		}
	})
}

// fuzzHeaders is the header map net/http builds from a head.
func fuzzHeaders(h *msgHead) stdHeader {
	out := stdHeader{}
	for _, f := range h.fields {
		k := strings.ToLower(string(f.name))
		if k == "host" {
			continue
		}
		ck := textproto.CanonicalMIMEHeaderKey(string(f.name))
		out[ck] = append(out[ck], string(f.value))
	}
	return out
}

func fuzzRouteConfig() *routev3.RouteConfiguration {
	return proxytest.RouteConfig("fuzz",
		routeTo("exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}}),
		routeTo("regex", &routev3.RouteMatch{PathSpecifier: regexPath("/api/v[0-9]+/.*"),
			Headers: []*routev3.HeaderMatcher{hdrStr("x-user", strMatch("prefix", "al", true))}}),
		routeTo("query", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			QueryParameters: []*routev3.QueryParameterMatcher{queryStr("user", strMatch("exact", "jason", false))}}),
		routeTo("cookie", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/q"},
			Headers: []*routev3.HeaderMatcher{hdrStr("cookie", strMatch("contains", "user=jason", false)),
				hdrStr(":method", strMatch("exact", "POST", false))}}),
		routeTo("authority", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			Headers: []*routev3.HeaderMatcher{hdrStr(":authority", strMatch("suffix", ":80", false)),
				{Name: "x-env", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "prod"}}}}),
		routeTo("ci", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/static/"}, CaseSensitive: wrapperspb.Bool(false),
			Headers: []*routev3.HeaderMatcher{hdrStr(":scheme", strMatch("exact", "https", false))}}),
		routeTo("path", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			Headers: []*routev3.HeaderMatcher{hdrStr(":path", strMatch("regex", ".*[?&]v=1.*", false))}}),
	)
}
