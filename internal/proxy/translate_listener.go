package proxy

import (
	"fmt"
	"net"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
)

func typeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

var (
	typeHCM      = typeURL(&hcmv3.HttpConnectionManager{})
	typeTCPProxy = typeURL(&tcpv3.TcpProxy{})
	typeRouter   = typeURL(&routerv3.Router{})
)

// defaultTCPIdle is Envoy's tcp_proxy default idle timeout.
const defaultTCPIdle = time.Hour

func socketAddress(a *corev3.Address) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", fmt.Errorf("socket_address: missing")
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", fmt.Errorf("socket_address.protocol: %s not supported", sa.GetProtocol())
	}
	if sa.GetResolverName() != "" {
		return "", fmt.Errorf("socket_address.resolver_name: not supported")
	}
	port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue)
	if !ok || port.PortValue > 65535 {
		return "", fmt.Errorf("socket_address.port_value: missing or out of range")
	}
	if sa.GetAddress() == "" {
		return "", fmt.Errorf("socket_address.address: missing")
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(port.PortValue))), nil
}

func translateListener(l *listenerv3.Listener, stats *statsRegistry) (*listenerConfig, error) {
	addr, err := socketAddress(l.GetAddress())
	if err != nil {
		return nil, fmt.Errorf("address.%w", err)
	}
	chains := l.GetFilterChains()
	if len(chains) != 1 {
		return nil, fmt.Errorf("filter_chains: %d chains, want exactly 1", len(chains))
	}
	if l.GetDefaultFilterChain() != nil {
		return nil, fmt.Errorf("default_filter_chain: not supported")
	}
	fc := chains[0]
	if fc.GetFilterChainMatch() != nil {
		return nil, fmt.Errorf("filter_chains[0].filter_chain_match: not supported")
	}
	filters := fc.GetFilters()
	if len(filters) != 1 {
		return nil, fmt.Errorf("filter_chains[0].filters: %d filters, want exactly 1 (http_connection_manager or tcp_proxy)", len(filters))
	}
	lc := &listenerConfig{name: l.GetName(), address: addr, stats: stats.listener(l.GetName())}
	f := filters[0]
	tc := f.GetTypedConfig()
	switch tc.GetTypeUrl() {
	case typeHCM:
		lc.kind = kindHTTP
		var hcm hcmv3.HttpConnectionManager
		if err := tc.UnmarshalTo(&hcm); err != nil {
			return nil, fmt.Errorf("filter_chains[0].filters[0].typed_config: %w", err)
		}
		if err := translateHCM(&hcm, lc); err != nil {
			return nil, fmt.Errorf("filter_chains[0].filters[0].typed_config.%w", err)
		}
	case typeTCPProxy:
		lc.kind = kindTCP
		var tp tcpv3.TcpProxy
		if err := tc.UnmarshalTo(&tp); err != nil {
			return nil, fmt.Errorf("filter_chains[0].filters[0].typed_config: %w", err)
		}
		if err := translateTCPProxy(&tp, lc); err != nil {
			return nil, fmt.Errorf("filter_chains[0].filters[0].typed_config.%w", err)
		}
	default:
		return nil, fmt.Errorf("filter_chains[0].filters[0] (%q): unknown filter type %q", f.GetName(), tc.GetTypeUrl())
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		dt, err := translateDownstreamTLS(ts, lc.kind)
		if err != nil {
			return nil, fmt.Errorf("filter_chains[0].%w", err)
		}
		lc.tls = dt
	}
	return lc, nil
}

func translateHCM(h *hcmv3.HttpConnectionManager, lc *listenerConfig) error {
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_RouteConfig:
		rt, err := translateRouteConfig(rs.RouteConfig)
		if err != nil {
			return fmt.Errorf("route_config.%w", err)
		}
		lc.inlineRoutes = rt
	case *hcmv3.HttpConnectionManager_Rds:
		if rs.Rds.GetRouteConfigName() == "" {
			return fmt.Errorf("rds.route_config_name: missing")
		}
		lc.rdsName = rs.Rds.GetRouteConfigName()
	default:
		return fmt.Errorf("route_specifier: %T not supported, want route_config or rds", rs)
	}
	for i, hf := range h.GetHttpFilters() {
		if hf.GetTypedConfig().GetTypeUrl() == typeRouter {
			if i != len(h.GetHttpFilters())-1 {
				return fmt.Errorf("http_filters[%d]: router must be the last filter", i)
			}
			continue
		}
		if hf.GetIsOptional() {
			continue
		}
		return fmt.Errorf("http_filters[%d] (%q): unknown filter type %q", i, hf.GetName(), hf.GetTypedConfig().GetTypeUrl())
	}
	switch h.GetForwardClientCertDetails() {
	case hcmv3.HttpConnectionManager_SANITIZE:
	case hcmv3.HttpConnectionManager_SANITIZE_SET:
		d := h.GetSetCurrentClientCertDetails()
		if d.GetSubject().GetValue() || d.GetCert() || d.GetChain() || d.GetDns() {
			return fmt.Errorf("set_current_client_cert_details: only uri is supported")
		}
		lc.setXFCC = d.GetUri()
	default:
		return fmt.Errorf("forward_client_cert_details: %s not supported, want SANITIZE or SANITIZE_SET", h.GetForwardClientCertDetails())
	}
	if v := h.GetMaxRequestHeadersKb(); v != nil {
		lc.maxHeaderKB = v.GetValue()
	}
	return nil
}

func translateTCPProxy(t *tcpv3.TcpProxy, lc *listenerConfig) error {
	c, ok := t.GetClusterSpecifier().(*tcpv3.TcpProxy_Cluster)
	if !ok || c.Cluster == "" {
		return fmt.Errorf("cluster: missing (weighted_clusters not supported)")
	}
	if t.GetTunnelingConfig() != nil || t.GetOnDemand() != nil || len(t.GetHashPolicy()) > 0 {
		return fmt.Errorf("tunneling_config/on_demand/hash_policy: not supported")
	}
	lc.tcpCluster = c.Cluster
	lc.idleTimeout = defaultTCPIdle
	if d := t.GetIdleTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return fmt.Errorf("idle_timeout: %w", err)
		}
		lc.idleTimeout = d.AsDuration() // 0 disables the timeout
	}
	return nil
}
