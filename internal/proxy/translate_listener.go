package proxy

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/proxy/pathnorm"
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
	if l.GetDefaultFilterChain() != nil {
		return nil, fmt.Errorf("default_filter_chain: not supported")
	}
	inspect, err := translateListenerFilters(l)
	if err != nil {
		return nil, err
	}
	chains := l.GetFilterChains()
	switch {
	case len(chains) == 0 || len(chains) > 2:
		return nil, fmt.Errorf("filter_chains: %d chains, want 1, or 2 told apart by transport_protocol", len(chains))
	case len(chains) == 2 && !inspect:
		return nil, fmt.Errorf("filter_chains: 2 chains need listener_filters %s to tell them apart", tlsInspectorName)
	}
	st := stats.listener(l.GetName())
	var out [2]*listenerConfig
	for i, fc := range chains {
		lc := &listenerConfig{name: l.GetName(), address: addr, stats: st}
		if err := translateFilterChain(fc, lc, len(chains)); err != nil {
			return nil, fmt.Errorf("filter_chains[%d].%w", i, err)
		}
		out[i] = lc
	}
	lc := out[0]
	lc.inspect = inspect
	if d := l.GetListenerFiltersTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return nil, fmt.Errorf("listener_filters_timeout: invalid")
		}
		lc.sniffTimeout = d.AsDuration()
	}
	if len(chains) == 2 {
		other := out[1]
		if (lc.tls != nil) == (other.tls != nil) {
			return nil, fmt.Errorf("filter_chains: want one chain with transport_protocol %q and a TLS transport_socket and one with %q and none", transportTLS, transportRaw)
		}
		if lc.kind != other.kind {
			return nil, fmt.Errorf("filter_chains: an HTTP and a TCP chain on one listener are not supported")
		}
		lc.other = other
	}
	return lc, nil
}

// Listener filters and transport protocols of PERMISSIVE listeners (ADR 002).
const (
	tlsInspectorName = "envoy.filters.listener.tls_inspector"
	transportTLS     = "tls"
	transportRaw     = "raw_buffer"
)

var typeTLSInspector = typeURL(&tlsinspectorv3.TlsInspector{})

// translateListenerFilters accepts at most the tls_inspector, which makes
// the listener sniff the first bytes of each connection (dispatch.go).
func translateListenerFilters(l *listenerv3.Listener) (inspect bool, err error) {
	for i, f := range l.GetListenerFilters() {
		if f.GetFilterDisabled() != nil || f.GetConfigDiscovery() != nil {
			return false, fmt.Errorf("listener_filters[%d] (%q): filter_disabled/config_discovery not supported", i, f.GetName())
		}
		switch tc := f.GetTypedConfig(); {
		case tc == nil && f.GetName() == tlsInspectorName:
		case tc.GetTypeUrl() == typeTLSInspector:
			var ti tlsinspectorv3.TlsInspector
			if err := tc.UnmarshalTo(&ti); err != nil {
				return false, fmt.Errorf("listener_filters[%d].typed_config: %w", i, err)
			}
			if ti.GetCloseConnectionOnClientHelloParsingErrors() || ti.GetMaxClientHelloSize() != nil {
				return false, fmt.Errorf("listener_filters[%d].typed_config: only the default tls_inspector is supported", i)
			}
		default:
			return false, fmt.Errorf("listener_filters[%d] (%q): unknown listener filter %q", i, f.GetName(), tc.GetTypeUrl())
		}
		if inspect {
			return false, fmt.Errorf("listener_filters[%d]: a second tls_inspector", i)
		}
		inspect = true
	}
	if l.GetContinueOnListenerFiltersTimeout() {
		return false, fmt.Errorf("continue_on_listener_filters_timeout: not supported")
	}
	return inspect, nil
}

