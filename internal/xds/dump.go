package xds

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// Resources returns the configuration last published for node with
// SetResources, and false when there is none (never set, or cleared).
// The resources are the cache's: not to be modified.
func (s *Server) Resources(node string) (*resources.Set, bool) {
	snap, err := s.cache.GetSnapshot(node)
	if err != nil {
		return nil, false
	}
	set := resources.NewSet()
	for name, r := range snap.GetResources(resources.ListenerType) {
		if m, ok := r.(*listenerv3.Listener); ok {
			set.Listeners[name] = m
		}
	}
	for name, r := range snap.GetResources(resources.RouteType) {
		if m, ok := r.(*routev3.RouteConfiguration); ok {
			set.Routes[name] = m
		}
	}
	for name, r := range snap.GetResources(resources.ClusterType) {
		if m, ok := r.(*clusterv3.Cluster); ok {
			set.Clusters[name] = m
		}
	}
	for name, r := range snap.GetResources(resources.EndpointType) {
		if m, ok := r.(*endpointv3.ClusterLoadAssignment); ok {
			set.Endpoints[name] = m
		}
	}
	return set, true
}
