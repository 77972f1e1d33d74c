package proxy

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

const (
	faultName = "envoy.filters.http.fault"
	rlName    = "envoy.filters.http.local_ratelimit"
)

func pct(n uint32) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: n, Denominator: typev3.FractionalPercent_HUNDRED}
}

// faultConfig is an HTTPFault: delay d for delayPct%, abort with status
// (or grpc when grpc >= 0) for abortPct%.
func faultConfig(d time.Duration, delayPct uint32, status uint32, grpc int, abortPct uint32) *faultv3.HTTPFault {
	f := &faultv3.HTTPFault{}
	if d > 0 {
		f.Delay = &faultcommonv3.FaultDelay{FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d)}, Percentage: pct(delayPct)}
	}
	switch {
	case grpc >= 0:
		f.Abort = &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(grpc)}, Percentage: pct(abortPct)}
	case status > 0:
		f.Abort = &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: status}, Percentage: pct(abortPct)}
	}
	return f
}

// rateLimit is a LocalRateLimit with the x-ratelimit headers, enabled and
// enforced.
func rateLimit(maxTokens, perFill uint32, interval time.Duration) *localratelimitv3.LocalRateLimit {
	return &localratelimitv3.LocalRateLimit{
		StatPrefix:              "rl",
		TokenBucket:             &typev3.TokenBucket{MaxTokens: maxTokens, TokensPerFill: wrapperspb.UInt32(perFill), FillInterval: durationpb.New(interval)},
		FilterEnabled:           &corev3.RuntimeFractionalPercent{DefaultValue: pct(100), RuntimeKey: "rl_enabled"},
		FilterEnforced:          &corev3.RuntimeFractionalPercent{DefaultValue: pct(100), RuntimeKey: "rl_enforced"},
		EnableXRatelimitHeaders: commonratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03,
	}
}

// httpFilter returns an HCM http filter entry.
func httpFilterEntry(t testing.TB, name string, m proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: proxytest.Any(t, m)}}
}

// hcmWith returns an RDS http_connection_manager with filters before the router.
func hcmWith(t testing.TB, rdsName string, filters ...*hcmv3.HttpFilter) *listenerv3.Filter {
	t.Helper()
	f := proxytest.HCM(t, rdsName, nil, false)
	var h hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	h.HttpFilters = append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: proxytest.Any(t, &routerv3.Router{})}})
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.Any(t, &h)}
	return f
}

func perFilter(t testing.TB, kv ...any) map[string]*anypb.Any {
	m := map[string]*anypb.Any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = proxytest.Any(t, kv[i+1].(proto.Message))
	}
	return m
}