// translateFilterChain translates one filter chain of a listener with n
// chains into lc. Its filter_chain_match may only name the transport
// protocol, which must agree with its transport socket; with two chains it
// is required.
func translateFilterChain(fc *listenerv3.FilterChain, lc *listenerConfig, n int) error {
	m := fc.GetFilterChainMatch()
	tp := m.GetTransportProtocol()
	if m != nil {
		rest := proto.Clone(m).(*listenerv3.FilterChainMatch)
		rest.TransportProtocol = ""
		if !proto.Equal(rest, &listenerv3.FilterChainMatch{}) {
			return fmt.Errorf("filter_chain_match: only transport_protocol is supported")
		}
	}
	switch {
	case tp == "" && n > 1:
		return fmt.Errorf("filter_chain_match.transport_protocol: missing, want %q or %q", transportTLS, transportRaw)
	case tp == transportTLS && fc.GetTransportSocket() == nil:
		return fmt.Errorf("filter_chain_match.transport_protocol: %q on a chain without a TLS transport_socket", tp)
	case tp == transportRaw && fc.GetTransportSocket() != nil:
		return fmt.Errorf("filter_chain_match.transport_protocol: %q on a chain with a transport_socket", tp)
	case tp != "" && tp != transportTLS && tp != transportRaw:
		return fmt.Errorf("filter_chain_match.transport_protocol: %q not supported", tp)
	}
	netRBAC, filters, err := translateNetworkFilters(fc.GetFilters()) // rbac before tcp_proxy (authz_tcp.go)
	if err != nil {
		return err
	}
	if len(filters) != 1 {
		return fmt.Errorf("filters: %d filters, want exactly 1 (http_connection_manager or tcp_proxy) after any network rbac filters", len(filters))
	}
	f := filters[0]
	tc := f.GetTypedConfig()
	switch tc.GetTypeUrl() {
	case typeHCM:
		lc.kind = kindHTTP
		var hcm hcmv3.HttpConnectionManager
		if err := tc.UnmarshalTo(&hcm); err != nil {
			return fmt.Errorf("filters[0].typed_config: %w", err)
		}
		if err := translateHCM(&hcm, lc); err != nil {
			return fmt.Errorf("filters[0].typed_config.%w", err)
		}
	case typeTCPProxy:
		lc.kind = kindTCP
		var tp tcpv3.TcpProxy
		if err := tc.UnmarshalTo(&tp); err != nil {
			return fmt.Errorf("filters[0].typed_config: %w", err)
		}
		if err := translateTCPProxy(&tp, lc); err != nil {
			return fmt.Errorf("filters[0].typed_config.%w", err)
		}
	default:
		return fmt.Errorf("filters[0] (%q): unknown filter type %q", f.GetName(), tc.GetTypeUrl())
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		dt, err := translateDownstreamTLS(ts, lc.kind)
		if err != nil {
			return err
		}
		lc.tls = dt
	}
	if len(netRBAC) > 0 && lc.kind != kindTCP {
		return fmt.Errorf("filters: network rbac filters are supported before tcp_proxy only")
	}
	lc.netRBAC = netRBAC
	return nil
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
	lc.streamIdleTimeout = defaultStreamIdleTimeout
	if d := h.GetStreamIdleTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return fmt.Errorf("stream_idle_timeout: %w", err)
		}
		if d.AsDuration() < 0 {
			return fmt.Errorf("stream_idle_timeout: %v is negative", d.AsDuration())
		}
		lc.streamIdleTimeout = d.AsDuration() // 0 disables it
	}
	return translatePathOptions(h, lc)
}

// translatePathOptions reads the HCM's path normalization (pathnorm).
func translatePathOptions(h *hcmv3.HttpConnectionManager, lc *listenerConfig) error {
	if h.GetPathNormalizationOptions() != nil {
		return fmt.Errorf("path_normalization_options: not supported")
	}
	lc.pathOpts = pathnorm.Options{NormalizePath: h.GetNormalizePath().GetValue(), MergeSlashes: h.GetMergeSlashes()}
	switch a := h.GetPathWithEscapedSlashesAction(); a {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
		lc.pathOpts.EscapedSlashes = pathnorm.KeepUnchanged
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		lc.pathOpts.EscapedSlashes = pathnorm.RejectRequest
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
		lc.pathOpts.EscapedSlashes = pathnorm.UnescapeAndRedirect
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD:
		lc.pathOpts.EscapedSlashes = pathnorm.UnescapeAndForward
	default:
		return fmt.Errorf("path_with_escaped_slashes_action: %s not supported", a)
	}
	return nil
}

// translateHTTPFilters accepts the router (last), and before it the
// jwt_authn, fault, local rate limit and buffer filters, each at most once, and
// rbac filters (authz.go); optional unknown filters are skipped, others
// refused.
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
		case typeBuffer:
			var cfg bufferv3.Buffer
			if err := tc.UnmarshalTo(&cfg); err != nil {
				return fmt.Errorf("http_filters[%d].typed_config: %w", i, err)
			}
			bp, err := translateBuffer(&cfg)
			if err != nil {
				return fmt.Errorf("http_filters[%d] (%q).typed_config.%w", i, hf.GetName(), err)
			}
			f.kind, f.buffer = filterBuffer, bp
		case typeJWTAuthn:
			jf, err := translateJWTFilter(tc, fmt.Sprintf("http_filters[%d] (%q)", i, hf.GetName()))
			if err != nil {
				return fmt.Errorf("http_filters[%d] (%q).%w", i, hf.GetName(), err)
			}
			f.kind, f.jwt = filterJWT, jf
		case typeHTTPRBAC:
			rf, err := translateHTTPRBAC(hf.GetName(), tc)
			if err != nil {
				return fmt.Errorf("http_filters[%d] (%q).%w", i, hf.GetName(), err)
			}
			f.kind, f.rbac = filterRBAC, rf
		default:
			if hf.GetIsOptional() {
				continue
			}
			return fmt.Errorf("http_filters[%d] (%q): unknown filter type %q", i, hf.GetName(), tc.GetTypeUrl())
		}
		if hf.GetDisabled() {
			return fmt.Errorf("http_filters[%d] (%q).disabled: not supported", i, hf.GetName())
		}
		if seen[f.kind] && f.kind != filterRBAC { // deny, allow and audit rbac filters (ADR 002)
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
