package compile

import (
	"fmt"
	"net"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// Well-known Envoy extension names and the SDS secret names of the contract.
const (
	hcmFilter          = "envoy.filters.network.http_connection_manager"
	tcpProxyFilter     = "envoy.filters.network.tcp_proxy"
	routerFilter       = "envoy.filters.http.router"
	tlsTransportSocket = "envoy.transport_sockets.tls"
	tlsInspectorFilter = "envoy.filters.listener.tls_inspector"
	httpProtocolOpts   = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	sdsCert            = "default"
	sdsRoot            = "ROOTCA"
	alpnTCP            = "trellis-tcp"
	connectTimeout     = 10 * time.Second
)

// listenerALPN is what an inbound listener accepts for a port's protocol:
// both HTTP versions for HTTP ports (the caller's cluster decides which).
func listenerALPN(p model.Protocol) []string {
	if p.IsHTTP() {
		return []string{"h2", "http/1.1"}
	}
	return []string{alpnTCP}
}

// clusterALPN is the one protocol a calling sidecar offers: the one its
// connection pool will speak.
func clusterALPN(p model.Protocol) []string {
	switch {
	case p.IsHTTP2():
		return []string{"h2"}
	case p.IsHTTP():
		return []string{"http/1.1"}
	}
	return []string{alpnTCP}
}

// toAny packs m with a deterministic encoding (maps in key order), so equal
// configurations carry equal bytes: the xDS server finds a recompiled,
// unchanged resource by its encoding without decoding its Anys
// (internal/xds/intern.go).
func toAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("marshal %T: %w", m, err)
	}
	return a, nil
}

// socketAddress parses host:port.
func socketAddress(hostport string) (*corev3.Address, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", hostport, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("address %q: bad port: %w", hostport, err)
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(n)},
	}}}, nil
}

// adsSource is a config source that says "over the same ADS stream".
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func tls13() *tlsv3.TlsParameters {
	return &tlsv3.TlsParameters{
		TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
		TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
	}
}

// transportSocket wraps a TLS context.
func transportSocket(ctx proto.Message) (*corev3.TransportSocket, error) {
	a, err := toAny(ctx)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{Name: tlsTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

// downstreamTLS is the inbound listener's mTLS: client certificate required, TLS 1.3.
func downstreamTLS(p model.Protocol) (*corev3.TransportSocket, error) {
	return transportSocket(&tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      tls13(),
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: sdsCert}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: sdsRoot},
			},
			AlpnProtocols: listenerALPN(p),
		},
	})
}

// upstreamTLS is an outbound cluster's mTLS, accepting only the given URI SANs.
func upstreamTLS(p model.Protocol, sans []string) (*corev3.TransportSocket, error) {
	matchers := make([]*tlsv3.SubjectAltNameMatcher, len(sans))
	for i, s := range sans {
		matchers[i] = &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: exactMatcher(s),
		}
	}
	return transportSocket(&tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      tls13(),
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: sdsCert}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: matchers},
					ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: sdsRoot},
				},
			},
			AlpnProtocols: clusterALPN(p),
		},
	})
}

// http2Options are the cluster protocol options that make it speak HTTP/2;
// nil for protocols that do not need it.
func http2Options(p model.Protocol) (map[string]*anypb.Any, error) {
	if !p.IsHTTP2() {
		return nil, nil
	}
	a, err := toAny(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, err
	}
	return map[string]*anypb.Any{httpProtocolOpts: a}, nil
}

// routerFilters is the HTTP filter chain: the router alone.
func routerFilters() ([]*hcmv3.HttpFilter, error) {
	a, err := toAny(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	return []*hcmv3.HttpFilter{typedHTTPFilter(routerFilter, a)}, nil
}

func typedHTTPFilter(name string, a *anypb.Any) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
}

func typedNetworkFilter(name string, a *anypb.Any) *listenerv3.Filter {
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}
}

// normalizePaths sets the path normalization every HCM gets (ADR 002):
// RFC 3986 normalization, merged slashes, %2F and %5C decoded to "/", so
// that routes and rbac see, and the app receives, one spelling of a path.
func normalizePaths(h *hcmv3.HttpConnectionManager) *hcmv3.HttpConnectionManager {
	h.NormalizePath = wrapperspb.Bool(true)
	h.MergeSlashes = true
	h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	return h
}

// tlsInspector is the listener filter that tells TLS from plaintext by
// the first bytes (PERMISSIVE listeners).
func tlsInspector() (*listenerv3.ListenerFilter, error) {
	a, err := toAny(&tlsinspectorv3.TlsInspector{})
	if err != nil {
		return nil, err
	}
	return &listenerv3.ListenerFilter{Name: tlsInspectorFilter, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: a}}, nil
}

func duration(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
