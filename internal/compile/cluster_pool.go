package compile

import (
	"math"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// maxThreshold is the circuit breaker limit Istio writes for every limit a
// connection pool leaves unset ("Default 2^32-1" in Istio's API).
const maxThreshold = math.MaxUint32

// circuitBreakers translates a connection pool's limits into
// circuit_breakers.thresholds[0], as Istio's applyConnectionPool:
// tcp.maxConnections → max_connections, http.http1MaxPendingRequests →
// max_pending_requests, http.http2MaxRequests → max_requests,
// http.maxRetries → max_retries; a limit left unset (or 0) is 2^32-1.
// Without a connection pool there are no thresholds (Envoy's defaults).
func circuitBreakers(cp *model.ConnectionPoolSettings) *clusterv3.CircuitBreakers {
	if cp == nil {
		return nil
	}
	limit := func(n int32) *wrapperspb.UInt32Value {
		if n > 0 {
			return wrapperspb.UInt32(uint32(n))
		}
		return wrapperspb.UInt32(maxThreshold)
	}
	var h model.HTTPSettings
	if cp.HTTP != nil {
		h = *cp.HTTP
	}
	var maxConns int32
	if cp.TCP != nil {
		maxConns = cp.TCP.MaxConnections
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxConnections:     limit(maxConns),
		MaxPendingRequests: limit(h.HTTP1MaxPendingRequests),
		MaxRequests:        limit(h.HTTP2MaxRequests),
		MaxRetries:         limit(h.MaxRetries),
	}}}
}

// clusterConnectTimeout is tcp.connectTimeout, or the mesh default (10s).
func clusterConnectTimeout(cp *model.ConnectionPoolSettings) (*durationpb.Duration, error) {
	if cp == nil || cp.TCP == nil || cp.TCP.ConnectTimeout == "" {
		return duration(connectTimeout), nil
	}
	return optionalDuration("connectionPool.tcp.connectTimeout", cp.TCP.ConnectTimeout)
}

// upstreamProtocol is the protocol the cluster speaks to the peer sidecar:
// the port's, or HTTP/2 for an HTTP/1.1 port whose pool asks for
// h2UpgradePolicy UPGRADE (the peer's inbound listener accepts h2 and
// still speaks HTTP/1.1 to its app). As in Istio, useClientProtocol
// prevents the upgrade; DEFAULT is the mesh default, DO_NOT_UPGRADE.
func upstreamProtocol(p model.Protocol, cp *model.ConnectionPoolSettings) model.Protocol {
	if p != model.ProtocolHTTP || cp == nil || cp.HTTP == nil {
		return p
	}
	if cp.HTTP.H2UpgradePolicy == "UPGRADE" && !cp.HTTP.UseClientProtocol {
		return model.ProtocolHTTP2
	}
	return p
}

// protocolOptions are the cluster's typed_extension_protocol_options: an
// HttpProtocolOptions with the explicit HTTP version (HTTP/2 for h2
// protocols, HTTP/1.1 otherwise) and the pool's common options. An
// HTTP/1.1 cluster without common options and a TCP cluster have none.
func protocolOptions(p model.Protocol, cp *model.ConnectionPoolSettings) (map[string]*anypb.Any, error) {
	if !p.IsHTTP() {
		return nil, nil
	}
	common, err := commonHTTPOptions(cp)
	if err != nil {
		return nil, err
	}
	if common == nil && !p.IsHTTP2() {
		return nil, nil
	}
	explicit := &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
			HttpProtocolOptions: &corev3.Http1ProtocolOptions{},
		},
	}
	if p.IsHTTP2() {
		explicit.ProtocolConfig = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		}
	}
	a, err := toAny(&upstreamhttpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: common,
		UpstreamProtocolOptions:   &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: explicit},
	})
	if err != nil {
		return nil, err
	}
	return map[string]*anypb.Any{httpProtocolOpts: a}, nil
}

// commonHTTPOptions are the pool's upstream connection options, as Istio
// sets them: idle_timeout from http.idleTimeout (else tcp.idleTimeout),
// max_requests_per_connection from http.maxRequestsPerConnection (0:
// unlimited), max_connection_duration from tcp.maxConnectionDuration. Nil
// when the pool sets none of them.
func commonHTTPOptions(cp *model.ConnectionPoolSettings) (*corev3.HttpProtocolOptions, error) {
	if cp == nil {
		return nil, nil
	}
	var out corev3.HttpProtocolOptions
	var err error
	if h := cp.HTTP; h != nil {
		if out.IdleTimeout, err = optionalDuration("connectionPool.http.idleTimeout", h.IdleTimeout); err != nil {
			return nil, err
		}
		if h.MaxRequestsPerConnection > 0 {
			out.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(h.MaxRequestsPerConnection))
		}
	}
	if t := cp.TCP; t != nil {
		if out.IdleTimeout == nil {
			if out.IdleTimeout, err = optionalDuration("connectionPool.tcp.idleTimeout", t.IdleTimeout); err != nil {
				return nil, err
			}
		}
		if out.MaxConnectionDuration, err = optionalDuration("connectionPool.tcp.maxConnectionDuration", t.MaxConnectionDuration); err != nil {
			return nil, err
		}
	}
	if out.IdleTimeout == nil && out.MaxRequestsPerConnection == nil && out.MaxConnectionDuration == nil {
		return nil, nil
	}
	return &out, nil
}
