package client

import (
	"bytes"
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

// resourceTypes are the four types the client accepts, in the order a set
// is decoded.
var resourceTypes = []string{resources.ListenerType, resources.RouteType, resources.ClusterType, resources.EndpointType}

// resource is one accepted resource as the client keeps it: the wire
// encoding the control plane sent, and the names it references. The decoded
// form lives only while the handler's Update runs: decoded, a 100-service
// config holds ~740 kB of heap against ~120 kB of wire bytes, and the proxy
// keeps its own translation.
type resource struct {
	raw  []byte
	refs []string // Listener: RDS route_config_names of its HCM filters; EDS Cluster: its EDS service name
}

// typeMap is the accepted resources of one type, by name.
type typeMap = map[string]resource

// accepted is the configuration the client last accepted, per type. It
// survives reconnects, so the handler keeps its last good config while the
// control plane is away.
type accepted struct {
	res       map[string]typeMap // type URL → resources; every type present
	versions  map[string]string  // type URL → last accepted version
	received  map[string]bool    // type URL → a response was accepted once
	delivered bool               // the handler accepted an Update once
}

func newAccepted() *accepted {
	a := &accepted{res: map[string]typeMap{}, versions: map[string]string{}, received: map[string]bool{}}
	for _, t := range resourceTypes {
		a.res[t] = typeMap{}
	}
	return a
}

// candidate is the state that results from accepting one response.
type candidate struct {
	typeURL string
	res     map[string]typeMap
	fresh   map[string]proto.Message // the response's resources, decoded once
}

// candidate returns the state that results from accepting resp: the current
// one with resp's type replaced (Listeners, Clusters: the full state; Routes,
// Endpoints: the named resources updated), and Routes and Endpoints no longer
// referenced dropped. The current state is not modified.
func (a *accepted) candidate(resp *discoveryv3.DiscoveryResponse) (*candidate, error) {
	typeURL := resp.GetTypeUrl()
	if !slices.Contains(resourceTypes, typeURL) {
		return nil, fmt.Errorf("unexpected type %q", typeURL)
	}
	got, fresh, err := decodeAll(resp)
	if err != nil {
		return nil, err
	}
	next := &candidate{typeURL: typeURL, res: maps.Clone(a.res), fresh: fresh}
	switch typeURL {
	case resources.ListenerType, resources.ClusterType:
		next.res[typeURL] = got
	default:
		merged := maps.Clone(a.res[typeURL])
		maps.Copy(merged, got)
		next.res[typeURL] = merged
	}
	next.res[typeURL] = pack(next.res[typeURL])
	next.res[resources.RouteType] = referenced(next.res[resources.RouteType], next.res[resources.ListenerType])
	next.res[resources.EndpointType] = referenced(next.res[resources.EndpointType], next.res[resources.ClusterType])
	return next, nil
}

// referenced returns the resources of m that the resources of by
// reference: m itself when that is all of them, else a new packed map (m
// belongs to the accepted state).
func referenced(m, by typeMap) typeMap {
	want := map[string]bool{}
	for _, r := range by {
		for _, n := range r.refs {
			want[n] = true
		}
	}
	out := make(typeMap, len(m))
	for name, r := range m {
		if want[name] {
			out[name] = r
		}
	}
	if len(out) == len(m) {
		return m
	}
	return pack(out)
}

// pack copies the encodings of m into one allocation, so a type's resources
// cost one block of heap rather than one per resource, spread among the
// garbage of the response they came in (which then keeps whole spans in
// use), and an earlier response's block is not kept alive by the few
// resources a later one left unchanged. m is modified.
func pack(m typeMap) typeMap {
	size := 0
	for _, r := range m {
		size += len(r.raw)
	}
	buf := make([]byte, 0, size)
	for name, r := range m {
		start := len(buf)
		buf = append(buf, r.raw...)
		r.raw = buf[start:len(buf):len(buf)]
		m[name] = r
	}
	return m
}

// decodeAll decodes the resources of resp, keyed by name: what the client
// keeps, and the decoded messages.
func decodeAll(resp *discoveryv3.DiscoveryResponse) (typeMap, map[string]proto.Message, error) {
	out := make(typeMap, len(resp.GetResources()))
	fresh := make(map[string]proto.Message, len(resp.GetResources()))
	for i, res := range resp.GetResources() {
		if res.GetTypeUrl() == resourceWrapURL {
			wrapped := &discoveryv3.Resource{}
			if err := res.UnmarshalTo(wrapped); err != nil {
				return nil, nil, fmt.Errorf("resources[%d]: %w", i, err)
			}
			res = wrapped.GetResource()
		}
		if res.GetTypeUrl() != resp.GetTypeUrl() {
			return nil, nil, fmt.Errorf("resources[%d]: type %q in a %q response", i, res.GetTypeUrl(), resp.GetTypeUrl())
		}
		m, name, err := decode(resp.GetTypeUrl(), res.GetValue())
		if err != nil {
			return nil, nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		if name == "" {
			return nil, nil, fmt.Errorf("resources[%d]: no name", i)
		}
		if _, dup := out[name]; dup {
			return nil, nil, fmt.Errorf("resources[%d]: duplicate resource %q", i, name)
		}
		refs, err := references(m)
		if err != nil {
			return nil, nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		out[name] = resource{raw: res.GetValue(), refs: refs}
		fresh[name] = m
	}
	return out, fresh, nil
}

// decode unmarshals one resource of type typeURL and returns it with its name.
func decode(typeURL string, raw []byte) (proto.Message, string, error) {
	var (
		m    proto.Message
		name func() string
	)
	switch typeURL {
	case resources.ListenerType:
		l := &listenerv3.Listener{}
		m, name = l, l.GetName
	case resources.RouteType:
		r := &routev3.RouteConfiguration{}
		m, name = r, r.GetName
	case resources.ClusterType:
		c := &clusterv3.Cluster{}
		m, name = c, c.GetName
	case resources.EndpointType:
		e := &endpointv3.ClusterLoadAssignment{}
		m, name = e, e.GetClusterName
	default:
		return nil, "", fmt.Errorf("unexpected type %q", typeURL)
	}
	if err := proto.Unmarshal(raw, m); err != nil {
		return nil, "", err
	}
	return m, name(), nil
}

// references returns the names a resource makes the client subscribe to:
// a Listener's RDS route_config_names (its http_connection_manager filters),
// an EDS Cluster's service name (its own name when unset).
func references(m proto.Message) ([]string, error) {
	switch r := m.(type) {
	case *listenerv3.Listener:
		return routeNames(r)
	case *clusterv3.Cluster:
		if r.GetType() != clusterv3.Cluster_EDS {
			return nil, nil
		}
		if sn := r.GetEdsClusterConfig().GetServiceName(); sn != "" {
			return []string{sn}, nil
		}
		return []string{r.GetName()}, nil
	}
	return nil, nil
}

// routeNames returns, sorted, the RDS route_config_names referenced by the
// http_connection_manager filters of l.
func routeNames(l *listenerv3.Listener) ([]string, error) {
	var names []string
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
				return nil, fmt.Errorf("listener %q: filter %q: %w", l.GetName(), f.GetName(), err)
			}
			if name := hcm.GetRds().GetRouteConfigName(); name != "" && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// allRefs returns, sorted, the names the resources of m reference.
func allRefs(m typeMap) []string {
	seen := map[string]bool{}
	for _, r := range m {
		for _, n := range r.refs {
			seen[n] = true
		}
	}
	return resources.SortedKeys(seen)
}

// changed reports whether next differs from the accepted state. Equal bytes
// are equal resources; different bytes are compared decoded, since an
// encoding need not be canonical.
func (a *accepted) changed(next *candidate) (bool, error) {
	for _, t := range resourceTypes {
		cur, nxt := a.res[t], next.res[t]
		if len(cur) != len(nxt) {
			return true, nil
		}
		for name, r := range nxt {
			old, ok := cur[name]
			if !ok {
				return true, nil
			}
			if bytes.Equal(old.raw, r.raw) {
				continue
			}
			x, _, err := decode(t, old.raw)
			if err != nil {
				return false, fmt.Errorf("accepted %s %q: %w", t, name, err)
			}
			y, err := next.message(t, name)
			if err != nil {
				return false, err
			}
			if !proto.Equal(x, y) {
				return true, nil
			}
		}
	}
	return false, nil
}

// message returns the decoded resource name of type t: the response's own,
// else decoded from the bytes kept.
func (c *candidate) message(t, name string) (proto.Message, error) {
	if t == c.typeURL {
		if m := c.fresh[name]; m != nil {
			return m, nil
		}
	}
	m, _, err := decode(t, c.res[t][name].raw)
	if err != nil {
		return nil, fmt.Errorf("accepted %s %q: %w", t, name, err)
	}
	return m, nil
}

// set decodes the candidate into the complete set the handler gets.
func (c *candidate) set() (*resources.Set, error) {
	set := &resources.Set{}
	var err error
	if set.Listeners, err = decodeType[*listenerv3.Listener](c, resources.ListenerType); err != nil {
		return nil, err
	}
	if set.Routes, err = decodeType[*routev3.RouteConfiguration](c, resources.RouteType); err != nil {
		return nil, err
	}
	if set.Clusters, err = decodeType[*clusterv3.Cluster](c, resources.ClusterType); err != nil {
		return nil, err
	}
	if set.Endpoints, err = decodeType[*endpointv3.ClusterLoadAssignment](c, resources.EndpointType); err != nil {
		return nil, err
	}
	return set, nil
}

func decodeType[M proto.Message](c *candidate, t string) (map[string]M, error) {
	out := make(map[string]M, len(c.res[t]))
	for name := range c.res[t] {
		m, err := c.message(t, name)
		if err != nil {
			return nil, err
		}
		out[name] = m.(M)
	}
	return out, nil
}

// encodings returns the encodings of the candidate's resources by type and
// name (EncodedHandler).
func (c *candidate) encodings() map[string]map[string][]byte {
	out := make(map[string]map[string][]byte, len(c.res))
	for t, m := range c.res {
		enc := make(map[string][]byte, len(m))
		for name, r := range m {
			enc[name] = r.raw
		}
		out[t] = enc
	}
	return out
}

// commit accepts next at version for its type. When it changed nothing
// (changed false), the resources kept are the accepted ones, equal to
// next's: they are the ones the handler may share (EncodedHandler).
func (a *accepted) commit(next *candidate, version string, changed bool) {
	if changed {
		a.res = next.res
	}
	a.versions[next.typeURL] = version
	a.received[next.typeURL] = true
}

// synced reports whether CDS and LDS were accepted and every EDS and RDS name
// they reference is present.
func (a *accepted) synced() bool {
	if !a.received[resources.ClusterType] || !a.received[resources.ListenerType] {
		return false
	}
	for _, n := range allRefs(a.res[resources.ClusterType]) {
		if _, ok := a.res[resources.EndpointType][n]; !ok {
			return false
		}
	}
	for _, n := range allRefs(a.res[resources.ListenerType]) {
		if _, ok := a.res[resources.RouteType][n]; !ok {
			return false
		}
	}
	return true
}
