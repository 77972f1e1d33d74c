package resources

import (
	"bytes"
	"encoding/json"
	"fmt"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// ConfigDump encodes set as an Envoy admin /config_dump, the shape a
// sidecar's admin port serves: {"configs": [listeners, routes, clusters,
// endpoints]}, every list sorted by name.
func ConfigDump(set *Set) ([]byte, error) {
	var (
		ls adminv3.ListenersConfigDump
		rs adminv3.RoutesConfigDump
		cs adminv3.ClustersConfigDump
		es adminv3.EndpointsConfigDump
	)
	for _, name := range SortedKeys(set.Listeners) {
		a, err := anypb.New(set.Listeners[name])
		if err != nil {
			return nil, fmt.Errorf("config dump: listener %q: %w", name, err)
		}
		ls.DynamicListeners = append(ls.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name: name, ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{Listener: a}})
	}
	for _, name := range SortedKeys(set.Routes) {
		a, err := anypb.New(set.Routes[name])
		if err != nil {
			return nil, fmt.Errorf("config dump: route configuration %q: %w", name, err)
		}
		rs.DynamicRouteConfigs = append(rs.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{RouteConfig: a})
	}
	for _, name := range SortedKeys(set.Clusters) {
		a, err := anypb.New(set.Clusters[name])
		if err != nil {
			return nil, fmt.Errorf("config dump: cluster %q: %w", name, err)
		}
		cs.DynamicActiveClusters = append(cs.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{Cluster: a})
	}
	for _, name := range SortedKeys(set.Endpoints) {
		a, err := anypb.New(set.Endpoints[name])
		if err != nil {
			return nil, fmt.Errorf("config dump: cluster load assignment %q: %w", name, err)
		}
		es.DynamicEndpointConfigs = append(es.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{EndpointConfig: a})
	}
	var dump adminv3.ConfigDump
	for _, m := range []proto.Message{&ls, &rs, &cs, &es} {
		a, err := anypb.New(m)
		if err != nil {
			return nil, fmt.Errorf("config dump: %w", err)
		}
		dump.Configs = append(dump.Configs, a)
	}
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&dump)
	if err != nil {
		return nil, fmt.Errorf("config dump: marshal: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil { // protojson's spacing varies between builds
		return nil, fmt.Errorf("config dump: indent: %w", err)
	}
	return out.Bytes(), nil
}
