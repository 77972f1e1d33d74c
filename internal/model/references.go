package model

import (
	"fmt"
	"sort"
)

// ServiceRef names a service by namespace and short name.
type ServiceRef struct {
	Namespace string
	Name      string
}

// ResolveHost turns a host as written in a VirtualService or DestinationRule
// ("reviews", "reviews.prod", "reviews.prod.svc.cluster.local") into the
// service it names; a short name is in namespace ns (the object's own).
func ResolveHost(host, ns string) ServiceRef {
	name, hostNS := ServiceName(host)
	if hostNS == "" {
		hostNS = ns
	}
	return ServiceRef{Namespace: hostNS, Name: name}
}

// CheckReferences looks across a whole set of objects (what would be stored
// after an apply) and returns warnings, sorted, for dangling references that
// Istio accepts: a route to a subset no DestinationRule defines, a
// destination service no workload serves (only when some workloads are
// known), hosts routed by more than one VirtualService, and
// PeerAuthentications shadowed by another at the same level. The order of
// objs does not matter.
func CheckReferences(objs []Object) []string {
	subsets := map[ServiceRef]map[string]bool{}
	services := map[ServiceRef]bool{}
	vsByHost := map[ServiceRef][]string{}
	var vss []*VirtualService
	for _, o := range objs {
		switch t := o.(type) {
		case *DestinationRule:
			ref := ResolveHost(t.Spec.Host, t.NamespaceOrDefault())
			if subsets[ref] == nil {
				subsets[ref] = map[string]bool{}
			}
			for _, s := range t.Spec.Subsets {
				subsets[ref][s.Name] = true
			}
		case *Workload:
			services[ServiceRef{Namespace: t.NamespaceOrDefault(), Name: t.Spec.Service}] = true
		case *Mesh:
			for _, w := range t.Spec.Workloads {
				services[ServiceRef{Namespace: t.NamespaceOrDefault(), Name: w.Service}] = true
			}
		case *VirtualService:
			vss = append(vss, t)
		}
	}
	sort.Slice(vss, func(i, j int) bool { return vss[i].Key().String() < vss[j].Key().String() })
	seen := map[string]bool{}
	var warns []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			warns = append(warns, s)
		}
	}
	for _, vs := range vss {
		doc := vs.Key().String()
		for i, h := range vs.Spec.Hosts {
			ref := ResolveHost(h, vs.NamespaceOrDefault())
			if prev := vsByHost[ref]; len(prev) > 0 {
				add(fmt.Sprintf("%s: spec.hosts[%d]: host %q is also routed by %s; only %s is used", doc, i, h, prev[0], prev[0]))
			}
			vsByHost[ref] = append(vsByHost[ref], doc)
		}
		checkDest := func(path string, d Destination) {
			ref := ResolveHost(d.Host, vs.NamespaceOrDefault())
			if d.Subset != "" && !subsets[ref][d.Subset] {
				add(fmt.Sprintf("%s: %s.subset: subset %q of host %q is not defined by any DestinationRule", doc, path, d.Subset, d.Host))
			}
			if len(services) > 0 && d.Host != "" && !services[ref] {
				add(fmt.Sprintf("%s: %s.host: service %q has no workloads", doc, path, d.Host))
			}
		}
		for i, r := range vs.Spec.HTTP {
			for j, d := range r.Route {
				checkDest(fmt.Sprintf("spec.http[%d].route[%d].destination", i, j), d.Destination)
			}
		}
		for i, r := range vs.Spec.TCP {
			for j, d := range r.Route {
				checkDest(fmt.Sprintf("spec.tcp[%d].route[%d].destination", i, j), d.Destination)
			}
		}
		for i, r := range vs.Spec.TLS {
			for j, d := range r.Route {
				checkDest(fmt.Sprintf("spec.tls[%d].route[%d].destination", i, j), d.Destination)
			}
		}
	}
	for _, w := range frontEndReferences(objs, services) { // references_frontends.go
		add(w)
	}
	for _, w := range securityReferences(objs) { // references_security.go
		add(w)
	}
	sort.Strings(warns)
	return warns
}
