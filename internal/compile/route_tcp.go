package compile

import (
	"slices"

	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/trellis-mesh/trellis/internal/model"
)

// tcpProxy builds the tcp_proxy of an outbound TCP listener and returns the
// service ports it sends to. The first tcp[] rule of the service's
// VirtualService that applies to this proxy and port routes the
// connections: one destination → cluster, several → weighted_clusters
// (zero weights dropped). Without one, everything goes to the whole
// service. With a single cluster, its DestinationRule's
// connectionPool.tcp.idleTimeout is the idle_timeout, as in Istio (which
// leaves it unset for weighted clusters).
func (c *compiler) tcpProxy(name string, svc model.ServiceRef, port uint32) (*tcpv3.TcpProxy, []target, error) {
	dests := []dest{{target: target{svc: svc, port: port}, cluster: ClusterName(port, "", svc.Name)}}
	if vs := c.ix.virtualService(svc); vs != nil && appliesToSidecars(vs.Spec.Gateways) {
		if rule := c.tcpRule(vs, port); rule != nil && len(rule.Route) > 0 {
			dests = dests[:0]
			for i := range rule.Route {
				d := c.resolve(vs, svc, port, &rule.Route[i].Destination)
				if w := rule.Route[i].Weight; w > 0 {
					d.weight = uint32(w)
				}
				dests = append(dests, d)
			}
		}
	}
	reached := make([]target, len(dests))
	for i, d := range dests {
		reached[i] = d.target
	}
	tp := &tcpv3.TcpProxy{StatPrefix: name}
	live := liveDests(dests)
	if len(live) == 1 {
		d := live[0]
		tp.ClusterSpecifier = &tcpv3.TcpProxy_Cluster{Cluster: d.cluster}
		idle, err := c.ix.tcpIdleTimeout(d.target.svc, d.subset, d.target.port)
		if err != nil {
			return nil, nil, err
		}
		tp.IdleTimeout = idle
		return tp, reached, nil
	}
	wc := &tcpv3.TcpProxy_WeightedCluster{}
	for _, d := range live {
		wc.Clusters = append(wc.Clusters, &tcpv3.TcpProxy_WeightedCluster_ClusterWeight{Name: d.cluster, Weight: d.weight})
	}
	tp.ClusterSpecifier = &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	return tp, reached, nil
}

// tcpRule returns the first tcp[] rule that applies to this proxy and
// port: one without matches, or with a match that does (Istio's matchTCP:
// port, source labels, source namespace and gateways must all agree).
func (c *compiler) tcpRule(vs *model.VirtualService, port uint32) *model.TCPRoute {
	for i := range vs.Spec.TCP {
		rule := &vs.Spec.TCP[i]
		if len(rule.Match) == 0 {
			return rule
		}
		for j := range rule.Match {
			if c.tcpMatchApplies(&rule.Match[j], port) {
				return rule
			}
		}
	}
	return nil
}

func (c *compiler) tcpMatchApplies(m *model.L4MatchAttributes, port uint32) bool {
	if m.Port != 0 && m.Port != port {
		return false
	}
	if len(m.Gateways) > 0 && !slices.Contains(m.Gateways, meshGateway) {
		return false
	}
	return c.fromSource(m.SourceLabels, m.SourceNamespace)
}
