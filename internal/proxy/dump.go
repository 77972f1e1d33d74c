package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// ConfigDump returns the applied resource set as JSON in Envoy's admin
// /config_dump shape: {"configs":[listeners, routes, clusters, endpoints]},
// each resource list sorted by name. Before the first Update the lists are
// empty.
func (p *Proxy) ConfigDump() ([]byte, error) {
	set := resources.NewSet()
	if cfg := p.cfg.Load(); cfg != nil {
		set = cfg.set
	}
	var (
		ls adminv3.ListenersConfigDump
		rs adminv3.RoutesConfigDump
		cs adminv3.ClustersConfigDump
		es adminv3.EndpointsConfigDump
	)
	for _, name := range resources.SortedKeys(set.Listeners) {
		a, err := anypb.New(set.Listeners[name])
		if err != nil {
			return nil, fmt.Errorf("config dump: listener %q: %w", name, err)
		}
		ls.DynamicListeners = append(ls.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name:        name,
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{Listener: a},
		})
	}
	for _, name := range resources.SortedKeys(set.Routes) {
		a, err := anypb.New(set.Routes[name])
		if err != nil {
			return nil, fmt.Errorf("config dump: route configuration %q: %w", name, err)
		}
		rs.DynamicRouteConfigs = append(rs.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{RouteConfig: a})
	}
	for _, name := range resources.SortedKeys(set.Clusters) {
		a, err := anypb.New(set.Clusters[name])
		if err != nil {
			return nil, fmt.Errorf("config dump: cluster %q: %w", name, err)
		}
		cs.DynamicActiveClusters = append(cs.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{Cluster: a})
	}
	for _, name := range resources.SortedKeys(set.Endpoints) {
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
	// protojson randomizes whitespace between builds; normalize it.
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return nil, fmt.Errorf("config dump: indent: %w", err)
	}
	return out.Bytes(), nil
}

// WriteStats writes every counter as "name value\n", sorted by name:
// listener.<name>.* and cluster.<name>.* with requests, responses by class,
// upstream connect failures, TLS handshake failures and active connections.
func (p *Proxy) WriteStats(w io.Writer) { p.stats.write(w) }
