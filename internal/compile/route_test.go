package compile

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

func ptr[T any](v T) *T { return &v }

func TestRetryPolicy(t *testing.T) {
	tests := []struct {
		name           string
		in             *model.HTTPRetry
		consistentHash bool
		want           string // retry_on | num_retries | codes | per_try | backoff | previous_hosts | idempotent only; "" for no policy
	}{
		{"istio default", nil, false, "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes|2|[503]|<nil>|25ms|true|true"},
		{"default on a hashed destination", nil, true, "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes|2|[503]|<nil>|25ms|false|true"},
		{"attempts 0 disables", &model.HTTPRetry{Attempts: 0}, false, ""},
		{"attempts only keeps the default conditions", &model.HTTPRetry{Attempts: 5}, false, "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes|5|[503]|<nil>|25ms|true|false"},
		{
			"conditions and codes", &model.HTTPRetry{Attempts: 3, RetryOn: "5xx, reset,429", PerTryTimeout: "1.5s", Backoff: "10ms"}, false,
			"5xx,reset,retriable-status-codes|3|[429]|1.5s|10ms|true|false",
		},
		{
			"retriable-status-codes given once", &model.HTTPRetry{Attempts: 1, RetryOn: "retriable-status-codes,502"}, false,
			"retriable-status-codes|1|[502]|<nil>|25ms|true|false",
		},
		{"conditions without codes clear the default 503", &model.HTTPRetry{Attempts: 2, RetryOn: "gateway-error"}, false, "gateway-error|2|[]|<nil>|25ms|true|false"},
		{"ignore previous hosts false", &model.HTTPRetry{Attempts: 2, RetryIgnorePreviousHosts: ptr(false)}, false, "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes|2|[503]|<nil>|25ms|false|false"},
		{"ignore previous hosts true on a hashed destination", &model.HTTPRetry{Attempts: 2, RetryIgnorePreviousHosts: ptr(true)}, true, "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes|2|[503]|<nil>|25ms|true|false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := retryPolicy(tc.in, tc.consistentHash)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if p != nil {
				perTry := "<nil>"
				if p.PerTryTimeout != nil {
					perTry = p.PerTryTimeout.AsDuration().String()
				}
				codes := "["
				for i, c := range p.RetriableStatusCodes {
					if i > 0 {
						codes += " "
					}
					codes += itoa(c)
				}
				codes += "]"
				prev := len(p.RetryHostPredicate) == 1 && p.RetryHostPredicate[0].Name == previousHostsPredicate
				idempotent := len(p.RetriableRequestHeaders) == 1 && p.RetriableRequestHeaders[0].GetName() == ":method" &&
					p.RetriableRequestHeaders[0].GetStringMatch().GetSafeRegex().GetRegex() == idempotentMethods
				got = strings.Join([]string{p.RetryOn, itoa(p.NumRetries.GetValue()), codes, perTry,
					p.RetryBackOff.GetBaseInterval().AsDuration().String(), boolStr(prev), boolStr(idempotent)}, "|")
				if p.HostSelectionRetryMaxAttempts != 5 {
					t.Errorf("host_selection_retry_max_attempts = %d, want 5", p.HostSelectionRetryMaxAttempts)
				}
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestHTTPFault(t *testing.T) {
	million := func(n uint32) *typev3.FractionalPercent {
		return &typev3.FractionalPercent{Numerator: n, Denominator: typev3.FractionalPercent_MILLION}
	}
	tests := []struct {
		name string
		in   *model.HTTPFaultInjection
		want *faultv3.HTTPFault
	}{
		{"none", nil, nil},
		{
			"delay with percentage",
			&model.HTTPFaultInjection{Delay: &model.FaultDelay{FixedDelay: "5s", Percentage: &model.Percent{Value: 0.1}}},
			&faultv3.HTTPFault{Delay: &commonfaultv3.FaultDelay{
				FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: duration(5e9)}, Percentage: million(1000),
			}},
		},
		{
			"delay with the deprecated percent; no percentage is 0",
			&model.HTTPFaultInjection{
				Delay: &model.FaultDelay{FixedDelay: "1s", Percent: 25},
				Abort: &model.FaultAbort{HTTPStatus: 503},
			},
			&faultv3.HTTPFault{
				Delay: &commonfaultv3.FaultDelay{FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: duration(1e9)}, Percentage: million(250000)},
				Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: million(0)},
			},
		},
		{
			"grpc abort",
			&model.HTTPFaultInjection{Abort: &model.FaultAbort{GRPCStatus: "RESOURCE_EXHAUSTED", Percentage: &model.Percent{Value: 100}}},
			&faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 8}, Percentage: million(1000000)}},
		},
		{"unknown grpc status and no delay", &model.HTTPFaultInjection{Abort: &model.FaultAbort{GRPCStatus: "NOPE"}}, nil},
		{"exponential delay only", &model.HTTPFaultInjection{Delay: &model.FaultDelay{ExponentialDelay: "1s"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, httpFault(tc.in), protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPerMillion(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want uint32
	}{{0, 0}, {0.0001, 1}, {0.1, 1000}, {12.5, 125000}, {33.33, 333300}, {100, 1000000}, {150, 1000000}, {-1, 0}} {
		if got := perMillion(tc.in).GetNumerator(); got != tc.want {
			t.Errorf("perMillion(%g) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestMirrorFraction(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p          *model.Percent
		deprecated *uint32
		want       int64 // -1: no mirroring
	}{
		{"default 100%", nil, nil, 1000000},
		{"percentage", &model.Percent{Value: 2.5}, nil, 25000},
		{"percentage 0 disables", &model.Percent{Value: 0}, nil, -1},
		{"deprecated percent", nil, ptr(uint32(30)), 300000},
		{"deprecated 0 disables", nil, ptr(uint32(0)), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := int64(-1)
			if f := mirrorFraction(tc.p, tc.deprecated); f != nil {
				got = int64(f.GetNumerator())
				if f.GetDenominator() != typev3.FractionalPercent_MILLION {
					t.Errorf("denominator %v", f.GetDenominator())
				}
			}
			if got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestRedirectAction(t *testing.T) {
	tests := []struct {
		name string
		in   model.HTTPRedirect
		want *routev3.RedirectAction
	}{
		{"default code", model.HTTPRedirect{URI: "/x"}, &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/x"}, ResponseCode: routev3.RedirectAction_MOVED_PERMANENTLY,
		}},
		{"302 and host", model.HTTPRedirect{Authority: "a.example", RedirectCode: 302}, &routev3.RedirectAction{
			HostRedirect: "a.example", ResponseCode: routev3.RedirectAction_FOUND,
		}},
		{"explicit port", model.HTTPRedirect{Authority: "a", Port: 8443, RedirectCode: 307}, &routev3.RedirectAction{
			HostRedirect: "a", PortRedirect: 8443, ResponseCode: routev3.RedirectAction_TEMPORARY_REDIRECT,
		}},
		{"http default port left out", model.HTTPRedirect{Authority: "a", Port: 80}, &routev3.RedirectAction{HostRedirect: "a"}},
		{"https port 80 kept", model.HTTPRedirect{Scheme: "https", Port: 80, RedirectCode: 303}, &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "https"}, PortRedirect: 80, ResponseCode: routev3.RedirectAction_SEE_OTHER,
		}},
		{"request port", model.HTTPRedirect{URI: "/y", DerivePort: "FROM_REQUEST_PORT", RedirectCode: 308}, &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/y"}, PortRedirect: 9080, ResponseCode: routev3.RedirectAction_PERMANENT_REDIRECT,
		}},
		{"protocol default port", model.HTTPRedirect{Authority: "a", DerivePort: "FROM_PROTOCOL_DEFAULT"}, &routev3.RedirectAction{HostRedirect: "a"}},
		{"code envoy cannot send", model.HTTPRedirect{URI: "/z", RedirectCode: 300}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, redirectAction(&tc.in, 9080), protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDirectResponseAction(t *testing.T) {
	tests := []struct {
		name string
		in   model.HTTPDirectResponse
		want *routev3.DirectResponseAction
	}{
		{"status only", model.HTTPDirectResponse{Status: 204}, &routev3.DirectResponseAction{Status: 204}},
		{"string", model.HTTPDirectResponse{Status: 503, Body: &model.HTTPBody{String: "down"}}, &routev3.DirectResponseAction{
			Status: 503, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "down"}},
		}},
		{"base64 bytes", model.HTTPDirectResponse{Status: 200, Body: &model.HTTPBody{Bytes: "AAEC/w=="}}, &routev3.DirectResponseAction{
			Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte{0, 1, 2, 255}}},
		}},
		{"unpadded url-safe bytes", model.HTTPDirectResponse{Status: 200, Body: &model.HTTPBody{Bytes: "AAEC_w"}}, &routev3.DirectResponseAction{
			Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte{0, 1, 2, 255}}},
		}},
		{"bytes that do not decode", model.HTTPDirectResponse{Status: 200, Body: &model.HTTPBody{Bytes: "!!"}}, nil},
		{"body over 1 MiB", model.HTTPDirectResponse{Status: 200, Body: &model.HTTPBody{String: strings.Repeat("x", 1<<20+1)}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, directResponseAction(&tc.in), protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestTranslateHeaders(t *testing.T) {
	h := &model.Headers{
		Request: &model.HeaderOperations{
			Set:    map[string]string{"b": "2", "a": "1", "Host": "set.example", ":path": "/nope"},
			Add:    map[string]string{":authority": "add.example", "c": "3"},
			Remove: []string{"x", "host", ":method", "y"},
		},
		Response: &model.HeaderOperations{Add: map[string]string{"z": "9"}, Set: map[string]string{"host": "h"}},
	}
	ops := translateHeaders(h)
	opt := func(k, v string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a}
	}
	set, add := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	want := []*corev3.HeaderValueOption{opt("a", "1", set), opt("b", "2", set), opt("c", "3", add)}
	if diff := cmp.Diff(want, ops.requestAdd, protocmp.Transform()); diff != "" {
		t.Errorf("request add (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"x", "y"}, ops.requestRemove); diff != "" {
		t.Errorf("request remove (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*corev3.HeaderValueOption{opt("z", "9", add)}, ops.responseAdd, protocmp.Transform()); diff != "" {
		t.Errorf("response add (-want +got):\n%s", diff)
	}
	if ops.authority != "set.example" {
		t.Errorf("authority %q, want the set one to win over the add", ops.authority)
	}
}

func TestRouteMatchPseudoAndQuery(t *testing.T) {
	m := &model.HTTPMatchRequest{
		URI:            &model.StringMatch{Regex: "/a/.*"},
		IgnoreURICase:  true,
		Method:         &model.StringMatch{Regex: "GET|HEAD"},
		Headers:        map[string]model.StringMatch{"b": {}, "a": {Exact: "1"}},
		WithoutHeaders: map[string]model.StringMatch{"ab": {Regex: ".+"}},
		QueryParams:    map[string]model.StringMatch{"q": {Prefix: "x"}},
	}
	got := routeMatch(m)
	var names []string
	for _, h := range got.GetHeaders() {
		names = append(names, h.GetName())
	}
	if diff := cmp.Diff([]string{"a", "ab", "b", ":method"}, names); diff != "" {
		t.Errorf("header order (-want +got):\n%s", diff)
	}
	if w := got.GetHeaders()[1]; !w.GetInvertMatch() || !w.GetTreatMissingHeaderAsEmpty() {
		t.Errorf("withoutHeaders value matcher = %v, want inverted and missing-as-empty", w)
	}
	if got.GetCaseSensitive().GetValue() || got.GetSafeRegex().GetRegex() != "/a/.*" {
		t.Errorf("path match = %v", got)
	}
	if q := got.GetQueryParameters(); len(q) != 1 || q[0].GetStringMatch().GetPrefix() != "x" {
		t.Errorf("query parameters = %v", q)
	}
	if rm := routeMatch(nil); rm.GetPrefix() != "/" || rm.GetCaseSensitive() != nil {
		t.Errorf("nil match = %v, want prefix /", rm)
	}
}

// compileVS compiles frontend-v1 of vs-mesh.yaml with one more document.
func compileVS(t *testing.T, doc string) *Index {
	t.Helper()
	in := loadInput(t, "vs-mesh.yaml")
	objs, err := model.Decode([]byte(doc), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *model.VirtualService:
			in.VirtualServices = append(in.VirtualServices, o)
		case *model.DestinationRule:
			in.DestinationRules = append(in.DestinationRules, o)
		}
	}
	return NewIndex(in)
}

func backendRoutes(t *testing.T, ix *Index, workload string) []*routev3.Route {
	t.Helper()
	set, _, err := ix.Compile(workload)
	if err != nil {
		t.Fatal(err)
	}
	return set.Routes["outbound|8080|backend"].GetVirtualHosts()[0].GetRoutes()
}

func TestDefaultRouteWhenNoRuleApplies(t *testing.T) {
	tests := []struct {
		name, doc  string
		wantRoutes []string // route names of outbound|8080|backend for frontend-v1
	}{
		{
			"gateway-only VirtualService does not apply to sidecars",
			"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b}\nspec:\n  hosts: [backend]\n  gateways: [edge]\n" +
				"  http:\n  - route:\n    - destination: {host: backend, subset: v2}\n",
			[]string{"default"},
		},
		{
			"no match selects this proxy",
			"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b}\nspec:\n  hosts: [backend]\n" +
				"  http:\n  - match:\n    - sourceLabels: {version: v9}\n    - port: 8081\n    route:\n    - destination: {host: backend, subset: v2}\n",
			[]string{"default"},
		},
		{
			"tcp-only VirtualService leaves HTTP ports alone",
			"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b}\nspec:\n  hosts: [backend]\n" +
				"  tcp:\n  - route:\n    - destination: {host: backend, subset: v2}\n",
			[]string{"default"},
		},
		{
			"a rule that applies replaces the default route; no match → 404",
			"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b}\nspec:\n  hosts: [backend]\n" +
				"  http:\n  - match:\n    - sourceLabels: {version: v9}\n    - uri: {prefix: /x}\n    route:\n    - destination: {host: backend, subset: v2}\n",
			[]string{"b.http[0].match[1]"},
		},
		{
			"delegate rules are skipped",
			"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b}\nspec:\n  hosts: [backend]\n" +
				"  http:\n  - delegate: {name: other}\n  - route:\n    - destination: {host: backend, subset: v2}\n",
			[]string{"b.http[1]"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range backendRoutes(t, compileVS(t, tc.doc), "frontend-v1") {
				got = append(got, r.GetName())
			}
			if diff := cmp.Diff(tc.wantRoutes, got); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLargeDirectResponseRaisesTheBodyLimit(t *testing.T) {
	for _, tc := range []struct {
		size int
		want *wrapperspb.UInt32Value
	}{{4096, nil}, {4097, wrapperspb.UInt32(1 << 20)}} {
		doc := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b}\nspec:\n  hosts: [backend]\n" +
			"  http:\n  - directResponse:\n      status: 200\n      body: {string: " + strings.Repeat("x", tc.size) + "}\n"
		set, _, err := compileVS(t, doc).Compile("frontend-v1")
		if err != nil {
			t.Fatal(err)
		}
		got := set.Routes["outbound|8080|backend"].GetMaxDirectResponseBodySizeBytes()
		if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
			t.Errorf("body of %d bytes: max_direct_response_body_size_bytes (-want +got):\n%s", tc.size, diff)
		}
	}
}

func TestFaultFilterOnlyWhereUsed(t *testing.T) {
	set := compileCase(t, "frontend-v1", "vs-mesh.yaml", "vs-fault.yaml")
	for listener, want := range map[string][]string{
		"outbound|8080|backend": {faultFilter, routerFilter},
		"outbound|8081|backend": {routerFilter},
		"outbound|9090|stars":   {faultFilter, routerFilter},
	} {
		var hcm hcmv3.HttpConnectionManager
		if err := set.Listeners[listener].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range hcm.GetHttpFilters() {
			got = append(got, f.GetName())
			if f.GetName() == faultFilter {
				var cfg faultv3.HTTPFault
				if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
					t.Fatal(err)
				}
				if cfg.GetDelay() != nil || cfg.GetAbort() != nil {
					t.Errorf("%s: listener-level fault config %v, want none (routes carry theirs)", listener, &cfg)
				}
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s filters (-want +got):\n%s", listener, diff)
		}
	}
}

func TestMirrorTargetsAreDependencies(t *testing.T) {
	in := loadInput(t, "vs-mesh.yaml", "vs-mirror.yaml")
	set, deps, err := NewIndex(in).Compile("frontend-v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := set.Clusters["outbound|7070||audit"]; !ok {
		t.Error("no cluster for the mirror target audit")
	}
	found := false
	for _, d := range deps {
		found = found || d.Name == "audit"
	}
	if !found {
		t.Errorf("deps %v lack audit, the mirror target", deps)
	}
}
