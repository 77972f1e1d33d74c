// Package compile turns the mesh model into the xDS resources of one proxy.
// It is a pure function: no I/O, no clock, deterministic output. What each
// resource contains is fixed by the "xDS contract" of ARCHITECTURE.md.
//
//	Input (workloads, VirtualServices, DestinationRules, front ends, rate limits, security policies)
//	   │ NewIndex: services → workloads, host → VirtualService (Istio's, else
//	   │ converted from a TrafficSplit, ServiceProfile or HTTPRoute),
//	   │ host → DestinationRules, service → RateLimits, EnvoyFilter limits and buffers,
//	   │ namespace → PeerAuthentications, AuthorizationPolicies, RequestAuthentications
//	   ▼
//	Proxy(in, "reviews-v1")
//	   ├─ inbound.go   inbound|<port>                      listener (chains by mTLS mode, jwt_authn, rbac:
//	   │                                                   security*.go) + STATIC cluster (+ ratelimit.go)
//	   ├─ outbound.go  outbound|<port>|<service>           listener per upstream
//	   ├─ routes.go    outbound|<port>|<service>           RouteConfiguration (VirtualService http[])
//	   └─ clusters.go  outbound|<port>|<subset>|<service>  EDS clusters (plaintext to DISABLE servers)
//	                                                       + ClusterLoadAssignments
package compile