func TestTranslateRouteFeatures(t *testing.T) {
	set := validSet(t)
	set.Listeners[outName] = proxytest.Listener(t, outName, "127.0.0.1:1", hcmWith(t, outName,
		httpFilterEntry(t, faultName, &faultv3.HTTPFault{}), httpFilterEntry(t, rlName, &localratelimitv3.LocalRateLimit{StatPrefix: "rl"})), nil)
	rc := set.Routes[outName]
	vh := rc.VirtualHosts[0]
	vh.TypedPerFilterConfig = perFilter(t, rlName, rateLimit(10, 10, time.Second))
	vh.ResponseHeadersToAdd = []*corev3.HeaderValueOption{hvo("x-vh", "1", overwriteOrAdd)}
	rc.RequestHeadersToRemove = []string{"x-internal"}
	vh.Routes = append([]*routev3.Route{
		{Name: "direct", Match: prefixMatch("/direct"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 418, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "teapot"}}}}},
		{Name: "redirect", Match: prefixMatch("/redirect"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			HostRedirect: "new", ResponseCode: routev3.RedirectAction_PERMANENT_REDIRECT}}},
		{Name: "full", Match: prefixMatch("/full"),
			TypedPerFilterConfig: perFilter(t, faultName, faultConfig(time.Second, 50, 503, -1, 10), rlName, rateLimit(1, 1, time.Minute)),
			RequestHeadersToAdd:  []*corev3.HeaderValueOption{hvo("x-route", "r", appendOrAdd)},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier:      &routev3.RouteAction_Cluster{Cluster: outCluster},
				PrefixRewrite:         "/v2/",
				HostRewriteSpecifier:  &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "backend:9080"},
				RequestMirrorPolicies: []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow", RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 250000, Denominator: typev3.FractionalPercent_MILLION}}}},
			}}},
	}, vh.Routes...)
	p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
	cfg, err := p.build(set, nil)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	lc := cfg.listeners[outName]
	if len(lc.filters.chain) != 2 || lc.filters.chain[0].kind != filterFault || lc.filters.chain[1].kind != filterLocalRateLimit ||
		lc.filters.chain[0].fault != nil || lc.filters.chain[1].limit != nil {
		t.Errorf("listener filters = %+v", lc.filters.chain)
	}
	routes := cfg.routes[outName].routes
	if d := routes[0].local; d == nil || d.code != 418 || d.body != "teapot" || d.redirect != nil {
		t.Errorf("direct response = %+v", d)
	}
	if r := routes[1].local; r == nil || r.code != 308 || r.redirect == nil || r.redirect.host != "new" {
		t.Errorf("redirect = %+v", r)
	}
	full := routes[2]
	if full.rewrite == nil || full.rewrite.prefix != "/v2/" || full.hostRewrite == nil || full.hostRewrite.value != "backend:9080" {
		t.Errorf("rewrites = %+v %+v", full.rewrite, full.hostRewrite)
	}
	if len(full.mirrors) != 1 || full.mirrors[0].cluster != "shadow" || full.mirrors[0].fraction != (fraction{250000, 1000000}) {
		t.Errorf("mirrors = %+v", full.mirrors)
	}
	fp, lp := lc.filters.chain[0].resolve(full)
	if fp == nil || fp.delay != time.Second || fp.delayPct != (fraction{50, 100}) || fp.abortCode != 503 || fp.abortPct != (fraction{10, 100}) || lp != nil {
		t.Errorf("route fault = %+v", fp)
	}
	_, lp = lc.filters.chain[1].resolve(full)
	if lp == nil || lp.params.MaxTokens != 1 || lp.bucket == nil || !lp.enabled || !lp.enforced || !lp.headers {
		t.Errorf("route rate limit = %+v", lp)
	}
	_, vhLimit := lc.filters.chain[1].resolve(routes[3])
	if vhLimit == nil || vhLimit.params.MaxTokens != 10 || vhLimit == lp {
		t.Errorf("virtual host rate limit on a route without its own = %+v", vhLimit)
	}
	if m := full.reqHeaders; m == nil || len(m.levels) != 2 || m.levels[0].add[0].name != "X-Route" || m.levels[1].remove[0] != "X-Internal" {
		t.Errorf("request headers = %+v", m)
	}
	if m := routes[3].respHeaders; m == nil || len(m.levels) != 1 || m.levels[0].add[0].name != "X-Vh" {
		t.Errorf("inherited response headers = %+v", m)
	}

	// A new config with the same limits keeps the buckets; a changed one
	// gets a fresh bucket.
	lp.bucket.Take(time.Now())
	cfg2, err := p.build(set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, lp2 := cfg2.listeners[outName].filters.chain[1].resolve(cfg2.routes[outName].routes[2])
	if lp2.bucket != lp.bucket {
		t.Error("an unchanged limit got a new bucket on update")
	}
	set.Routes[outName].VirtualHosts[0].Routes[2].TypedPerFilterConfig = perFilter(t, rlName, rateLimit(2, 1, time.Minute))
	cfg3, err := p.build(set, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	_, lp3 := cfg3.listeners[outName].filters.chain[1].resolve(cfg3.routes[outName].routes[2])
	if lp3.bucket == lp.bucket || lp3.params.MaxTokens != 2 {
		t.Error("a changed limit kept the old bucket")
	}
}

func TestTranslateRouteFeaturesInvalid(t *testing.T) {
	route := func(s *resources.Set) *routev3.Route { return s.Routes[outName].VirtualHosts[0].Routes[1] }
	action := func(s *resources.Set) *routev3.RouteAction { return route(s).GetRoute() }
	setFilters := func(t *testing.T, s *resources.Set, filters ...*hcmv3.HttpFilter) {
		s.Listeners[outName] = proxytest.Listener(t, outName, "127.0.0.1:1", hcmWith(t, outName, filters...), nil)
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, s *resources.Set)
		want   string
	}{
		{"prefix and regex rewrite", func(t *testing.T, s *resources.Set) {
			action(s).PrefixRewrite = "/a"
			action(s).RegexRewrite = regexSubst("a", "b")
		}, "routes[1].route.prefix_rewrite, regex_rewrite: only one may be set"},
		{"bad regex rewrite", func(t *testing.T, s *resources.Set) { action(s).RegexRewrite = regexSubst("(", "b") }, "routes[1].route.regex_rewrite.pattern.regex: invalid RE2"},
		{"bad substitution", func(t *testing.T, s *resources.Set) { action(s).RegexRewrite = regexSubst("(a)", `\2`) }, "routes[1].route.regex_rewrite.substitution"},
		{"relative prefix rewrite", func(t *testing.T, s *resources.Set) { action(s).PrefixRewrite = "v2/" }, "prefix_rewrite: \"v2/\" must start with /"},
		{"auto host rewrite", func(t *testing.T, s *resources.Set) {
			action(s).HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
		}, "routes[1].route.host_rewrite_specifier"},
		{"bad host literal", func(t *testing.T, s *resources.Set) {
			action(s).HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "a b"}
		}, "routes[1].route.host_rewrite_literal"},
		{"mirror cluster header", func(t *testing.T, s *resources.Set) {
			action(s).RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{ClusterHeader: "x-c"}}
		}, "routes[1].route.request_mirror_policies[0].cluster: empty"},
		{"mirror bad fraction", func(t *testing.T, s *resources.Set) {
			action(s).RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "c",
				RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 1, Denominator: 7}}}}
		}, "request_mirror_policies[0].runtime_fraction.default_value.denominator"},
		{"route header formatter", func(t *testing.T, s *resources.Set) {
			route(s).RequestHeadersToAdd = []*corev3.HeaderValueOption{hvo("x-a", "%DOWNSTREAM_REMOTE_ADDRESS%", appendOrAdd)}
		}, "routes[1].request_headers_to_add[0].header.value"},
		{"vhost hop-by-hop", func(t *testing.T, s *resources.Set) {
			s.Routes[outName].VirtualHosts[0].ResponseHeadersToAdd = []*corev3.HeaderValueOption{hvo("transfer-encoding", "chunked", appendOrAdd)}
		}, "virtual_hosts[0].response_headers_to_add[0].header.key"},
		{"config remove pseudo", func(t *testing.T, s *resources.Set) {
			s.Routes[outName].RequestHeadersToRemove = []string{":path"}
		}, "request_headers_to_remove[0]"},
		{"weighted cluster header", func(t *testing.T, s *resources.Set) {
			s.Routes[outName].VirtualHosts[0].Routes[0].GetRoute().GetWeightedClusters().Clusters[1].ResponseHeadersToRemove = []string{"content-length"}
		}, "weighted_clusters.clusters[1].response_headers_to_remove[0]"},
		{"direct response status", func(t *testing.T, s *resources.Set) {
			route(s).Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 600}}
		}, "routes[1].direct_response.status: 600"},
		{"direct response file", func(t *testing.T, s *resources.Set) {
			route(s).Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200,
				Body: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/passwd"}}}}
		}, "routes[1].direct_response.body"},
		{"direct response too large", func(t *testing.T, s *resources.Set) {
			route(s).Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200,
				Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: strings.Repeat("x", 4097)}}}}
		}, "max_direct_response_body_size_bytes"},
		{"redirect scheme", func(t *testing.T, s *resources.Set) {
			route(s).Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
				SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "1http"}}}
		}, "routes[1].redirect.scheme_redirect"},
		{"redirect port", func(t *testing.T, s *resources.Set) {
			route(s).Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{PortRedirect: 70000}}
		}, "routes[1].redirect.port_redirect"},
		{"query matcher without name", func(t *testing.T, s *resources.Set) {
			route(s).Match.QueryParameters = []*routev3.QueryParameterMatcher{{}}
		}, "routes[1].match.query_parameters[0].name: empty"},
		{"query present false", func(t *testing.T, s *resources.Set) {
			route(s).Match.QueryParameters = []*routev3.QueryParameterMatcher{{Name: "a",
				QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: false}}}
		}, "query_parameters[0].present_match"},
		{"query bad regex", func(t *testing.T, s *resources.Set) {
			route(s).Match.QueryParameters = []*routev3.QueryParameterMatcher{queryStr("a", strMatch("regex", "[", false))}
		}, "query_parameters[0].string_match.safe_regex.regex"},
		{"unknown pseudo header", func(t *testing.T, s *resources.Set) {
			route(s).Match.Headers = []*routev3.HeaderMatcher{hdrStr(":protocol", strMatch("exact", "x", false))}
		}, "headers[0].name: pseudo-header \":protocol\""},
		{"empty contains", func(t *testing.T, s *resources.Set) {
			route(s).Match.Headers = []*routev3.HeaderMatcher{hdrStr("x", strMatch("contains", "", false))}
		}, "headers[0].string_match: empty contains"},
		{"unknown per-filter type", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, "x", &routev3.Route{})
		}, "routes[1].typed_per_filter_config[\"x\"].typed_config: filter type"},
		{"fault header delay", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, faultName, &faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{
				FaultDelaySecifier: &faultcommonv3.FaultDelay_HeaderDelay_{HeaderDelay: &faultcommonv3.FaultDelay_HeaderDelay{}}}})
		}, "typed_per_filter_config[\"envoy.filters.http.fault\"].delay.header_delay"},
		{"fault header abort", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, faultName, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{
				ErrorType: &faultv3.FaultAbort_HeaderAbort_{HeaderAbort: &faultv3.FaultAbort_HeaderAbort{}}}})
		}, "abort.header_abort"},
		{"fault abort status", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, faultName, faultConfig(0, 0, 700, -1, 100))
		}, "abort.http_status: 700"},
		{"fault grpc status", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, faultName, faultConfig(0, 0, 0, 17, 100))
		}, "abort.grpc_status: 17"},
		{"fault downstream nodes", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, faultName, &faultv3.HTTPFault{DownstreamNodes: []string{"a"}})
		}, "downstream_nodes"},
		{"fault response rate limit", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, faultName, &faultv3.HTTPFault{ResponseRateLimit: &faultcommonv3.FaultRateLimit{}})
		}, "response_rate_limit"},
		{"rate limit without bucket", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, rlName, &localratelimitv3.LocalRateLimit{StatPrefix: "x"})
		}, "token_bucket: missing"},
		{"rate limit fill interval", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, rlName, rateLimit(1, 1, 10*time.Millisecond))
		}, "token_bucket.fill_interval: 10ms, must be >= 50ms"},
		{"rate limit partial enable", func(t *testing.T, s *resources.Set) {
			rl := rateLimit(1, 1, time.Second)
			rl.FilterEnabled.DefaultValue = pct(50)
			route(s).TypedPerFilterConfig = perFilter(t, rlName, rl)
		}, "filter_enabled.default_value: 50/100: only 0% or 100%"},
		{"rate limit descriptors", func(t *testing.T, s *resources.Set) {
			rl := rateLimit(1, 1, time.Second)
			rl.LocalRateLimitPerDownstreamConnection = true
			route(s).TypedPerFilterConfig = perFilter(t, rlName, rl)
		}, "local_rate_limit_per_downstream_connection"},
		{"rate limit response header", func(t *testing.T, s *resources.Set) {
			rl := rateLimit(1, 1, time.Second)
			rl.ResponseHeadersToAdd = []*corev3.HeaderValueOption{hvo("x-limited", "%START_TIME%", appendOrAdd)}
			s.Routes[outName].VirtualHosts[0].TypedPerFilterConfig = perFilter(t, rlName, rl)
		}, "virtual_hosts[0].typed_per_filter_config[\"envoy.filters.http.local_ratelimit\"].response_headers_to_add[0]"},
		{"rate limit response header hop-by-hop", func(t *testing.T, s *resources.Set) {
			rl := rateLimit(1, 1, time.Second)
			rl.ResponseHeadersToAdd = []*corev3.HeaderValueOption{hvo("x-ok", "1", appendOrAdd), hvo("Connection", "close", overwriteOrAdd)}
			route(s).TypedPerFilterConfig = perFilter(t, rlName, rl)
		}, "response_headers_to_add[1].header.key: hop-by-hop or framing header \"Connection\""},
		{"vhost mirrors", func(t *testing.T, s *resources.Set) {
			s.Routes[outName].VirtualHosts[0].RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "c"}}
		}, "virtual_hosts[0].request_mirror_policies"},
		{"unknown http filter", func(t *testing.T, s *resources.Set) {
			setFilters(t, s, httpFilterEntry(t, "envoy.filters.http.cors", &routev3.CorsPolicy{}))
		}, "http_filters[0] (\"envoy.filters.http.cors\"): unknown filter type"},
		{"two fault filters", func(t *testing.T, s *resources.Set) {
			setFilters(t, s, httpFilterEntry(t, "f1", &faultv3.HTTPFault{}), httpFilterEntry(t, "f2", &faultv3.HTTPFault{}))
		}, "http_filters[1] (\"f2\"): a second"},
		{"listener fault invalid", func(t *testing.T, s *resources.Set) {
			setFilters(t, s, httpFilterEntry(t, faultName, faultConfig(0, 0, 99, -1, 100)))
		}, "http_filters[0] (\"envoy.filters.http.fault\").typed_config.abort.http_status: 99"},
		{"listener rate limit invalid", func(t *testing.T, s *resources.Set) {
			setFilters(t, s, httpFilterEntry(t, rlName, rateLimit(0, 1, time.Second)))
		}, "http_filters[0] (\"envoy.filters.http.local_ratelimit\").typed_config.token_bucket.max_tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Proxy{stats: newStatsRegistry()}
			set := validSet(t)
			tt.mutate(t, set)
			_, err := p.build(set, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("build error %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestTCPWeightedClusters(t *testing.T) {
	tp := func(clusters ...*tcpv3.TcpProxy_WeightedCluster_ClusterWeight) *tcpv3.TcpProxy {
		return &tcpv3.TcpProxy{StatPrefix: "t", ClusterSpecifier: &tcpv3.TcpProxy_WeightedClusters{
			WeightedClusters: &tcpv3.TcpProxy_WeightedCluster{Clusters: clusters}}}
	}
	lc := &listenerConfig{}
	if err := translateTCPProxy(tp(&tcpv3.TcpProxy_WeightedCluster_ClusterWeight{Name: "v1", Weight: 75},
		&tcpv3.TcpProxy_WeightedCluster_ClusterWeight{Name: "v2", Weight: 25}), lc); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for range 4000 {
		counts[lc.tcpClusterName()]++
	}
	// 75/25 over 4000 connections: sd 27; allow 5 sd.
	if d := counts["v1"] - 3000; d < -137 || d > 137 || counts["v1"]+counts["v2"] != 4000 {
		t.Errorf("connections per cluster = %v", counts)
	}
	for _, tt := range []struct {
		tp   *tcpv3.TcpProxy
		want string
	}{
		{tp(), "weighted_clusters.clusters: empty"},
		{tp(&tcpv3.TcpProxy_WeightedCluster_ClusterWeight{Name: "v1"}), "weighted_clusters.clusters[0].weight: 0"},
		{tp(&tcpv3.TcpProxy_WeightedCluster_ClusterWeight{Weight: 1}), "weighted_clusters.clusters[0].name: empty"},
		{&tcpv3.TcpProxy{StatPrefix: "t"}, "cluster_specifier: missing"},
	} {
		if err := translateTCPProxy(tt.tp, &listenerConfig{}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want %q", err, tt.want)
		}
	}
}
