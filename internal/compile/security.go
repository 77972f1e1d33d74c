package compile

// Security policies (docs/adr/002-security.md): which PeerAuthentication,
// AuthorizationPolicy and RequestAuthentication apply to a workload, and
// the effective mTLS mode of each of its ports.
//
//	Input.PeerAuthentications    ─┐ addSecurity: valid ones only, by namespace,
//	Input.AuthorizationPolicies  ─┤ each namespace's list sorted by name
//	Input.RequestAuthentications ─┘
//	   ├─ mtlsMode(w, port)    workload > namespace > root namespace > STRICT (inbound.go, clusters.go)
//	   ├─ authzPolicies(w)     security_authz.go: rbac filters
//	   └─ requestAuthns(w)     security_jwt.go: jwt_authn filter

import (
	"net"
	"sort"
	"strconv"

	"github.com/trellis-mesh/trellis/internal/model"
)

// securityIndex holds the valid security policies by namespace, each list
// sorted by name (so by namespace/name overall, as the ADR orders them).
type securityIndex struct {
	peerAuthns map[string][]*model.PeerAuthentication
	authzs     map[string][]*model.AuthorizationPolicy
	reqAuthns  map[string][]*model.RequestAuthentication
}

// addSecurity indexes the valid security policies of in. An invalid policy
// (model.Validate reports an error) is left out, as the apply path refuses
// it; one in the store from an older version is then ignored, not guessed at.
func (ix *Index) addSecurity(in *Input) {
	ix.sec = securityIndex{
		peerAuthns: byNamespace(in.PeerAuthentications),
		authzs:     byNamespace(in.AuthorizationPolicies),
		reqAuthns:  byNamespace(in.RequestAuthentications),
	}
}

// byNamespace groups the valid, non-nil objects of objs by namespace, each
// group sorted by name.
func byNamespace[T interface {
	*E
	model.Object
}, E any](objs []T) map[string][]T {
	out := map[string][]T{}
	for _, o := range objs {
		if o == nil {
			continue
		}
		if _, err := model.Validate(o); err != nil {
			continue
		}
		ns := o.GetObjectMeta().NamespaceOrDefault()
		out[ns] = append(out[ns], o)
	}
	for _, os := range out {
		sort.Slice(os, func(i, j int) bool { return os[i].GetObjectMeta().Name < os[j].GetObjectMeta().Name })
	}
	return out
}

// hasSelector reports whether sel selects by labels; a nil selector or an
// empty matchLabels selects every workload of the namespace (Istio).
func hasSelector(sel *model.LabelSelector) bool {
	return sel != nil && len(sel.MatchLabels) > 0
}

// selectsWorkload is Istio's rule for AuthorizationPolicy and
// RequestAuthentication: a policy applies to the workloads of its own
// namespace, or of every namespace when it lives in the root namespace,
// whose labels include its selector's (all of them without a selector).
func selectsWorkload(policyNS string, sel *model.LabelSelector, w *model.Workload) bool {
	if policyNS != model.RootNamespace && policyNS != w.NamespaceOrDefault() {
		return false
	}
	return !hasSelector(sel) || hasLabels(w.Spec.Labels, sel.MatchLabels)
}

// SecurityPolicySelects reports whether the security policy obj (a
// PeerAuthentication, AuthorizationPolicy or RequestAuthentication) can
// shape w's configuration: the control plane recompiles those workloads
// when obj changes. It reports false for any other kind. A
// PeerAuthentication also shapes the clusters of w's callers.
func SecurityPolicySelects(obj model.Object, w *model.Workload) bool {
	switch o := obj.(type) {
	case *model.PeerAuthentication:
		return peerAuthnSelects(o, w)
	case *model.AuthorizationPolicy:
		return selectsWorkload(o.NamespaceOrDefault(), o.Spec.Selector, w)
	case *model.RequestAuthentication:
		return selectsWorkload(o.NamespaceOrDefault(), o.Spec.Selector, w)
	}
	return false
}

// peerAuthnSelects is Istio's rule for PeerAuthentication: a policy with
// a selector applies to the matching workloads of its namespace, and is
// ignored in the root namespace; a policy without one applies to its
// namespace, or to the whole mesh from the root namespace.
func peerAuthnSelects(p *model.PeerAuthentication, w *model.Workload) bool {
	ns := p.NamespaceOrDefault()
	if !hasSelector(p.Spec.Selector) {
		return ns == model.RootNamespace || ns == w.NamespaceOrDefault()
	}
	return ns != model.RootNamespace && ns == w.NamespaceOrDefault() && hasLabels(w.Spec.Labels, p.Spec.Selector.MatchLabels)
}

