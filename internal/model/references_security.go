package model

import (
	"fmt"
	"sort"
	"strings"
)

// securityReferences warns, across the objects an apply would leave
// stored, about PeerAuthentications that are not in force: at one level
// (mesh-wide in RootNamespace, namespace-wide, or one workload selector in
// a namespace) only the first by namespace/name is used (Istio uses the
// oldest; Trellis has no creation time). docs/adr/002.
func securityReferences(objs []Object) []string {
	var pas []*PeerAuthentication
	for _, o := range objs {
		if p, ok := o.(*PeerAuthentication); ok {
			pas = append(pas, p)
		}
	}
	first := map[string]*PeerAuthentication{}
	var warns []string
	for _, p := range sortedByKey(pas) {
		level, path, scope := peerAuthenticationLevel(p)
		if w := first[level]; w != nil {
			warns = append(warns, fmt.Sprintf("%s: %s: %s is also set by %s: the first by namespace/name wins, this one is ignored",
				p.Key(), path, scope, w.Key()))
			continue
		}
		first[level] = p
	}
	return warns
}

// peerAuthenticationLevel returns the level p sets the mode at (a map key),
// the field that decides it, and the level in words.
func peerAuthenticationLevel(p *PeerAuthentication) (level, path, scope string) {
	ns := p.NamespaceOrDefault()
	sel := p.Spec.Selector
	switch {
	case sel.Empty() && ns == RootNamespace:
		return ns, "spec", fmt.Sprintf("the mesh-wide mTLS mode (namespace %s, no selector)", RootNamespace)
	case sel.Empty():
		return ns, "spec", fmt.Sprintf("the mTLS mode of namespace %q (no selector)", ns)
	}
	labels := make([]string, 0, len(sel.MatchLabels))
	for k, v := range sel.MatchLabels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	s := strings.Join(labels, ",")
	return ns + "\x00" + s, "spec.selector", fmt.Sprintf("the mTLS mode of the workloads of namespace %q selected by %s", ns, s)
}
