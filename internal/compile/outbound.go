package compile

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/model"
)

// outbound adds what one upstream needs: the plaintext listener at u.Local,
// its RouteConfiguration (HTTP) or tcp_proxy routes (TCP), and the clusters
// and endpoints of every service the routes reach.
func (c *compiler) outbound(svc model.ServiceRef, u model.Upstream) error {
	port := u.Port
	if port == 0 {
		port = c.ix.firstPort(svc)
	}
	name := outboundListenerName(port, svc.Name)
	if _, dup := c.set.Listeners[name]; dup {
		return nil // the same upstream declared twice: the first local address wins
	}
	addr, err := socketAddress(u.Local)
	if err != nil {
		return err
	}
	targets := []target{{svc: svc, port: port}}
	var filter proto.Message
	var filterName string
	if c.ix.protocol(svc, port).IsHTTP() {
		routes, err := c.routeConfig(name, svc, port)
		if err != nil {
			return err
		}
		c.set.Routes[name] = routes.config
		targets = append(targets, routes.reached...)
		filters, err := outboundHTTPFilters(routes.fault)
		if err != nil {
			return err
		}
		filterName = hcmFilter
		filter = normalizePaths(&hcmv3.HttpConnectionManager{
			StatPrefix: name,
			CodecType:  hcmv3.HttpConnectionManager_AUTO,
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
				ConfigSource:    adsSource(),
				RouteConfigName: name,
			}},
			HttpFilters: filters,
		})
	} else {
		tp, reached, err := c.tcpProxy(name, svc, port)
		if err != nil {
			return err
		}
		targets = append(targets, reached...)
		filterName, filter = tcpProxyFilter, tp
	}
	typed, err := toAny(filter)
	if err != nil {
		return err
	}
	c.set.Listeners[name] = &listenerv3.Listener{
		Name:    name,
		Address: addr,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{Name: filterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed}}},
		}},
	}
	for _, t := range targets {
		if err := c.serviceClusters(t); err != nil {
			return err
		}
	}
	return nil
}

// outboundHTTPFilters is the HTTP filter chain of an outbound listener: the
// fault filter when one of its routes injects faults, then the router.
func outboundHTTPFilters(fault bool) ([]*hcmv3.HttpFilter, error) {
	filters, err := routerFilters()
	if err != nil || !fault {
		return filters, err
	}
	f, err := faultHTTPFilter()
	if err != nil {
		return nil, err
	}
	return append([]*hcmv3.HttpFilter{f}, filters...), nil
}