// mtlsMode is the effective mTLS mode of w's port p (ADR 002): the
// workload-level policy (the first by name with a selector matching w; its
// portLevelMtls entry for the port wins), else the namespace-level policy
// (the first by name without a selector), else the root namespace's, else
// STRICT. UNSET, or a missing mode, inherits from the next level.
func (ix *Index) mtlsMode(w *model.Workload, p model.WorkloadPort) string {
	ns := w.NamespaceOrDefault()
	if ns != model.RootNamespace {
		for _, pa := range ix.sec.peerAuthns[ns] {
			if !hasSelector(pa.Spec.Selector) || !hasLabels(w.Spec.Labels, pa.Spec.Selector.MatchLabels) {
				continue
			}
			if m := portLevelMode(pa.Spec.PortLevelMtls, p); m != "" {
				return m
			}
			if m := definedMode(pa.Spec.Mtls); m != "" {
				return m
			}
			break // the first workload-level policy decides, or defers to the namespace
		}
	}
	for _, level := range []string{ns, model.RootNamespace} {
		for _, pa := range ix.sec.peerAuthns[level] {
			if hasSelector(pa.Spec.Selector) {
				continue
			}
			if m := definedMode(pa.Spec.Mtls); m != "" {
				return m
			}
			break // the first one of a level decides, or defers to the next level
		}
	}
	return model.MTLSStrict
}

// portLevelMode is the mode portLevelMtls gives the port, "" when it says
// nothing (or UNSET). Istio keys it by the workload's container port; a
// Trellis workload port has two numbers, the service port (Port, what
// cluster and listener names use) and the port the app listens on (App):
// a key equal to either selects the port, the service port's entry first.
func portLevelMode(levels map[string]model.PeerMTLS, p model.WorkloadPort) string {
	if len(levels) == 0 {
		return ""
	}
	keys := []string{strconv.FormatUint(uint64(p.Port), 10)}
	if _, port, err := net.SplitHostPort(p.App); err == nil && port != keys[0] {
		keys = append(keys, port)
	}
	for _, k := range keys {
		if m, ok := levels[k]; ok {
			if mode := definedMode(&m); mode != "" {
				return mode
			}
		}
	}
	return ""
}

// definedMode is m's mode when it decides one (DISABLE, PERMISSIVE,
// STRICT), "" for UNSET, empty or unknown.
func definedMode(m *model.PeerMTLS) string {
	if m == nil {
		return ""
	}
	switch m.Mode {
	case model.MTLSDisable, model.MTLSPermissive, model.MTLSStrict:
		return m.Mode
	}
	return ""
}

// plaintextTo reports whether callers reach the workloads of svc that
// carry labels on port in plaintext: when every one of them that serves
// the port resolves to DISABLE (Istio's auto mTLS). With none, or a mix,
// callers use mTLS: a cluster has one transport socket for all its
// endpoints (no per-endpoint transport_socket_matches), and mTLS is what
// a PERMISSIVE or STRICT server needs.
func (ix *Index) plaintextTo(svc model.ServiceRef, labels map[string]string, port uint32) bool {
	found := false
	for _, w := range ix.byService[svc] {
		if !hasLabels(w.Spec.Labels, labels) {
			continue
		}
		for _, p := range w.Spec.Ports {
			if p.Port != port {
				continue
			}
			if ix.mtlsMode(w, p) != model.MTLSDisable {
				return false
			}
			found = true
			break
		}
	}
	return found
}

// authzPolicies are the AuthorizationPolicies that apply to w: those of
// its namespace, then those of the root namespace, each by name.
func (ix *Index) authzPolicies(w *model.Workload) []*model.AuthorizationPolicy {
	var out []*model.AuthorizationPolicy
	for _, ns := range policyNamespaces(w) {
		for _, a := range ix.sec.authzs[ns] {
			if selectsWorkload(ns, a.Spec.Selector, w) {
				out = append(out, a)
			}
		}
	}
	sortByKey(out)
	return out
}

// requestAuthns are the RequestAuthentications that apply to w, sorted by
// namespace/name.
func (ix *Index) requestAuthns(w *model.Workload) []*model.RequestAuthentication {
	var out []*model.RequestAuthentication
	for _, ns := range policyNamespaces(w) {
		for _, r := range ix.sec.reqAuthns[ns] {
			if selectsWorkload(ns, r.Spec.Selector, w) {
				out = append(out, r)
			}
		}
	}
	sortByKey(out)
	return out
}

// policyNamespaces are the namespaces whose policies can apply to w.
func policyNamespaces(w *model.Workload) []string {
	if ns := w.NamespaceOrDefault(); ns != model.RootNamespace {
		return []string{ns, model.RootNamespace}
	}
	return []string{model.RootNamespace}
}

// sortByKey sorts objects by namespace/name.
func sortByKey[T model.Object](objs []T) {
	sort.Slice(objs, func(i, j int) bool {
		a, b := objs[i].GetObjectMeta(), objs[j].GetObjectMeta()
		if na, nb := a.NamespaceOrDefault(), b.NamespaceOrDefault(); na != nb {
			return na < nb
		}
		return a.Name < b.Name
	})
}
