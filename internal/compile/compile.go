// Package compile turns the mesh model into the xDS resources of one proxy.
// It is a pure function: no I/O, no clock, deterministic output. What each
// resource contains is fixed by the "xDS contract" of ARCHITECTURE.md.
//
//	Input (workloads, VirtualServices, DestinationRules)
//	   │ index: services → workloads, host → VirtualService, host → subsets
//	   ▼
//	Proxy(in, "reviews-v1")
//	   ├─ inbound.go   inbound|<port>                      listener + STATIC cluster
//	   ├─ outbound.go  outbound|<port>|<service>           listener per upstream
//	   ├─ routes.go    outbound|<port>|<service>           RouteConfiguration (VirtualService http[])
//	   └─ clusters.go  outbound|<port>|<subset>|<service>  EDS clusters + ClusterLoadAssignments
package compile

import (
	"fmt"
	"sort"

	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// Input is a snapshot of the mesh model.
type Input struct {
	TrustDomain      string
	Workloads        []*model.Workload // registered workloads, with Status (Healthy) filled by the control plane
	VirtualServices  []*model.VirtualService
	DestinationRules []*model.DestinationRule
}

// defaultPort and defaultProtocol are used for a service nobody serves yet.
const (
	defaultPort     = 80
	defaultProtocol = model.ProtocolHTTP
)

// index is the Input arranged for lookups, every slice in a stable order.
type index struct {
	trustDomain string
	byService   map[model.ServiceRef][]*model.Workload
	vs          []*model.VirtualService
	dr          []*model.DestinationRule
}

func newIndex(in *Input) *index {
	ix := &index{trustDomain: in.TrustDomain, byService: map[model.ServiceRef][]*model.Workload{}}
	if ix.trustDomain == "" {
		ix.trustDomain = model.DefaultTrustDomain
	}
	for _, w := range in.Workloads {
		if w == nil {
			continue
		}
		ref := model.ServiceRef{Namespace: w.NamespaceOrDefault(), Name: w.Spec.Service}
		ix.byService[ref] = append(ix.byService[ref], w)
	}
	for _, ws := range ix.byService {
		sort.Slice(ws, func(i, j int) bool { return ws[i].Name < ws[j].Name })
	}
	for _, v := range in.VirtualServices {
		if v != nil {
			ix.vs = append(ix.vs, v)
		}
	}
	sort.Slice(ix.vs, func(i, j int) bool { return ix.vs[i].Key().String() < ix.vs[j].Key().String() })
	for _, d := range in.DestinationRules {
		if d != nil {
			ix.dr = append(ix.dr, d)
		}
	}
	sort.Slice(ix.dr, func(i, j int) bool { return ix.dr[i].Key().String() < ix.dr[j].Key().String() })
	return ix
}

// virtualService returns the VirtualService that routes svc: the first, by
// namespace/name, with a host naming it; nil when none does.
func (ix *index) virtualService(svc model.ServiceRef) *model.VirtualService {
	for _, v := range ix.vs {
		for _, h := range v.Spec.Hosts {
			if model.ResolveHost(h, v.NamespaceOrDefault()) == svc {
				return v
			}
		}
	}
	return nil
}

// subset is a named label selector of a service's workloads.
type subset struct {
	name   string
	labels map[string]string
}

// subsets returns the subsets DestinationRules define for svc, sorted by
// name; when several rules define a name, the first rule wins.
func (ix *index) subsets(svc model.ServiceRef) []subset {
	seen := map[string]bool{}
	var out []subset
	for _, d := range ix.dr {
		if model.ResolveHost(d.Spec.Host, d.NamespaceOrDefault()) != svc {
			continue
		}
		for _, s := range d.Spec.Subsets {
			if s.Name == "" || seen[s.Name] {
				continue
			}
			seen[s.Name] = true
			out = append(out, subset{name: s.Name, labels: s.Labels})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// firstPort is the first declared port of the service's first workload.
func (ix *index) firstPort(svc model.ServiceRef) uint32 {
	for _, w := range ix.byService[svc] {
		if len(w.Spec.Ports) > 0 {
			return w.Spec.Ports[0].Port
		}
	}
	return defaultPort
}

// protocol is the protocol the service's workloads declare for port.
func (ix *index) protocol(svc model.ServiceRef, port uint32) model.Protocol {
	for _, w := range ix.byService[svc] {
		for _, p := range w.Spec.Ports {
			if p.Port == port && p.Protocol.Valid() {
				return p.Protocol
			}
		}
	}
	return defaultProtocol
}

// identity is the SPIFFE ID a workload's certificate carries.
func (ix *index) identity(w *model.Workload) string {
	return model.SPIFFEID(ix.trustDomain, w.NamespaceOrDefault(), w.Spec.ServiceAccountOrDefault())
}

// allowedSANs are the identities allowed to serve svc (secure naming):
// those of its workloads, or its default identity when none is registered.
func (ix *index) allowedSANs(svc model.ServiceRef) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range ix.byService[svc] {
		if id := ix.identity(w); !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		out = append(out, model.SPIFFEID(ix.trustDomain, svc.Namespace, svc.Name))
	}
	sort.Strings(out)
	return out
}

// Proxy returns the complete xDS configuration for the workload named
// workload (namespace default), as the xDS contract in ARCHITECTURE.md says:
// inbound listeners and clusters for its ports; for each upstream an
// outbound listener, its RouteConfiguration, the clusters of every service
// its routes reach (the whole service and each DestinationRule subset), and
// their ClusterLoadAssignments. Only what this workload talks to is included.
//
// An upstream without a port uses the service's first declared port, or 80
// when no workload serves the service yet; protocols come from the target
// service's port declarations (http when unknown). An endpoint is HEALTHY
// only when its workload's Status says so. When several VirtualServices
// route a host, the first by namespace/name wins (CheckReferences warns).
func Proxy(in *Input, workload string) (*resources.Set, error) {
	if in == nil {
		return nil, fmt.Errorf("compile %s: nil input", workload)
	}
	var self *model.Workload
	for _, w := range in.Workloads {
		if w != nil && w.Name == workload && w.NamespaceOrDefault() == model.DefaultNamespace {
			self = w
			break
		}
	}
	if self == nil {
		return nil, fmt.Errorf("compile %s: workload not registered", workload)
	}
	c := &compiler{ix: newIndex(in), set: resources.NewSet()}
	for _, p := range self.Spec.Ports {
		if err := c.inbound(p); err != nil {
			return nil, fmt.Errorf("compile %s: inbound port %d: %w", workload, p.Port, err)
		}
	}
	for _, u := range self.Spec.Upstreams {
		svc := model.ServiceRef{Namespace: self.NamespaceOrDefault(), Name: u.Service}
		if err := c.outbound(svc, u); err != nil {
			return nil, fmt.Errorf("compile %s: upstream %s: %w", workload, u.Service, err)
		}
	}
	return c.set, nil
}

// compiler accumulates the resources of one proxy.
type compiler struct {
	ix  *index
	set *resources.Set
}

// Resource names, following Istio's scheme.
func inboundName(port uint32) string { return fmt.Sprintf("inbound|%d", port) }

func outboundListenerName(port uint32, svc string) string {
	return fmt.Sprintf("outbound|%d|%s", port, svc)
}

// ClusterName is the name of an outbound cluster; subset is "" for the whole service.
func ClusterName(port uint32, subset, svc string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, svc)
}
