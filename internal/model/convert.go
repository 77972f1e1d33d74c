package model

import (
	"reflect"
	"sort"
	"strings"
)

// AnnotationConvertedFrom names, on a VirtualService or DestinationRule
// converted from a front end, the object it came from
// ("TrafficSplit default/canary").
const AnnotationConvertedFrom = "trellis.dev/converted-from"

// converted returns the metadata of an object converted from src: named
// "<kind>:<name>" (lowercase kind), so that generated route names say where
// they come from, in src's namespace.
func converted(src Object) ObjectMeta {
	k := src.Key()
	return ObjectMeta{
		Name:        strings.ToLower(k.Kind) + ":" + k.Name,
		Namespace:   k.Namespace,
		Annotations: map[string]string{AnnotationConvertedFrom: k.String()},
	}
}

func convertedVS(src Object, host string) *VirtualService {
	return &VirtualService{
		TypeMeta:   TypeMeta{APIVersion: IstioNetworkingVersions[len(IstioNetworkingVersions)-1], Kind: KindVirtualService},
		ObjectMeta: converted(src),
		Spec:       VirtualServiceSpec{Hosts: []string{host}},
	}
}

// FrontEnds are the routing APIs other than Istio's that Trellis converts
// into VirtualServices (and DestinationRule retry budgets).
type FrontEnds struct {
	TrafficSplits   []*TrafficSplit
	ServiceProfiles []*ServiceProfile
	HTTPRoutes      []*GatewayHTTPRoute
}

// Converted is what front ends become.
type Converted struct {
	// VirtualServices route the hosts no VirtualService routes: at most one per host.
	VirtualServices []*VirtualService
	// DestinationRules carry the retry budgets of the ServiceProfiles in
	// force (trafficPolicy.retryBudget only). A DestinationRule applied for
	// the host gives the rest of the policy, and its own retryBudget wins.
	DestinationRules []*DestinationRule
}

// Convert applies the precedence of front ends on one host:
//
//  1. an Istio VirtualService (routed reports the hosts one routes) wins;
//  2. else a Linkerd ServiceProfile and an SMI TrafficSplit of the host,
//     merged as Linkerd does (the split's backends are the profile's
//     destinations; a split alone behaves as a profile without routes);
//  3. else the Gateway API HTTPRoutes attached to the service, merged.
//
// ServiceProfiles outrank HTTPRoutes as in Linkerd ("a ServiceProfile takes
// precedence over HTTPRoutes which configure the same Service"), and a
// TrafficSplit is a ServiceProfile's dstOverrides there. Among several
// objects of one kind for a host, the first by namespace/name wins. ports
// returns a service's ports when known (TrafficSplits keep the port number
// called). Invalid objects are skipped.
func (fe *FrontEnds) Convert(routed func(ServiceRef) bool, ports func(ServiceRef) []uint32) *Converted {
	out := &Converted{}
	if routed == nil {
		routed = func(ServiceRef) bool { return false }
	}
	splits := fe.splitsByHost()
	profiles := fe.profilesByHost()
	taken := map[ServiceRef]bool{}
	for _, ref := range sortedRefs(profiles, splits) {
		if routed(ref) {
			continue
		}
		taken[ref] = true
		sp, ts := profiles[ref], splits[ref]
		var vs *VirtualService
		if sp == nil {
			var p []uint32
			if ports != nil {
				p = ports(ref)
			}
			vs = ts.VirtualService(p)
		} else {
			vs = sp.VirtualService(ts)
			if dr := sp.DestinationRule(); dr != nil {
				out.DestinationRules = append(out.DestinationRules, dr)
			}
		}
		if vs != nil {
			out.VirtualServices = append(out.VirtualServices, vs)
		}
	}
	out.VirtualServices = append(out.VirtualServices, GatewayVirtualServices(sortedByKey(fe.HTTPRoutes), func(r ServiceRef) bool {
		return routed(r) || taken[r]
	})...)
	return out
}

// DestinationRule carries the profile's retry budget, nil without one:
// retryRatio × 100 is the percent, minRetriesPerSecond the
// minRetryConcurrency (read as retries per second, ADR 001) and ttl the
// budgetInterval.
func (sp *ServiceProfile) DestinationRule() *DestinationRule {
	b := sp.Spec.RetryBudget
	if b == nil {
		return nil
	}
	svc := sp.Service()
	pct := b.RetryRatio * 100
	return &DestinationRule{
		TypeMeta:   TypeMeta{APIVersion: IstioNetworkingVersions[len(IstioNetworkingVersions)-1], Kind: KindDestinationRule},
		ObjectMeta: converted(sp),
		Spec: DestinationRuleSpec{
			Host: svc.Name + "." + svc.Namespace,
			TrafficPolicy: &TrafficPolicy{RetryBudget: &RetryBudget{
				Percent: &pct, MinRetryConcurrency: b.MinRetriesPerSecond, BudgetInterval: b.TTL,
			}},
		},
	}
}

// splitsByHost is the TrafficSplit in force for each root service.
func (fe *FrontEnds) splitsByHost() map[ServiceRef]*TrafficSplit {
	out := map[ServiceRef]*TrafficSplit{}
	for _, t := range sortedByKey(fe.TrafficSplits) {
		ref := ResolveHost(t.Spec.Service, t.NamespaceOrDefault())
		if _, dup := out[ref]; dup || len(t.Spec.Matches) > 0 {
			continue
		}
		if valid(t) {
			out[ref] = t
		}
	}
	return out
}

// profilesByHost is the ServiceProfile in force for each service.
func (fe *FrontEnds) profilesByHost() map[ServiceRef]*ServiceProfile {
	out := map[ServiceRef]*ServiceProfile{}
	for _, sp := range sortedByKey(fe.ServiceProfiles) {
		ref := sp.Service()
		if _, dup := out[ref]; dup || !sp.ServesAllClients() {
			continue
		}
		if valid(sp) {
			out[ref] = sp
		}
	}
	return out
}

func sortedRefs[A, B any](a map[ServiceRef]A, b map[ServiceRef]B) []ServiceRef {
	var out []ServiceRef
	for r := range a {
		out = append(out, r)
	}
	for r := range b {
		if _, dup := a[r]; !dup {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// sortedByKey returns the non-nil objects sorted by kind/namespace/name.
func sortedByKey[T Object](objs []T) []T {
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if any(o) != nil && !reflectNil(o) {
			out = append(out, o)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key().String() < out[j].Key().String() })
	return out
}

func reflectNil(o any) bool {
	v := reflect.ValueOf(o)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
