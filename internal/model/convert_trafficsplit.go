package model

import (
	"slices"
	"strconv"
)

// VirtualService converts the split into a VirtualService for its root
// host: requests go to the backend services (the whole services, in the
// split's namespace) with the split's relative weights. SMI requires a
// backend to serve the root's port number, so the destinations name it:
// rootPorts are the root service's ports when known; with several, the
// VirtualService has one rule per port (match.port). It returns nil for an
// invalid split or one limited by HTTPRouteGroup matches (not implemented).
func (t *TrafficSplit) VirtualService(rootPorts []uint32) *VirtualService {
	if len(t.Spec.Matches) > 0 || len(t.Spec.Backends) == 0 {
		return nil
	}
	if _, err := splitWeights(t); err != nil {
		return nil
	}
	vs := convertedVS(t, t.Spec.Service)
	ports := slices.Clone(rootPorts)
	slices.Sort(ports)
	ports = slices.Compact(ports)
	if len(ports) <= 1 {
		var port uint32
		if len(ports) == 1 {
			port = ports[0]
		}
		vs.Spec.HTTP = []HTTPRoute{{Route: t.destinations(port)}}
		return vs
	}
	for _, p := range ports {
		vs.Spec.HTTP = append(vs.Spec.HTTP, HTTPRoute{
			Name:  "port " + strconv.FormatUint(uint64(p), 10),
			Match: []HTTPMatchRequest{{Port: p}},
			Route: t.destinations(p),
		})
	}
	return vs
}

// destinations are the split's backends on port (0: the backend's default
// port), weighted. Backends of weight zero are kept: the compiler drops them.
func (t *TrafficSplit) destinations(port uint32) []HTTPRouteDestination {
	weights, err := splitWeights(t)
	if err != nil {
		return nil
	}
	ns := t.NamespaceOrDefault()
	out := make([]HTTPRouteDestination, len(t.Spec.Backends))
	for i, b := range t.Spec.Backends {
		d := Destination{Host: b.Service + "." + ns} // the split's namespace, wherever the root is
		if port != 0 {
			d.Port = &PortSelector{Number: port}
		}
		out[i] = HTTPRouteDestination{Destination: d, Weight: int32(weights[i])}
	}
	return out
}
