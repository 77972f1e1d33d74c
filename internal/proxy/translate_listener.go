package proxy

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
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
		rt, err := translateRouteConfigIn(rs.RouteConfig, "listener:"+lc.name)
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
	if err := translateHTTPFilters(h.GetHttpFilters(), lc); err != nil {
		return err
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

// translateHTTPFilters accepts the router (last), and before it the fault
// and local rate limit filters, each at most once; optional unknown
// filters are skipped, others refused.
func translateHTTPFilters(filters []*hcmv3.HttpFilter, lc *listenerConfig) error {
	seen := map[filterKind]bool{}
	for i, hf := range filters {
		tc := hf.GetTypedConfig()
		if hf.GetConfigDiscovery() != nil {
			return fmt.Errorf("http_filters[%d] (%q).config_discovery: not supported", i, hf.GetName())
		}
		if tc.GetTypeUrl() == typeRouter {
			if i != len(filters)-1 {
				return fmt.Errorf("http_filters[%d]: router must be the last filter", i)
			}
			continue
		}
		f := httpFilter{name: hf.GetName()}
		switch tc.GetTypeUrl() {
		case typeHTTPFault:
			var cfg faultv3.HTTPFault
			if err := tc.UnmarshalTo(&cfg); err != nil {
				return fmt.Errorf("http_filters[%d].typed_config: %w", i, err)
			}
			fp, err := translateFault(&cfg)
			if err != nil {
				return fmt.Errorf("http_filters[%d] (%q).typed_config.%w", i, hf.GetName(), err)
			}
			f.kind = filterFault
			if !faultIsNoop(fp) {
				f.fault = fp
			}
		case typeLocalRateLimit:
			var cfg localratelimitv3.LocalRateLimit
			if err := tc.UnmarshalTo(&cfg); err != nil {
				return fmt.Errorf("http_filters[%d].typed_config: %w", i, err)
			}
			lp, err := translateLocalRateLimit(&cfg, "listener:"+lc.name+"/"+hf.GetName(), false)
			if err != nil {
				return fmt.Errorf("http_filters[%d] (%q).typed_config.%w", i, hf.GetName(), err)
			}
			f.kind, f.limit = filterLocalRateLimit, lp
		default:
			if hf.GetIsOptional() {
				continue
			}
			return fmt.Errorf("http_filters[%d] (%q): unknown filter type %q", i, hf.GetName(), tc.GetTypeUrl())
		}
		if hf.GetDisabled() {
			return fmt.Errorf("http_filters[%d] (%q).disabled: not supported", i, hf.GetName())
		}
		if seen[f.kind] {
			return fmt.Errorf("http_filters[%d] (%q): a second %s filter is not supported", i, hf.GetName(), tc.GetTypeUrl())
		}
		seen[f.kind] = true
		lc.filters.chain = append(lc.filters.chain, f)
	}
	return nil
}

func translateTCPProxy(t *tcpv3.TcpProxy, lc *listenerConfig) error {
	switch cs := t.GetClusterSpecifier().(type) {
	case *tcpv3.TcpProxy_Cluster:
		if cs.Cluster == "" {
			return fmt.Errorf("cluster: empty")
		}
		lc.tcpCluster = cs.Cluster
	case *tcpv3.TcpProxy_WeightedClusters:
		wc, err := translateTCPWeighted(cs.WeightedClusters)
		if err != nil {
			return fmt.Errorf("weighted_clusters.%w", err)
		}
		lc.tcpWeighted = wc
	default:
		return fmt.Errorf("cluster_specifier: missing, want cluster or weighted_clusters")
	}
	if t.GetTunnelingConfig() != nil || t.GetOnDemand() != nil || len(t.GetHashPolicy()) > 0 {
		return fmt.Errorf("tunneling_config/on_demand/hash_policy: not supported")
	}
	lc.idleTimeout = defaultTCPIdle
	if d := t.GetIdleTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return fmt.Errorf("idle_timeout: %w", err)
		}
		lc.idleTimeout = d.AsDuration() // 0 disables the timeout
	}
	return nil
}

// translateTCPWeighted translates tcp_proxy weighted clusters: each
// connection goes to one cluster, picked by weight (Envoy requires each
// weight >= 1).
func translateTCPWeighted(w *tcpv3.TcpProxy_WeightedCluster) (*weightedClusters, error) {
	if len(w.GetClusters()) == 0 {
		return nil, fmt.Errorf("clusters: empty")
	}
	wc := &weightedClusters{}
	var sum uint64
	for i, c := range w.GetClusters() {
		if c.GetName() == "" {
			return nil, fmt.Errorf("clusters[%d].name: empty", i)
		}
		if c.GetWeight() == 0 {
			return nil, fmt.Errorf("clusters[%d].weight: 0, want >= 1", i)
		}
		if c.GetMetadataMatch() != nil {
			return nil, fmt.Errorf("clusters[%d].metadata_match: not supported", i)
		}
		sum += uint64(c.GetWeight())
		if sum > 1<<31 {
			return nil, fmt.Errorf("clusters[%d].weight: weights sum overflows", i)
		}
		wc.names = append(wc.names, c.GetName())
		wc.cumulative = append(wc.cumulative, uint32(sum))
	}
	wc.total = uint32(sum)
	return wc, nil
}

// tcpClusterName returns the cluster of a new TCP connection.
func (l *listenerConfig) tcpClusterName() string {
	if l.tcpWeighted != nil {
		return l.tcpWeighted.pick(rand.Uint32N(l.tcpWeighted.total))
	}
	return l.tcpCluster
}
