package proxytest

import (
	"net"
	"strconv"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Any packs m, failing the test on error.
func Any(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatalf("anypb: %v", err)
	}
	return a
}

// Addr returns an Envoy socket address for host:port.
func Addr(t testing.TB, hostport string) *corev3.Address {
	t.Helper()
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("address %q: %v", hostport, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("port %q: %v", port, err)
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func commonTLS(alpn []string) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsParams: &tlsv3.TlsParameters{
			TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
			TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
		},
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default"}},
		AlpnProtocols:                  alpn,
	}
}

// DownstreamTLS is the inbound transport socket of the contract.
func DownstreamTLS(t testing.TB, alpn ...string) *corev3.TransportSocket {
	t.Helper()
	c := commonTLS(alpn)
	c.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
		ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"},
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: Any(t, &tlsv3.DownstreamTlsContext{CommonTlsContext: c, RequireClientCertificate: wrapperspb.Bool(true)}),
	}}
}

// UpstreamTLS is the outbound cluster transport socket: allowed server
// SPIFFE IDs (secure naming) and ALPN.
func UpstreamTLS(t testing.TB, allowed []string, alpn ...string) *corev3.TransportSocket {
	t.Helper()
	var sans []*tlsv3.SubjectAltNameMatcher
	for _, id := range allowed {
		sans = append(sans, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}},
		})
	}
	c := commonTLS(alpn)
	c.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
		CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"},
		},
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: Any(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: c}),
	}}
}

// HCM returns an http_connection_manager filter using rds (rdsName != "")
// or the inline route config rc.
func HCM(t testing.TB, rdsName string, rc *routev3.RouteConfiguration, xfcc bool) *listenerv3.Filter {
	t.Helper()
	h := &hcmv3.HttpConnectionManager{
		StatPrefix:  "http",
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: Any(t, &routerv3.Router{})}}},
	}
	if rdsName != "" {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: rdsName,
			ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		}}
	} else {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
	}
	if xfcc {
		h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
		h.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	}
	return &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: Any(t, h)}}
}

// TCPProxy returns a tcp_proxy filter to cluster.
func TCPProxy(t testing.TB, cluster string) *listenerv3.Filter {
	t.Helper()
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: Any(t, &tcpv3.TcpProxy{
		StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster},
	})}}
}

// Listener returns a listener with one filter chain.
func Listener(t testing.TB, name, addr string, f *listenerv3.Filter, ts *corev3.TransportSocket) *listenerv3.Listener {
	t.Helper()
	return &listenerv3.Listener{
		Name:         name,
		Address:      Addr(t, addr),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{f}, TransportSocket: ts}},
	}
}

// RouteConfig returns a one-virtual-host route configuration.
func RouteConfig(name string, routes ...*routev3.Route) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: name, Domains: []string{"*"}, Routes: routes,
	}}}
}

// PrefixRoute routes prefix to cluster with an optional timeout.
func PrefixRoute(prefix, cluster string, timeout time.Duration) *routev3.Route {
	a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
	if timeout > 0 {
		a.Timeout = durationpb.New(timeout)
	}
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: a},
	}
}

// HTTP2Options marks a cluster as speaking HTTP/2 to its endpoints.
func HTTP2Options(t testing.TB) map[string]*anypb.Any {
	t.Helper()
	return map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": Any(t, &httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}},
	})}
}

// CLA returns a load assignment; each address is HEALTHY unless listed in
// unhealthy.
func CLA(t testing.TB, name string, addrs []string, unhealthy ...string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	var eps []*endpointv3.LbEndpoint
	for _, a := range addrs {
		hs := corev3.HealthStatus_HEALTHY
		for _, u := range unhealthy {
			if u == a {
				hs = corev3.HealthStatus_UNHEALTHY
			}
		}
		eps = append(eps, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: Addr(t, a)}},
			HealthStatus:   hs,
		})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

// StaticCluster is the inbound cluster of the contract: one plaintext
// endpoint (the app).
func StaticCluster(t testing.TB, name, addr string, http2 bool) *clusterv3.Cluster {
	t.Helper()
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(2 * time.Second),
		LoadAssignment:       CLA(t, name, []string{addr}),
	}
	if http2 {
		c.TypedExtensionProtocolOptions = HTTP2Options(t)
	}
	return c
}

// EDSCluster is the outbound cluster of the contract: EDS, round robin,
// mTLS with secure naming.
func EDSCluster(t testing.TB, name string, allowed []string, http2 bool, alpn ...string) *clusterv3.Cluster {
	t.Helper()
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}},
		LbPolicy:        clusterv3.Cluster_ROUND_ROBIN,
		ConnectTimeout:  durationpb.New(2 * time.Second),
		TransportSocket: UpstreamTLS(t, allowed, alpn...),
	}
	if http2 {
		c.TypedExtensionProtocolOptions = HTTP2Options(t)
	}
	return c
}
