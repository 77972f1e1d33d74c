package model

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func gatewayRules(t *testing.T, docs ...string) []*VirtualService {
	t.Helper()
	var routes []*GatewayHTTPRoute
	for _, d := range docs {
		routes = append(routes, decodeOne(t, d).(*GatewayHTTPRoute))
	}
	return GatewayVirtualServices(routes, nil)
}

// TestGatewayPrecedence checks that matches across rules and routes are
// ordered as Gateway API requires, whatever their order in the documents.
func TestGatewayPrecedence(t *testing.T) {
	a := `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - matches: [{path: {value: /api}}]
    backendRefs: [{name: reviews, port: 9080}]
  - matches:
    - headers: [{name: X-One, value: "1"}, {name: x-two, value: "2"}]
    - path: {type: Exact, value: /api/v1/health}
    - queryParams: [{name: q, value: "1"}]
    - headers: [{name: x-one, type: RegularExpression, value: "1.*"}]
    backendRefs: [{name: reviews, port: 9080}]
  - matches: [{path: {type: RegularExpression, value: "/api/v[0-9]+/.*"}}]
    backendRefs: [{name: reviews, port: 9080}]
`
	b := `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - name: v1
    matches: [{path: {value: /api/v1/}}, {path: {value: /api/v1}, method: GET}]
    backendRefs: [{name: reviews, port: 9080}]
  - matches: [{path: {value: /api}}]
    backendRefs: [{name: reviews, port: 9080}]
`
	vss := gatewayRules(t, b, a)
	if len(vss) != 1 {
		t.Fatalf("%d VirtualServices, want 1", len(vss))
	}
	vs := vss[0]
	if vs.Key().String() != "VirtualService default/httproute:reviews" ||
		vs.Annotations[AnnotationConvertedFrom] != "HTTPRoute default/a, HTTPRoute default/b" {
		t.Errorf("metadata: %s %v", vs.Key(), vs.Annotations)
	}
	type row struct {
		Name  string
		Match HTTPMatchRequest
	}
	var got []row
	for _, r := range vs.Spec.HTTP {
		got = append(got, row{r.Name, r.Match[0]})
	}
	ex := func(s string) *StringMatch { return &StringMatch{Exact: s} }
	pre := func(s string) *StringMatch { return &StringMatch{Prefix: s} }
	want := []row{
		{"default/a rules[1].matches[1]", HTTPMatchRequest{URI: ex("/api/v1/health")}},
		// method first among the longest prefixes, then route a before b...
		{"default/b v1.matches[1]", HTTPMatchRequest{URI: ex("/api/v1"), Method: ex("GET"), Port: 9080}},
		{"default/b v1.matches[1]", HTTPMatchRequest{URI: pre("/api/v1/"), Method: ex("GET"), Port: 9080}},
		{"default/b v1.matches[0]", HTTPMatchRequest{URI: ex("/api/v1"), Port: 9080}},
		{"default/b v1.matches[0]", HTTPMatchRequest{URI: pre("/api/v1/"), Port: 9080}},
		{"default/a rules[0].matches[0]", HTTPMatchRequest{URI: ex("/api")}},
		{"default/a rules[0].matches[0]", HTTPMatchRequest{URI: pre("/api/")}},
		{"default/b rules[1].matches[0]", HTTPMatchRequest{URI: ex("/api"), Port: 9080}},
		{"default/b rules[1].matches[0]", HTTPMatchRequest{URI: pre("/api/"), Port: 9080}},
		// ...then "/" with the most headers, then query parameters.
		{"default/a rules[1].matches[0]", HTTPMatchRequest{URI: pre("/"), Headers: map[string]StringMatch{"x-one": {Exact: "1"}, "x-two": {Exact: "2"}}}},
		{"default/a rules[1].matches[3]", HTTPMatchRequest{URI: pre("/"), Headers: map[string]StringMatch{"x-one": {Regex: "1.*"}}}},
		{"default/a rules[1].matches[2]", HTTPMatchRequest{URI: pre("/"), QueryParams: map[string]StringMatch{"q": {Exact: "1"}}}},
		// Regular expressions after prefixes (implementation-specific).
		{"default/a rules[2].matches[0]", HTTPMatchRequest{URI: &StringMatch{Regex: "/api/v[0-9]+/.*"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
}

func TestGatewayRuleActions(t *testing.T) {
	tests := []struct {
		name string
		rule string
		want []HTTPRoute // Match and Name left out
	}{
		{"weights default to 1, header modifiers, mirror, timeouts", `
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Set, value: a}], add: [{name: x-add, value: b}], remove: [X-Gone]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: x-resp, value: c}]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 9080}, fraction: {numerator: 1, denominator: 4}}
    backendRefs:
    - {name: reviews, port: 9080}
    - name: reviews-v2
      port: 9080
      weight: 3
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-v, value: "2"}]}}]
    timeouts: {request: 10s, backendRequest: 2s}
`, []HTTPRoute{{
			Route: []HTTPRouteDestination{dst("reviews.default", 9080, 1), {
				Destination: Destination{Host: "reviews-v2.default", Port: &PortSelector{Number: 9080}}, Weight: 3,
				Headers: &Headers{Request: &HeaderOperations{Set: map[string]string{"x-v": "2"}}},
			}},
			Headers: &Headers{
				Request:  &HeaderOperations{Set: map[string]string{"x-set": "a"}, Add: map[string]string{"x-add": "b"}, Remove: []string{"x-gone"}},
				Response: &HeaderOperations{Add: map[string]string{"x-resp": "c"}},
			},
			Mirrors: []HTTPMirrorPolicy{{Destination: Destination{Host: "shadow.default", Port: &PortSelector{Number: 9080}}, Percentage: &Percent{Value: 25}}},
			Timeout: "10s",
			Retries: &HTTPRetry{Attempts: 2, RetryOn: "connect-failure,refused-stream,unavailable", PerTryTimeout: "2s"},
		}}},
		{"prefix rewrite: the exact path and the subtree", `
  - matches: [{path: {type: PathPrefix, value: /foo/}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: example.com, path: {type: ReplacePrefixMatch, replacePrefixMatch: /xyz}}}]
    backendRefs: [{name: reviews, port: 9080}]
`, []HTTPRoute{
			{Route: []HTTPRouteDestination{dst("reviews.default", 9080, 1)}, Rewrite: &HTTPRewrite{Authority: "example.com", URI: "/xyz"}},
			{Route: []HTTPRouteDestination{dst("reviews.default", 9080, 1)}, Rewrite: &HTTPRewrite{Authority: "example.com", URI: "/xyz/"}},
		}},
		{"prefix rewrite to empty", `
  - matches: [{path: {type: PathPrefix, value: /foo}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: ""}}}]
    backendRefs: [{name: reviews, port: 9080}]
`, []HTTPRoute{
			{Route: []HTTPRouteDestination{dst("reviews.default", 9080, 1)}, Rewrite: &HTTPRewrite{URI: "/"}},
			{Route: []HTTPRouteDestination{dst("reviews.default", 9080, 1)}, Rewrite: &HTTPRewrite{URI: "/"}},
		}},
		{"full path rewrite", `
  - filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /new}}}]
    backendRefs: [{name: reviews, port: 9080}]
`, []HTTPRoute{{Route: []HTTPRouteDestination{dst("reviews.default", 9080, 1)},
			Rewrite: &HTTPRewrite{URIRegexRewrite: &RegexRewrite{Match: "^/.*$", Rewrite: "/new"}}}}},
		{"redirect: 302 by default, the scheme's port", `
  - filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.com, path: {type: ReplaceFullPath, replaceFullPath: /x}}}]
`, []HTTPRoute{{Redirect: &HTTPRedirect{Scheme: "https", Authority: "example.com", URI: "/x", RedirectCode: 302, DerivePort: "FROM_PROTOCOL_DEFAULT"}}}},
		{"nothing to forward to: 500", `
  - backendRefs: [{name: reviews, port: 9080, weight: 0}]
`, []HTTPRoute{{DirectResponse: &HTTPDirectResponse{Status: 500}}}},
		{"retry stanza; one try bounds the request", `
  - backendRefs: [{name: reviews, port: 9080}]
    retry: {codes: [503, 504], attempts: 0, backoff: 100ms}
    timeouts: {request: 10s, backendRequest: 2s}
`, []HTTPRoute{{Route: []HTTPRouteDestination{dst("reviews.default", 9080, 1)}, Timeout: "2s",
			Retries: &HTTPRetry{RetryOn: "connect-failure,refused-stream,unavailable,retriable-status-codes,503,504", Backoff: "100ms"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := Decode([]byte(gwHead+gwParentRef+"  rules:"+tc.rule), "x.yaml")
			if err != nil {
				t.Fatal(err)
			}
			vss := GatewayVirtualServices([]*GatewayHTTPRoute{obj[0].(*GatewayHTTPRoute)}, nil)
			var got []HTTPRoute
			for _, r := range vss[0].Spec.HTTP {
				r.Name, r.Match = "", nil
				got = append(got, r)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
		})
	}
}
