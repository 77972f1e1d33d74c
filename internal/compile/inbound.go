package compile

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/trellis-mesh/trellis/internal/model"
)

// inbound adds the listener inbound|<port> (at the port's inbound address)
// and the STATIC cluster inbound|<port> (plaintext to the app). The
// listener's filter chains follow the port's effective mTLS mode
// (security.go): STRICT one mTLS chain; PERMISSIVE the tls_inspector and
// an mTLS chain plus a plaintext one; DISABLE one plaintext chain. An HTTP
// port runs jwt_authn and the rbac filters (security_*.go), then a local
// rate limit (ratelimit.go), then request buffering (buffer.go), then the
// router; a TCP port the rbac filters before tcp_proxy.
func (c *compiler) inbound(p model.WorkloadPort) error {
	name := inboundName(p.Port)
	addr, err := socketAddress(p.Inbound)
	if err != nil {
		return err
	}
	l := &listenerv3.Listener{Name: name, Address: addr}
	mode := c.ix.mtlsMode(c.self, p)
	if mode != model.MTLSDisable {
		ts, err := downstreamTLS(p.Protocol)
		if err != nil {
			return err
		}
		filters, err := c.inboundFilters(name, p, true)
		if err != nil {
			return err
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{Filters: filters, TransportSocket: ts})
	}
	if mode != model.MTLSStrict {
		filters, err := c.inboundFilters(name, p, false)
		if err != nil {
			return err
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{Filters: filters})
	}
	if mode == model.MTLSPermissive {
		inspector, err := tlsInspector()
		if err != nil {
			return err
		}
		l.ListenerFilters = []*listenerv3.ListenerFilter{inspector}
		l.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
		l.FilterChains[1].FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}
	}
	c.set.Listeners[name] = l

	appAddr, err := socketAddress(p.App)
	if err != nil {
		return err
	}
	opts, err := http2Options(p.Protocol)
	if err != nil {
		return err
	}
	c.set.Clusters[name] = &clusterv3.Cluster{
		Name:                          name,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:                duration(connectTimeout),
		LbPolicy:                      clusterv3.Cluster_ROUND_ROBIN,
		TypedExtensionProtocolOptions: opts,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: appAddr}},
			}}}},
		},
	}
	return nil
}

// prefixRoute routes every request to cluster.
func prefixRoute(cluster string) *routev3.Route {
	return &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		}},
	}
}

// inboundFilters are the network filters of one inbound filter chain. An
// mTLS chain sets x-forwarded-client-cert from the verified peer
// (SANITIZE_SET); a plaintext one only strips it (SANITIZE).
func (c *compiler) inboundFilters(name string, p model.WorkloadPort, mtls bool) ([]*listenerv3.Filter, error) {
	if !p.Protocol.IsHTTP() {
		filters, err := networkRBACFilters(c.authzFilters(true))
		if err != nil {
			return nil, err
		}
		typed, err := toAny(&tcpv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: name}})
		if err != nil {
			return nil, err
		}
		return append(filters, typedNetworkFilter(tcpProxyFilter, typed)), nil
	}
	filters, err := c.inboundHTTPFilters()
	if err != nil {
		return nil, err
	}
	vh := &routev3.VirtualHost{Name: name, Domains: []string{"*"}, Routes: []*routev3.Route{prefixRoute(name)}}
	tail, err := routerFilters()
	if err != nil {
		return nil, err
	}
	if rl := c.ix.rateLimit(c.self, p.Port); rl != nil {
		if tail, err = rateLimitedRoutes(vh, name, rl); err != nil {
			return nil, fmt.Errorf("rate limit: %w", err)
		}
	}
	if fb, rb := c.ix.requestBuffer(c.self, p.Port); fb != nil {
		if tail, err = bufferedRoutes(vh, tail, fb, rb); err != nil {
			return nil, fmt.Errorf("buffer: %w", err)
		}
	}
	hcm := normalizePaths(&hcmv3.HttpConnectionManager{
		StatPrefix: name,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:         name,
			VirtualHosts: []*routev3.VirtualHost{vh},
		}},
		HttpFilters:              append(filters, tail...),
		ForwardClientCertDetails: hcmv3.HttpConnectionManager_SANITIZE,
	})
	if mtls {
		hcm.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
		hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	}
	typed, err := toAny(hcm)
	if err != nil {
		return nil, err
	}
	return []*listenerv3.Filter{typedNetworkFilter(hcmFilter, typed)}, nil
}

// inboundHTTPFilters are the security filters of an HTTP inbound port, in
// the contract's order: jwt_authn, then rbac DENY, ALLOW, AUDIT.
func (c *compiler) inboundHTTPFilters() ([]*hcmv3.HttpFilter, error) {
	var out []*hcmv3.HttpFilter
	jwt, err := c.jwtFilter()
	if err != nil {
		return nil, err
	}
	if jwt != nil {
		out = append(out, jwt)
	}
	rbac, err := httpRBACFilters(c.authzFilters(false))
	if err != nil {
		return nil, err
	}
	return append(out, rbac...), nil
}
