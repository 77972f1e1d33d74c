package proxy

import (
	"fmt"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// ParseConfigDump reads a /config_dump (ConfigDump's output, or an Envoy's)
// back into the resource set it shows: the dynamic (and static) listeners,
// route configurations, clusters and endpoint assignments. Other sections
// (bootstrap, secrets, scoped routes) are ignored. The typed configs inside
// resources resolve because this package links every type it accepts.
func ParseConfigDump(data []byte) (*resources.Set, error) {
	var dump adminv3.ConfigDump
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &dump); err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	set := resources.NewSet()
	for i, a := range dump.GetConfigs() {
		if err := addDumpSection(set, a); err != nil {
			return nil, fmt.Errorf("config dump: configs[%d] (%s): %w", i, a.GetTypeUrl(), err)
		}
	}
	return set, nil
}

func addDumpSection(set *resources.Set, a *anypb.Any) error {
	m, err := a.UnmarshalNew()
	if err != nil {
		return err
	}
	switch d := m.(type) {
	case *adminv3.ListenersConfigDump:
		for _, l := range d.GetStaticListeners() {
			if err := addListener(set, l.GetListener()); err != nil {
				return err
			}
		}
		for _, l := range d.GetDynamicListeners() {
			if s := l.GetActiveState(); s != nil {
				if err := addListener(set, s.GetListener()); err != nil {
					return fmt.Errorf("dynamic_listeners %q: %w", l.GetName(), err)
				}
			}
		}
	case *adminv3.RoutesConfigDump:
		var all []*anypb.Any
		for _, r := range d.GetStaticRouteConfigs() {
			all = append(all, r.GetRouteConfig())
		}
		for _, r := range d.GetDynamicRouteConfigs() {
			all = append(all, r.GetRouteConfig())
		}
		for _, a := range all {
			var rc routev3.RouteConfiguration
			if err := a.UnmarshalTo(&rc); err != nil {
				return fmt.Errorf("route_config: %w", err)
			}
			set.Routes[rc.GetName()] = &rc
		}
	case *adminv3.ClustersConfigDump:
		var all []*anypb.Any
		for _, c := range d.GetStaticClusters() {
			all = append(all, c.GetCluster())
		}
		for _, c := range d.GetDynamicActiveClusters() {
			all = append(all, c.GetCluster())
		}
		for _, a := range all {
			var c clusterv3.Cluster
			if err := a.UnmarshalTo(&c); err != nil {
				return fmt.Errorf("cluster: %w", err)
			}
			set.Clusters[c.GetName()] = &c
		}
	case *adminv3.EndpointsConfigDump:
		var all []*anypb.Any
		for _, e := range d.GetStaticEndpointConfigs() {
			all = append(all, e.GetEndpointConfig())
		}
		for _, e := range d.GetDynamicEndpointConfigs() {
			all = append(all, e.GetEndpointConfig())
		}
		for _, a := range all {
			var cla endpointv3.ClusterLoadAssignment
			if err := a.UnmarshalTo(&cla); err != nil {
				return fmt.Errorf("endpoint_config: %w", err)
			}
			set.Endpoints[cla.GetClusterName()] = &cla
		}
	}
	return nil
}

func addListener(set *resources.Set, a *anypb.Any) error {
	var l listenerv3.Listener
	if err := a.UnmarshalTo(&l); err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	set.Listeners[l.GetName()] = &l
	return nil
}
