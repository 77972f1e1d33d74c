package model

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func dst(host string, port uint32, weight int32) HTTPRouteDestination {
	d := HTTPRouteDestination{Destination: Destination{Host: host}, Weight: weight}
	if port != 0 {
		d.Destination.Port = &PortSelector{Number: port}
	}
	return d
}

func TestTrafficSplitVirtualService(t *testing.T) {
	canary := tsHead + "  service: website\n  backends:\n  - {service: website-v1, weight: 90}\n  - {service: website-v2, weight: 10}\n"
	tests := []struct {
		name  string
		in    string
		ports []uint32
		want  []HTTPRoute // nil: not converted
	}{
		{"ports unknown", canary, nil, []HTTPRoute{{Route: []HTTPRouteDestination{
			dst("website-v1.default", 0, 90), dst("website-v2.default", 0, 10)}}}},
		{"one port", canary, []uint32{9080}, []HTTPRoute{{Route: []HTTPRouteDestination{
			dst("website-v1.default", 9080, 90), dst("website-v2.default", 9080, 10)}}}},
		{"two ports: one rule each", canary, []uint32{9090, 8080, 9090}, []HTTPRoute{
			{Name: "port 8080", Match: []HTTPMatchRequest{{Port: 8080}}, Route: []HTTPRouteDestination{
				dst("website-v1.default", 8080, 90), dst("website-v2.default", 8080, 10)}},
			{Name: "port 9090", Match: []HTTPMatchRequest{{Port: 9090}}, Route: []HTTPRouteDestination{
				dst("website-v1.default", 9090, 90), dst("website-v2.default", 9090, 10)}},
		}},
		{"v1alpha1 quantities are thousandths", strings.Replace(tsHead, "v1alpha4", "v1alpha1", 1) +
			"  service: foobar\n  backends:\n  - {service: a, weight: 500m}\n  - {service: b, weight: \"1\"}\n  - {service: c, weight: 0.25}\n",
			nil, []HTTPRoute{{Route: []HTTPRouteDestination{dst("a.default", 0, 500), dst("b.default", 0, 1000), dst("c.default", 0, 250)}}}},
		{"relative integer weights", tsHead + "  service: foobar\n  backends:\n  - {service: a, weight: 1000}\n  - {service: b, weight: 500}\n",
			nil, []HTTPRoute{{Route: []HTTPRouteDestination{dst("a.default", 0, 1000), dst("b.default", 0, 500)}}}},
		{"HTTPRouteGroup matches: not converted", tsHead + "  service: foobar\n  matches: [{kind: HTTPRouteGroup, name: g}]\n  backends: [{service: a, weight: 1}]\n", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := decodeOne(t, tc.in).(*TrafficSplit)
			vs := ts.VirtualService(tc.ports)
			if tc.want == nil {
				if vs != nil {
					t.Fatalf("converted, want nil: %+v", vs)
				}
				return
			}
			if vs.Key().String() != "VirtualService default/trafficsplit:s" || vs.Annotations[AnnotationConvertedFrom] != "TrafficSplit default/s" {
				t.Errorf("metadata: %s %v", vs.Key(), vs.Annotations)
			}
			if diff := cmp.Diff(tc.want, vs.Spec.HTTP); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProfileMatches(t *testing.T) {
	uri := func(re string) *StringMatch { return &StringMatch{Regex: re} }
	method := func(m string) *StringMatch { return &StringMatch{Exact: m} }
	tests := []struct {
		name string
		in   RequestMatch
		want []HTTPMatchRequest
		err  string
	}{
		{"path", RequestMatch{PathRegex: "/a"}, []HTTPMatchRequest{{URI: uri("/a")}}, ""},
		{"fields are ANDed", RequestMatch{PathRegex: "/a", Method: "GET"}, []HTTPMatchRequest{{URI: uri("/a"), Method: method("GET")}}, ""},
		{"any is several matches", RequestMatch{Any: []RequestMatch{{Method: "GET"}, {PathRegex: "/b"}}},
			[]HTTPMatchRequest{{Method: method("GET")}, {URI: uri("/b")}}, ""},
		{"not method", RequestMatch{Not: &RequestMatch{Method: "DELETE"}},
			[]HTTPMatchRequest{{WithoutHeaders: map[string]StringMatch{":method": {Exact: "DELETE"}}}}, ""},
		{"not any of methods", RequestMatch{Not: &RequestMatch{Any: []RequestMatch{{Method: "POST"}, {Method: "GET"}}}},
			[]HTTPMatchRequest{{WithoutHeaders: map[string]StringMatch{":method": {Regex: "GET|POST"}}}}, ""},
		{"two methods never match", RequestMatch{All: []RequestMatch{{Method: "GET"}, {Method: "POST"}}}, []HTTPMatchRequest{}, ""},
		{"a method and not it never match", RequestMatch{Method: "GET", Not: &RequestMatch{Method: "GET"}}, []HTTPMatchRequest{}, ""},
		{"a method and not another is the method", RequestMatch{Method: "GET", Not: &RequestMatch{Method: "PUT"}},
			[]HTTPMatchRequest{{Method: method("GET")}}, ""},
		{"double negation", RequestMatch{Not: &RequestMatch{Not: &RequestMatch{PathRegex: "/a"}}}, []HTTPMatchRequest{{URI: uri("/a")}}, ""},
		{"not all is any of nots", RequestMatch{Not: &RequestMatch{All: []RequestMatch{{Method: "GET"}, {Method: "HEAD"}}}},
			[]HTTPMatchRequest{
				{WithoutHeaders: map[string]StringMatch{":method": {Exact: "GET"}}},
				{WithoutHeaders: map[string]StringMatch{":method": {Exact: "HEAD"}}},
			}, ""},
		{"AND distributes over OR", RequestMatch{All: []RequestMatch{
			{Any: []RequestMatch{{Method: "GET"}, {Method: "POST"}}},
			{Any: []RequestMatch{{PathRegex: "/a"}, {PathRegex: "/b"}}},
		}}, []HTTPMatchRequest{
			{URI: uri("/a"), Method: method("GET")}, {URI: uri("/b"), Method: method("GET")},
			{URI: uri("/a"), Method: method("POST")}, {URI: uri("/b"), Method: method("POST")},
		}, ""},
		{"Linkerd's example", RequestMatch{Any: []RequestMatch{
			{All: []RequestMatch{{Method: "POST"}, {PathRegex: `/authors/\d+`}}},
			{All: []RequestMatch{{Not: &RequestMatch{Method: "DELETE"}}, {PathRegex: "/info.txt"}}},
		}}, []HTTPMatchRequest{
			{URI: uri(`/authors/\d+`), Method: method("POST")},
			{URI: uri("/info.txt"), WithoutHeaders: map[string]StringMatch{":method": {Exact: "DELETE"}}},
		}, ""},
		{"the same path twice", RequestMatch{PathRegex: "/a", All: []RequestMatch{{PathRegex: "/a"}}}, []HTTPMatchRequest{{URI: uri("/a")}}, ""},
		{"not path", RequestMatch{Not: &RequestMatch{Method: "GET", PathRegex: "/a"}}, nil, `not pathRegex "/a" cannot be expressed: RE2 has no negation`},
		{"two paths", RequestMatch{PathRegex: "/a", All: []RequestMatch{{PathRegex: "/b"}}}, nil,
			`pathRegex "/a" and pathRegex "/b" must both match: their intersection cannot be written as one RE2 match`},
		{"too many alternatives", RequestMatch{All: []RequestMatch{
			{Any: []RequestMatch{{PathRegex: "/1"}, {PathRegex: "/2"}, {PathRegex: "/3"}, {PathRegex: "/4"}, {PathRegex: "/5"}, {PathRegex: "/6"}, {PathRegex: "/7"}, {PathRegex: "/8"}}},
			{Any: []RequestMatch{{Method: "A"}, {Method: "B"}, {Method: "C"}, {Method: "D"}, {Method: "E"}, {Method: "F"}, {Method: "G"}, {Method: "H"}, {Method: "I"}}},
		}}, nil, "expands to more than 64 match alternatives"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := profileMatches(&tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("matches (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProfileRetryOn(t *testing.T) {
	status := func(lo, hi uint32) *ResponseMatch { return &ResponseMatch{Status: &StatusRange{Min: lo, Max: hi}} }
	tests := []struct {
		name    string
		classes []ResponseClass
		want    string
	}{
		{"default: 5xx", nil, "5xx"},
		{"5xx explicitly", []ResponseClass{{Condition: status(500, 599), IsFailure: true}}, "5xx"},
		{"min alone is one code", []ResponseClass{{Condition: status(429, 0), IsFailure: true}}, "5xx,retriable-status-codes,429"},
		{"max alone is one code", []ResponseClass{{Condition: status(0, 409), IsFailure: true}}, "5xx,retriable-status-codes,409"},
		{"5xx are successes: nothing to retry", []ResponseClass{{Condition: status(500, 599)}}, ""},
		{"first class wins", []ResponseClass{
			{Condition: &ResponseMatch{Any: []ResponseMatch{*status(500, 501), *status(504, 599)}}},
			{Condition: status(500, 599), IsFailure: true},
		}, "retriable-status-codes,502,503"},
		{"not and all", []ResponseClass{{Condition: &ResponseMatch{All: []ResponseMatch{
			*status(400, 599), {Not: status(500, 599)}, {Not: status(404, 0)},
		}}, IsFailure: true}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := retryOn(failureCodes(tc.classes))
			if tc.name == "not and all" {
				// 4xx but 404, plus 5xx: too long to write out.
				codes := failureCodes(tc.classes)
				if len(codes) != 199 || codes[0] != 400 || codes[4] != 405 || !strings.HasPrefix(got, "5xx,retriable-status-codes,400,401,402,403,405,") {
					t.Errorf("codes %d %v..., retryOn %.60s", len(codes), codes[:5], got)
				}
				return
			}
			if got != tc.want {
				t.Errorf("retryOn %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServiceProfileVirtualService(t *testing.T) {
	sp := decodeOne(t, spHead+`  routes:
  - name: GET /books/{id}.json
    condition: {method: GET, pathRegex: '/books/[^/]*\.json'}
    isRetryable: true
  - name: PUT /books/{id}.json
    condition: {method: PUT, pathRegex: '/books/[^/]*\.json'}
    timeout: 25ms
  - name: never
    condition: {all: [{method: GET}, {method: PUT}]}
  dstOverrides:
  - {authority: books-v1.default.svc.cluster.local:7002, weight: 900m}
  - {authority: books-v2.default.svc.cluster.local:7002, weight: 100m}
  retryBudget: {retryRatio: 0.5, minRetriesPerSecond: 3, ttl: 5s}
`).(*ServiceProfile)
	books := regexpMatch(`/books/[^/]*\.json`)
	split := []HTTPRouteDestination{dst("books-v1.default", 7002, 900), dst("books-v2.default", 7002, 100)}
	off := &HTTPRetry{}
	want := []HTTPRoute{
		{Name: "GET /books/{id}.json", Match: []HTTPMatchRequest{{URI: books, Method: &StringMatch{Exact: "GET"}}},
			Route: split, Timeout: "10s", Retries: &HTTPRetry{Attempts: 3, RetryOn: "5xx"}},
		{Name: "PUT /books/{id}.json", Match: []HTTPMatchRequest{{URI: books, Method: &StringMatch{Exact: "PUT"}}},
			Route: split, Timeout: "25ms", Retries: off},
		{Name: "unmatched", Route: split, Retries: off},
	}
	vs := sp.VirtualService(nil)
	if diff := cmp.Diff(want, vs.Spec.HTTP); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"books.default"}, vs.Spec.Hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	// A TrafficSplit of the host replaces the dstOverrides, as in Linkerd.
	ts := decodeOne(t, tsHead+"  service: books\n  backends: [{service: books-v3, weight: 1}]\n").(*TrafficSplit)
	vs = sp.VirtualService(ts)
	for _, r := range vs.Spec.HTTP {
		if diff := cmp.Diff([]HTTPRouteDestination{dst("books-v3.default", 0, 1)}, r.Route); diff != "" {
			t.Errorf("%s: route with a split (-want +got):\n%s", r.Name, diff)
		}
	}
	dr := sp.DestinationRule()
	pct := 50.0
	if diff := cmp.Diff(&RetryBudget{Percent: &pct, MinRetryConcurrency: 3, BudgetInterval: "5s"}, dr.Spec.TrafficPolicy.RetryBudget); diff != "" || dr.Spec.Host != "books.default" {
		t.Errorf("retry budget of %s (-want +got):\n%s", dr.Spec.Host, diff)
	}
}

func regexpMatch(re string) *StringMatch { return &StringMatch{Regex: re} }
