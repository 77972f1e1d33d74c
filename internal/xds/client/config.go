package client

import (
	"fmt"
	"maps"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

var (
	hcmTypeURL      = "type.googleapis.com/" + string((&hcmv3.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName())
	resourceWrapURL = "type.googleapis.com/" + string((&discoveryv3.Resource{}).ProtoReflect().Descriptor().FullName())
)

// accepted is the configuration the client last accepted, per type. It
// survives reconnects, so the handler keeps its last good config while the
// control plane is away.
type accepted struct {
	set       *resources.Set
	versions  map[string]string // type URL → last accepted version
	received  map[string]bool   // type URL → a response was accepted once
	delivered bool              // the handler accepted an Update once
}

func newAccepted() *accepted {
	return &accepted{set: resources.NewSet(), versions: map[string]string{}, received: map[string]bool{}}
}

// candidate returns the set that results from accepting resp: the current
// set with resp's type replaced (Listeners, Clusters: the full state; Routes,
// Endpoints: the named resources updated), and Routes and Endpoints no longer
// referenced dropped. The current set is not modified.
func (a *accepted) candidate(resp *discoveryv3.DiscoveryResponse) (*resources.Set, error) {
	next := &resources.Set{
		Listeners: maps.Clone(a.set.Listeners),
		Routes:    maps.Clone(a.set.Routes),
		Clusters:  maps.Clone(a.set.Clusters),
		Endpoints: maps.Clone(a.set.Endpoints),
	}
	var err error
	switch resp.GetTypeUrl() {
	case resources.ListenerType:
		next.Listeners, err = decodeAll(resp, func() *listenerv3.Listener { return &listenerv3.Listener{} }, (*listenerv3.Listener).GetName)
	case resources.ClusterType:
		next.Clusters, err = decodeAll(resp, func() *clusterv3.Cluster { return &clusterv3.Cluster{} }, (*clusterv3.Cluster).GetName)
	case resources.RouteType:
		var got map[string]*routev3.RouteConfiguration
		got, err = decodeAll(resp, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} }, (*routev3.RouteConfiguration).GetName)
		maps.Copy(next.Routes, got)
	case resources.EndpointType:
		var got map[string]*endpointv3.ClusterLoadAssignment
		got, err = decodeAll(resp, func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }, (*endpointv3.ClusterLoadAssignment).GetClusterName)
		maps.Copy(next.Endpoints, got)
	default:
		return nil, fmt.Errorf("unexpected type %q", resp.GetTypeUrl())
	}
	if err != nil {
		return nil, err
	}
	routeNames, err := routeNames(next.Listeners)
	if err != nil {
		return nil, err
	}
	maps.DeleteFunc(next.Routes, func(name string, _ *routev3.RouteConfiguration) bool { return !slices.Contains(routeNames, name) })
	endpointNames := endpointNames(next.Clusters)
	maps.DeleteFunc(next.Endpoints, func(name string, _ *endpointv3.ClusterLoadAssignment) bool {
		return !slices.Contains(endpointNames, name)
	})
	return next, nil
}

// decodeAll unpacks the resources of resp, keyed by name.
func decodeAll[M proto.Message](resp *discoveryv3.DiscoveryResponse, newM func() M, name func(M) string) (map[string]M, error) {
	out := make(map[string]M, len(resp.GetResources()))
	for i, res := range resp.GetResources() {
		if res.GetTypeUrl() == resourceWrapURL {
			wrapped := &discoveryv3.Resource{}
			if err := res.UnmarshalTo(wrapped); err != nil {
				return nil, fmt.Errorf("resources[%d]: %w", i, err)
			}
			res = wrapped.GetResource()
		}
		if res.GetTypeUrl() != resp.GetTypeUrl() {
			return nil, fmt.Errorf("resources[%d]: type %q in a %q response", i, res.GetTypeUrl(), resp.GetTypeUrl())
		}
		m := newM()
		if err := res.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		n := name(m)
		if n == "" {
			return nil, fmt.Errorf("resources[%d]: no name", i)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("resources[%d]: duplicate resource %q", i, n)
		}
		out[n] = m
	}
	return out, nil
}

// routeNames returns, sorted, the RDS route_config_names referenced by the
// http_connection_manager filters of listeners.
func routeNames(listeners map[string]*listenerv3.Listener) ([]string, error) {
	seen := map[string]bool{}
	for _, lname := range resources.SortedKeys(listeners) {
		l := listeners[lname]
		chains := slices.Clone(l.GetFilterChains())
		if l.GetDefaultFilterChain() != nil {
			chains = append(chains, l.GetDefaultFilterChain())
		}
		for _, chain := range chains {
			for _, f := range chain.GetFilters() {
				tc := f.GetTypedConfig()
				if tc.GetTypeUrl() != hcmTypeURL {
					continue
				}
				hcm := &hcmv3.HttpConnectionManager{}
				if err := anypb.UnmarshalTo(tc, hcm, proto.UnmarshalOptions{}); err != nil {
					return nil, fmt.Errorf("listener %q: filter %q: %w", lname, f.GetName(), err)
				}
				if name := hcm.GetRds().GetRouteConfigName(); name != "" {
					seen[name] = true
				}
			}
		}
	}
	return resources.SortedKeys(seen), nil
}

// endpointNames returns, sorted, the EDS service names of EDS clusters.
func endpointNames(clusters map[string]*clusterv3.Cluster) []string {
	seen := map[string]bool{}
	for name, c := range clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
			name = sn
		}
		seen[name] = true
	}
	return resources.SortedKeys(seen)
}

// commit makes next the accepted set, at version for typeURL.
func (a *accepted) commit(typeURL, version string, next *resources.Set) {
	a.set = next
	a.versions[typeURL] = version
	a.received[typeURL] = true
}

// synced reports whether CDS and LDS were accepted and every EDS and RDS name
// they reference is present.
func (a *accepted) synced() bool {
	if !a.received[resources.ClusterType] || !a.received[resources.ListenerType] {
		return false
	}
	for _, n := range endpointNames(a.set.Clusters) {
		if _, ok := a.set.Endpoints[n]; !ok {
			return false
		}
	}
	names, err := routeNames(a.set.Listeners)
	if err != nil {
		return false
	}
	for _, n := range names {
		if _, ok := a.set.Routes[n]; !ok {
			return false
		}
	}
	return true
}

func equalSets(a, b *resources.Set) bool {
	return equalMaps(a.Listeners, b.Listeners) && equalMaps(a.Routes, b.Routes) &&
		equalMaps(a.Clusters, b.Clusters) && equalMaps(a.Endpoints, b.Endpoints)
}

func equalMaps[M proto.Message](a, b map[string]M) bool {
	return maps.EqualFunc(a, b, func(x, y M) bool { return proto.Equal(x, y) })
}