import (
	"fmt"
	"sort"
	"sync"

	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// Input is a snapshot of the mesh model.
type Input struct {
	TrustDomain      string
	Workloads        []*model.Workload // registered workloads, with Status (Healthy) filled by the control plane
	VirtualServices  []*model.VirtualService
	DestinationRules []*model.DestinationRule
	// Front ends, converted by NewIndex into VirtualServices and
	// DestinationRules (model.FrontEnds.Convert), and local rate limits.
	TrafficSplits   []*model.TrafficSplit
	ServiceProfiles []*model.ServiceProfile
	HTTPRoutes      []*model.GatewayHTTPRoute
	RateLimits      []*model.RateLimit
	EnvoyFilters    []*model.EnvoyFilter
	// Security policies (security*.go).
	PeerAuthentications    []*model.PeerAuthentication
	AuthorizationPolicies  []*model.AuthorizationPolicy
	RequestAuthentications []*model.RequestAuthentication
}

// Add puts obj into the slice of its kind; it reports false for a kind
// compile does not read (Mesh).
func (in *Input) Add(obj model.Object) bool {
	switch o := obj.(type) {
	case *model.Workload:
		in.Workloads = append(in.Workloads, o)
	case *model.VirtualService:
		in.VirtualServices = append(in.VirtualServices, o)
	case *model.DestinationRule:
		in.DestinationRules = append(in.DestinationRules, o)
	case *model.TrafficSplit:
		in.TrafficSplits = append(in.TrafficSplits, o)
	case *model.ServiceProfile:
		in.ServiceProfiles = append(in.ServiceProfiles, o)
	case *model.GatewayHTTPRoute:
		in.HTTPRoutes = append(in.HTTPRoutes, o)
	case *model.RateLimit:
		in.RateLimits = append(in.RateLimits, o)
	case *model.EnvoyFilter:
		in.EnvoyFilters = append(in.EnvoyFilters, o)
	case *model.PeerAuthentication:
		in.PeerAuthentications = append(in.PeerAuthentications, o)
	case *model.AuthorizationPolicy:
		in.AuthorizationPolicies = append(in.AuthorizationPolicies, o)
	case *model.RequestAuthentication:
		in.RequestAuthentications = append(in.RequestAuthentications, o)
	default:
		return false
	}
	return true
}

// defaultPort and defaultProtocol are used for a service nobody serves yet.
const (
	defaultPort     = 80
	defaultProtocol = model.ProtocolHTTP
)

// Index is an Input arranged for lookups, every slice in a stable order.
// Build it once with NewIndex and compile any number of proxies from it:
// the cost of one proxy is then proportional to what it talks to, not to
// the size of the mesh. An Index is read-only and safe for concurrent use;
// it keeps pointers into the Input, which must not change while it is used.
// Sets compiled from one Index share their cluster and endpoint resources:
// they must not be modified.
type Index struct {
	mu    sync.Mutex
	built map[target][]builtCluster // clusters of a service port, built on first use

	trustDomain string
	byName      map[string]*model.Workload // workloads of the default namespace
	byService   map[model.ServiceRef][]*model.Workload
	vsByHost    map[model.ServiceRef]*model.VirtualService    // the first, by namespace/name, naming the host; else a converted one
	drByHost    map[model.ServiceRef][]*model.DestinationRule // by namespace/name, then converted ones
	rateLimits  map[model.ServiceRef][]*model.RateLimit       // valid ones, by namespace/name
	filterRLs   []envoyFilterLimits                           // EnvoyFilters' rate limits, in precedence order
	filterBufs  []envoyFilterBuffers                          // EnvoyFilters' request buffering, in precedence order (buffer.go)
	sec         securityIndex                                 // security policies (security.go)
}

// NewIndex arranges in for lookups.
func NewIndex(in *Input) *Index {
	ix := &Index{
		built:       map[target][]builtCluster{},
		trustDomain: in.TrustDomain,
		byName:      make(map[string]*model.Workload, len(in.Workloads)),
		byService:   map[model.ServiceRef][]*model.Workload{},
		vsByHost:    map[model.ServiceRef]*model.VirtualService{},
		drByHost:    map[model.ServiceRef][]*model.DestinationRule{},
	}
	if ix.trustDomain == "" {
		ix.trustDomain = model.DefaultTrustDomain
	}
	for _, w := range in.Workloads {
		if w == nil {
			continue
		}
		ns := w.NamespaceOrDefault()
		if _, dup := ix.byName[w.Name]; !dup && ns == model.DefaultNamespace {
			ix.byName[w.Name] = w
		}
		ref := model.ServiceRef{Namespace: ns, Name: w.Spec.Service}
		ix.byService[ref] = append(ix.byService[ref], w)
	}
	for _, ws := range ix.byService {
		sort.Slice(ws, func(i, j int) bool { return ws[i].Name < ws[j].Name })
	}
	var vss []*model.VirtualService
	for _, v := range in.VirtualServices {
		if v != nil {
			vss = append(vss, v)
		}
	}
	sort.Slice(vss, func(i, j int) bool { return vss[i].Key().String() < vss[j].Key().String() })
	for _, v := range vss {
		for _, h := range v.Spec.Hosts {
			ref := model.ResolveHost(h, v.NamespaceOrDefault())
			if _, taken := ix.vsByHost[ref]; !taken {
				ix.vsByHost[ref] = v
			}
		}
	}
	var drs []*model.DestinationRule
	for _, d := range in.DestinationRules {
		if d != nil {
			drs = append(drs, d)
		}
	}
	sort.Slice(drs, func(i, j int) bool { return drs[i].Key().String() < drs[j].Key().String() })
	for _, d := range drs {
		ref := model.ResolveHost(d.Spec.Host, d.NamespaceOrDefault())
		ix.drByHost[ref] = append(ix.drByHost[ref], d)
	}
	ix.addFrontEnds(in)      // frontends.go
	ix.addRateLimits(in)     // ratelimit.go
	ix.addRequestBuffers(in) // buffer.go
	ix.addSecurity(in)       // security.go
	return ix
}

// virtualService returns the VirtualService that routes svc: the first, by
// namespace/name, with a host naming it; nil when none does.
func (ix *Index) virtualService(svc model.ServiceRef) *model.VirtualService {
	return ix.vsByHost[svc]
}

// subset is a named label selector of a service's workloads.
type subset struct {
	name   string
	labels map[string]string
}

// subsets returns the subsets DestinationRules define for svc, sorted by
// name; when several rules define a name, the first rule wins.
func (ix *Index) subsets(svc model.ServiceRef) []subset {
	seen := map[string]bool{}
	var out []subset
	for _, d := range ix.drByHost[svc] {
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
func (ix *Index) firstPort(svc model.ServiceRef) uint32 {
	for _, w := range ix.byService[svc] {
		if len(w.Spec.Ports) > 0 {
			return w.Spec.Ports[0].Port
		}
	}
	return defaultPort
}

// protocol is the protocol the service's workloads declare for port.
func (ix *Index) protocol(svc model.ServiceRef, port uint32) model.Protocol {
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
func (ix *Index) identity(w *model.Workload) string {
	return model.SPIFFEID(ix.trustDomain, w.NamespaceOrDefault(), w.Spec.ServiceAccountOrDefault())
}

// allowedSANs are the identities allowed to serve svc (secure naming):
// those of its workloads, or its default identity when none is registered.
func (ix *Index) allowedSANs(svc model.ServiceRef) []string {
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
	set, _, err := NewIndex(in).Compile(workload)
	return set, err
}

// Compile is Proxy over an Index. It also returns the services the
// configuration depends on, sorted: the workload's upstreams and every
// service their routes reach. A change to one of those services' workloads,
// VirtualServices or DestinationRules (or to the workload itself) can change
// the configuration; nothing else can.
func (ix *Index) Compile(workload string) (*resources.Set, []model.ServiceRef, error) {
	self := ix.byName[workload]
	if self == nil {
		return nil, nil, fmt.Errorf("compile %s: workload not registered", workload)
	}
	c := &compiler{ix: ix, self: self, set: resources.NewSet(), deps: map[model.ServiceRef]bool{}}
	for _, p := range self.Spec.Ports {
		if err := c.inbound(p); err != nil {
			return nil, nil, fmt.Errorf("compile %s: inbound port %d: %w", workload, p.Port, err)
		}
	}
	for _, u := range self.Spec.Upstreams {
		svc := model.ServiceRef{Namespace: self.NamespaceOrDefault(), Name: u.Service}
		c.deps[svc] = true
		if err := c.outbound(svc, u); err != nil {
			return nil, nil, fmt.Errorf("compile %s: upstream %s: %w", workload, u.Service, err)
		}
	}
	deps := make([]model.ServiceRef, 0, len(c.deps))
	for ref := range c.deps {
		deps = append(deps, ref)
	}
	sort.Slice(deps, func(i, j int) bool {
		if deps[i].Namespace != deps[j].Namespace {
			return deps[i].Namespace < deps[j].Namespace
		}
		return deps[i].Name < deps[j].Name
	})
	return c.set, deps, nil
}

// compiler accumulates the resources of one proxy.
type compiler struct {
	ix   *Index
	self *model.Workload // the proxy's workload (sourceLabels, sourceNamespace)
	set  *resources.Set
	deps map[model.ServiceRef]bool // services this proxy's configuration depends on
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
