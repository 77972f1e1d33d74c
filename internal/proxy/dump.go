package proxy

import (
	"fmt"
	"io"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// ConfigDump returns the applied resource set as JSON in Envoy's admin
// /config_dump shape: {"configs":[listeners, routes, clusters, endpoints]},
// each resource list sorted by name. Before the first Update the lists are
// empty.
func (p *Proxy) ConfigDump() ([]byte, error) {
	set := resources.NewSet()
	if cfg := p.cfg.Load(); cfg != nil {
		var err error
		if set, err = cfg.applied.decode(); err != nil {
			return nil, fmt.Errorf("config dump: %w", err)
		}
	}
	return resources.ConfigDump(set)
}

// WriteStats writes every counter as "name value\n", sorted by name:
// listener.<name>.* and cluster.<name>.* with requests, responses by class,
// upstream connect failures, TLS handshake failures and active connections.
func (p *Proxy) WriteStats(w io.Writer) { p.stats.write(w) }

// appliedSet is the resource set a runtimeConfig was built from, as
// /config_dump needs it: each resource's wire encoding, by name. Requests
// use the translation only, so the decoded set is dropped once built: with
// 100 services it holds ~740 kB of heap, encoded ~120 kB.
type appliedSet struct {
	listeners, routes, clusters, endpoints map[string][]byte
}

// appliedFrom returns set's wire form: enc when it has exactly set's
// resources, else set encoded.
func appliedFrom(set *resources.Set, enc map[string]map[string][]byte) (*appliedSet, error) {
	a := &appliedSet{
		listeners: enc[resources.ListenerType],
		routes:    enc[resources.RouteType],
		clusters:  enc[resources.ClusterType],
		endpoints: enc[resources.EndpointType],
	}
	if sameNames(a.listeners, set.Listeners) && sameNames(a.routes, set.Routes) &&
		sameNames(a.clusters, set.Clusters) && sameNames(a.endpoints, set.Endpoints) {
		return a, nil
	}
	return encodeSet(set)
}

func sameNames[M any](enc map[string][]byte, m map[string]M) bool {
	if enc == nil || len(enc) != len(m) {
		return false
	}
	for name := range m {
		if _, ok := enc[name]; !ok {
			return false
		}
	}
	return true
}

func encodeSet(set *resources.Set) (*appliedSet, error) {
	var (
		a   appliedSet
		err error
	)
	if a.listeners, err = encodeMap("listener", set.Listeners); err != nil {
		return nil, err
	}
	if a.routes, err = encodeMap("route configuration", set.Routes); err != nil {
		return nil, err
	}
	if a.clusters, err = encodeMap("cluster", set.Clusters); err != nil {
		return nil, err
	}
	if a.endpoints, err = encodeMap("cluster load assignment", set.Endpoints); err != nil {
		return nil, err
	}
	return &a, nil
}

// encodeMap encodes the resources of m into one block of memory (one
// allocation per type rather than one per resource).
func encodeMap[M proto.Message](kind string, m map[string]M) (map[string][]byte, error) {
	var (
		buf  []byte
		ends = make(map[string]int, len(m))
		err  error
	)
	for _, name := range resources.SortedKeys(m) {
		if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf, m[name]); err != nil {
			return nil, fmt.Errorf("%s %q: encode: %w", kind, name, err)
		}
		ends[name] = len(buf)
	}
	if cap(buf)-len(buf) > len(buf)/8 {
		buf = slices.Clone(buf) // appending left up to twice the space needed
	}
	out := make(map[string][]byte, len(m))
	start := 0
	for _, name := range resources.SortedKeys(m) {
		end := ends[name]
		out[name] = buf[start:end:end]
		start = end
	}
	return out, nil
}

// decode returns the set again (for a config dump).
func (a *appliedSet) decode() (*resources.Set, error) {
	var (
		set resources.Set
		err error
	)
	if set.Listeners, err = decodeMap("listener", a.listeners, func() *listenerv3.Listener { return &listenerv3.Listener{} }); err != nil {
		return nil, err
	}
	if set.Routes, err = decodeMap("route configuration", a.routes, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} }); err != nil {
		return nil, err
	}
	if set.Clusters, err = decodeMap("cluster", a.clusters, func() *clusterv3.Cluster { return &clusterv3.Cluster{} }); err != nil {
		return nil, err
	}
	if set.Endpoints, err = decodeMap("cluster load assignment", a.endpoints, func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }); err != nil {
		return nil, err
	}
	return &set, nil
}

func decodeMap[M proto.Message](kind string, m map[string][]byte, newM func() M) (map[string]M, error) {
	out := make(map[string]M, len(m))
	for name, b := range m {
		r := newM()
		if err := proto.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("%s %q: decode: %w", kind, name, err)
		}
		out[name] = r
	}
	return out, nil
}
