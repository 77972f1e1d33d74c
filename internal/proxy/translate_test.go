package proxy

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// validSet is a complete contract-shaped set for one sidecar: an inbound
// HTTP listener, an outbound HTTP listener with RDS, an outbound TCP
// listener, and their clusters and endpoints.
func validSet(t testing.TB) *resources.Set {
	t.Helper()
	set := resources.NewSet()
	inRC := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	set.Listeners[inName] = proxytest.Listener(t, inName, "127.0.0.1:0", proxytest.HCM(t, "", inRC, true), proxytest.DownstreamTLS(t, "h2", "http/1.1"))
	set.Clusters[inName] = proxytest.StaticCluster(t, inName, "127.0.0.1:9", true)
	set.Listeners[outName] = proxytest.Listener(t, outName, "127.0.0.1:1", proxytest.HCM(t, outName, nil, false), nil)
	set.Routes[outName] = proxytest.RouteConfig(outName,
		&routev3.Route{
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/api/v[0-9]+/.*"}},
				Headers: []*routev3.HeaderMatcher{{
					Name:                 "x-canary",
					HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "1"}}},
				}},
			},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				Timeout: durationpb.New(3 * time.Second),
				ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
					{Name: outCluster, Weight: wrapperspb.UInt32(90)},
					{Name: "outbound|8080|v2|server", Weight: wrapperspb.UInt32(10)},
				}}},
			}},
		},
		proxytest.PrefixRoute("/", outCluster, 0),
	)
	set.Clusters[outCluster] = proxytest.EDSCluster(t, outCluster, []string{serverID}, true, "h2")
	set.Endpoints[outCluster] = proxytest.CLA(t, outCluster, []string{"127.0.0.1:2", "127.0.0.1:3"}, "127.0.0.1:3")
	set.Listeners["outbound|9000|db"] = proxytest.Listener(t, "outbound|9000|db", "127.0.0.1:4", proxytest.TCPProxy(t, "outbound|9000||db"), nil)
	return set
}

func TestBuildValid(t *testing.T) {
	p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
	cfg, err := p.build(validSet(t), nil)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	in := cfg.listeners[inName]
	if in.kind != kindHTTP || in.tls == nil || !in.setXFCC || in.inlineRoutes == nil {
		t.Errorf("inbound listener = %+v", in)
	}
	if diff := cmp.Diff([]string{"h2", "http/1.1"}, in.tls.alpn); diff != "" {
		t.Errorf("inbound alpn (-want +got):\n%s", diff)
	}
	out := cfg.listeners[outName]
	if out.rdsName != outName || out.tls != nil {
		t.Errorf("outbound listener = %+v", out)
	}
	tcp := cfg.listeners["outbound|9000|db"]
	if tcp.kind != kindTCP || tcp.tcpCluster != "outbound|9000||db" || tcp.idleTimeout != time.Hour {
		t.Errorf("tcp listener = %+v", tcp)
	}
	c := cfg.clusters[outCluster]
	if !c.http2 || c.tls == nil || c.connectTimeout != 2*time.Second || c.up.scheme != "https" {
		t.Errorf("outbound cluster = %+v", c)
	}
	if diff := cmp.Diff([]string{"127.0.0.1:2"}, c.endpoints); diff != "" {
		t.Errorf("healthy endpoints (-want +got):\n%s", diff)
	}
	if got := c.tls.allowed[0].String(); got != serverID {
		t.Errorf("allowed SAN = %s", got)
	}
	rt := cfg.routes[outName].routes[0]
	if rt.weighted == nil || rt.weighted.total != 100 || rt.timeout != 3*time.Second {
		t.Errorf("weighted route = %+v", rt)
	}
	if ic := cfg.clusters[inName]; !ic.http2 || ic.tls != nil || ic.up.scheme != "http" {
		t.Errorf("inbound cluster = %+v", ic)
	}
}

func TestBuildInvalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, s *resources.Set)
		want   []string // substrings of the error
	}{
		{"bad regex", func(t *testing.T, s *resources.Set) {
			s.Routes[outName].VirtualHosts[0].Routes[0].Match.PathSpecifier = regexPath("a(b")
		}, []string{`route configuration "outbound|8080|server"`, "routes[0].match.safe_regex.regex"}},
		{"bad header regex", func(t *testing.T, s *resources.Set) {
			s.Routes[outName].VirtualHosts[0].Routes[0].Match.Headers[0].HeaderMatchSpecifier = &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "[z-a]"}}
		}, []string{`route configuration "outbound|8080|server"`, "headers[0].safe_regex_match.regex"}},
		{"unknown lb policy", func(t *testing.T, s *resources.Set) {
			s.Clusters[outCluster].LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		}, []string{`cluster "outbound|8080||server"`, "lb_policy", "CLUSTER_PROVIDED"}},
		{"unknown network filter", func(t *testing.T, s *resources.Set) {
			s.Listeners[outName].FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.Any(t, &clusterv3.Cluster{})}
		}, []string{`listener "outbound|8080|server"`, "filters[0]", "unknown filter type"}},
		{"unknown http filter", func(t *testing.T, s *resources.Set) {
			hcm := proxytest.HCM(t, outName, nil, false)
			var h hcmv3.HttpConnectionManager
			if err := hcm.GetTypedConfig().UnmarshalTo(&h); err != nil {
				t.Fatal(err)
			}
			h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.fault", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: proxytest.Any(t, &routev3.Route{})}}}, h.HttpFilters...)
			s.Listeners[outName].FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.Any(t, &h)}
		}, []string{`listener "outbound|8080|server"`, "http_filters[0]", "envoy.filters.http.fault"}},
		{"weights sum to zero", func(t *testing.T, s *resources.Set) {
			wc := s.Routes[outName].VirtualHosts[0].Routes[0].GetRoute().GetWeightedClusters()
			for _, c := range wc.Clusters {
				c.Weight = wrapperspb.UInt32(0)
			}
		}, []string{`route configuration "outbound|8080|server"`, "weighted_clusters.clusters: weights sum to 0"}},
		{"total weight mismatch", func(t *testing.T, s *resources.Set) {
			//nolint:staticcheck // deprecated field on purpose.
			s.Routes[outName].VirtualHosts[0].Routes[0].GetRoute().GetWeightedClusters().TotalWeight = wrapperspb.UInt32(110)
		}, []string{"weighted_clusters.total_weight: 110, but weights sum to 100"}},
		{"client cert not required", func(t *testing.T, s *resources.Set) {
			s.Listeners[inName].FilterChains[0].TransportSocket = proxytest.UpstreamTLS(t, nil)
		}, []string{`listener "inbound|8080"`, "transport_socket.typed_config"}},
		{"non-URI SAN", func(t *testing.T, s *resources.Set) {
			s.Clusters[outCluster].TransportSocket = proxytest.UpstreamTLS(t, []string{"not a spiffe id"})
		}, []string{`cluster "outbound|8080||server"`, "match_typed_subject_alt_names[0].matcher.exact"}},
		{"duplicate address", func(t *testing.T, s *resources.Set) {
			s.Listeners[outName].Address = proxytest.Addr(t, "127.0.0.1:4")
		}, []string{"address: 127.0.0.1:4 already used"}},
		{"name mismatch", func(t *testing.T, s *resources.Set) {
			s.Clusters["other"] = s.Clusters[inName]
		}, []string{`cluster "other": name`}},
		{"endpoint without port", func(t *testing.T, s *resources.Set) {
			s.Endpoints[outCluster].Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().PortSpecifier = nil
		}, []string{`cluster load assignment "outbound|8080||server"`, "port_value"}},
		{"unsupported route action", func(t *testing.T, s *resources.Set) {
			s.Routes[outName].VirtualHosts[0].Routes[1].Action = &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}}
		}, []string{"routes[1].action"}},
		{"circuit breakers", func(t *testing.T, s *resources.Set) {
			s.Clusters[outCluster].CircuitBreakers = &clusterv3.CircuitBreakers{PerHostThresholds: []*clusterv3.CircuitBreakers_Thresholds{{}}}
		}, []string{"circuit_breakers.per_host_thresholds"}},
		{"two virtual hosts", func(t *testing.T, s *resources.Set) {
			vh := s.Routes[outName].VirtualHosts
			s.Routes[outName].VirtualHosts = append(vh, vh[0])
		}, []string{"virtual_hosts: 2 virtual hosts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
			good := validSet(t)
			for name, l := range good.Listeners {
				l.Address = proxytest.Addr(t, proxytest.FreeAddr(t))
				good.Listeners[name] = l
			}
			if err := p.Update(good); err != nil {
				t.Fatalf("valid Update: %v", err)
			}
			before, err := p.ConfigDump()
			if err != nil {
				t.Fatal(err)
			}
			bad := validSet(t)
			tt.mutate(t, bad)
			err = p.Update(bad)
			if err == nil {
				t.Fatal("Update succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			after, err := p.ConfigDump()
			if err != nil {
				t.Fatal(err)
			}
			if string(before) != string(after) {
				t.Error("a rejected update changed the applied config")
			}
		})
	}
}
