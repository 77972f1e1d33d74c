package proxy

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

// tlsInspector is the listener filter of PERMISSIVE listeners.
func tlsInspector(t testing.TB) *listenerv3.ListenerFilter {
	t.Helper()
	return &listenerv3.ListenerFilter{Name: tlsInspectorName, ConfigType: &listenerv3.ListenerFilter_TypedConfig{
		TypedConfig: proxytest.Any(t, &tlsinspectorv3.TlsInspector{}),
	}}
}

// chainFor is a filter chain matching transport (empty: no match).
func chainFor(transport string, f *listenerv3.Filter, ts *corev3.TransportSocket) *listenerv3.FilterChain {
	fc := &listenerv3.FilterChain{Filters: []*listenerv3.Filter{f}, TransportSocket: ts}
	if transport != "" {
		fc.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: transport}
	}
	return fc
}

// permissiveListener is ADR 002's PERMISSIVE listener: tls_inspector, a TLS
// chain with tlsFilter and a plaintext chain with plainFilter.
func permissiveListener(t testing.TB, name, addr string, tlsFilter, plainFilter *listenerv3.Filter, alpn ...string) *listenerv3.Listener {
	t.Helper()
	return &listenerv3.Listener{
		Name:            name,
		Address:         proxytest.Addr(t, addr),
		ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector(t)},
		FilterChains: []*listenerv3.FilterChain{
			chainFor(transportTLS, tlsFilter, proxytest.DownstreamTLS(t, alpn...)),
			chainFor(transportRaw, plainFilter, nil),
		},
	}
}

// withSniffTimeout sets the listener's listener_filters_timeout.
func withSniffTimeout(l *listenerv3.Listener, d time.Duration) *listenerv3.Listener {
	l.ListenerFiltersTimeout = durationpb.New(d)
	return l
}
