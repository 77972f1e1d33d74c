package model

import (
	"fmt"
	"slices"
	"sort"
)

// frontEndReferences warns, across the objects an apply would leave stored,
// about front ends that are not in force on a host (Convert's precedence),
// rate limits shadowed by another for the same service and port, and
// destinations of converted routes that no workload serves (only when some
// workloads are known).
func frontEndReferences(objs []Object, services map[ServiceRef]bool) []string {
	var fe FrontEnds
	vsHosts := map[ServiceRef]string{}
	var rls []*RateLimit
	for _, o := range objs {
		switch t := o.(type) {
		case *VirtualService:
			for _, h := range t.Spec.Hosts {
				ref := ResolveHost(h, t.NamespaceOrDefault())
				if cur, ok := vsHosts[ref]; !ok || t.Key().String() < cur {
					vsHosts[ref] = t.Key().String()
				}
			}
		case *TrafficSplit:
			fe.TrafficSplits = append(fe.TrafficSplits, t)
		case *ServiceProfile:
			fe.ServiceProfiles = append(fe.ServiceProfiles, t)
		case *GatewayHTTPRoute:
			fe.HTTPRoutes = append(fe.HTTPRoutes, t)
		case *RateLimit:
			rls = append(rls, t)
		}
	}
	var warns []string
	profiles, splits := fe.profilesByHost(), fe.splitsByHost()
	inForce := func(ref ServiceRef) string {
		switch {
		case vsHosts[ref] != "":
			return vsHosts[ref]
		case profiles[ref] != nil:
			return profiles[ref].Key().String()
		case splits[ref] != nil:
			return splits[ref].Key().String()
		}
		return ""
	}
	for _, t := range sortedByKey(fe.TrafficSplits) {
		ref := ResolveHost(t.Spec.Service, t.NamespaceOrDefault())
		switch winner := inForce(ref); {
		case vsHosts[ref] != "":
			warns = append(warns, fmt.Sprintf("%s: spec.service: host %q is also routed by %s, which takes precedence: this TrafficSplit is ignored", t.Key(), t.Spec.Service, winner))
		case splits[ref] != nil && splits[ref] != t && len(t.Spec.Matches) == 0:
			warns = append(warns, fmt.Sprintf("%s: spec.service: host %q is also split by %s: only %s is used", t.Key(), t.Spec.Service, splits[ref].Key(), splits[ref].Key()))
		case profiles[ref] != nil && splits[ref] == t && len(profiles[ref].Spec.DstOverrides) > 0:
			warns = append(warns, fmt.Sprintf("%s: spec.backends: replace the dstOverrides of %s, as in Linkerd", t.Key(), profiles[ref].Key()))
		}
	}
	for _, sp := range sortedByKey(fe.ServiceProfiles) {
		ref := sp.Service()
		if w := vsHosts[ref]; w != "" && sp.ServesAllClients() {
			warns = append(warns, fmt.Sprintf("%s: metadata.name: host %q is also routed by %s, which takes precedence: this ServiceProfile is ignored", sp.Key(), sp.Name, w))
		}
	}
	for _, r := range sortedByKey(fe.HTTPRoutes) {
		for i, pr := range r.Spec.ParentRefs {
			ref := ServiceRef{Namespace: r.NamespaceOrDefault(), Name: pr.Name}
			if w := inForce(ref); w != "" && slices.Contains(r.Parents(), ref) {
				warns = append(warns, fmt.Sprintf("%s: spec.parentRefs[%d]: service %q is also routed by %s, which takes precedence: this route is ignored for it", r.Key(), i, pr.Name, w))
			}
		}
	}
	warns = append(warns, rateLimitConflicts(rls)...)
	if len(services) > 0 {
		conv := fe.Convert(func(ref ServiceRef) bool { return vsHosts[ref] != "" }, nil)
		for _, vs := range conv.VirtualServices {
			for _, d := range convertedDestinations(vs) {
				if ref := ResolveHost(d, vs.NamespaceOrDefault()); !services[ref] {
					warns = append(warns, fmt.Sprintf("%s: destination service %q has no workloads", vs.Annotations[AnnotationConvertedFrom], d))
				}
			}
		}
	}
	return warns
}

// rateLimitConflicts warns about RateLimits of one service and port after the first.
func rateLimitConflicts(rls []*RateLimit) []string {
	type slot struct {
		svc  ServiceRef
		port uint32
	}
	first := map[slot]*RateLimit{}
	var warns []string
	for _, r := range sortedByKey(rls) {
		s := slot{ResolveHost(r.Spec.Service, r.NamespaceOrDefault()), r.Spec.Port}
		if w := first[s]; w != nil {
			warns = append(warns, fmt.Sprintf("%s: spec.service: service %q (port %d) is also limited by %s: only %s is used", r.Key(), r.Spec.Service, r.Spec.Port, w.Key(), w.Key()))
			continue
		}
		first[s] = r
	}
	return warns
}

// convertedDestinations are the hosts a converted VirtualService sends to, sorted.
func convertedDestinations(vs *VirtualService) []string {
	seen := map[string]bool{}
	for _, r := range vs.Spec.HTTP {
		for _, d := range r.Route {
			seen[d.Destination.Host] = true
		}
		for _, m := range r.Mirrors {
			seen[m.Destination.Host] = true
		}
	}
	out := make([]string, 0, len(seen))
	for h := range seen {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}
