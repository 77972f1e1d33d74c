package compile

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/model"
)

// inbound adds the listener inbound|<port> (mTLS, at the port's inbound
// address) and the STATIC cluster inbound|<port> (plaintext to the app).
// An HTTP port under a local rate limit (ratelimit.go) gets the
// local_ratelimit filter and its buckets.
func (c *compiler) inbound(p model.WorkloadPort) error {
	name := inboundName(p.Port)
	addr, err := socketAddress(p.Inbound)
	if err != nil {
		return err
	}
	ts, err := downstreamTLS(p.Protocol)
	if err != nil {
		return err
	}
	var filter proto.Message
	var filterName string
	if p.Protocol.IsHTTP() {
		filters, err := routerFilters()
		if err != nil {
			return err
		}
		vh := &routev3.VirtualHost{Name: name, Domains: []string{"*"}, Routes: []*routev3.Route{prefixRoute(name)}}
		if rl := c.ix.rateLimit(c.self, p.Port); rl != nil {
			if filters, err = rateLimitedRoutes(vh, name, rl); err != nil {
				return fmt.Errorf("rate limit: %w", err)
			}
		}
		filterName = hcmFilter
		filter = &hcmv3.HttpConnectionManager{
			StatPrefix: name,
			CodecType:  hcmv3.HttpConnectionManager_AUTO,
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
				Name:         name,
				VirtualHosts: []*routev3.VirtualHost{vh},
			}},
			HttpFilters:                 filters,
			ForwardClientCertDetails:    hcmv3.HttpConnectionManager_SANITIZE_SET,
			SetCurrentClientCertDetails: &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true},
		}
	} else {
		filterName = tcpProxyFilter
		filter = &tcpv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: name}}
	}
	typed, err := toAny(filter)
	if err != nil {
		return err
	}
	c.set.Listeners[name] = &listenerv3.Listener{
		Name:    name,
		Address: addr,
		FilterChains: []*listenerv3.FilterChain{{
			Filters:         []*listenerv3.Filter{{Name: filterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed}}},
			TransportSocket: ts,
		}},
	}

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
