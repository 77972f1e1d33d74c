package compile

import (
	"slices"

	"github.com/trellis-mesh/trellis/internal/model"
)

// addFrontEnds converts the Input's TrafficSplits, ServiceProfiles and
// HTTPRoutes (model.FrontEnds.Convert) for the hosts no VirtualService
// routes, and their retry budgets into the hosts' DestinationRules.
func (ix *Index) addFrontEnds(in *Input) {
	fe := model.FrontEnds{TrafficSplits: in.TrafficSplits, ServiceProfiles: in.ServiceProfiles, HTTPRoutes: in.HTTPRoutes}
	if len(fe.TrafficSplits)+len(fe.ServiceProfiles)+len(fe.HTTPRoutes) == 0 {
		return
	}
	conv := fe.Convert(func(ref model.ServiceRef) bool { return ix.vsByHost[ref] != nil }, ix.ports)
	for _, vs := range conv.VirtualServices {
		ref := model.ResolveHost(vs.Spec.Hosts[0], vs.NamespaceOrDefault())
		if _, taken := ix.vsByHost[ref]; !taken {
			ix.vsByHost[ref] = vs
		}
	}
	for _, dr := range conv.DestinationRules {
		ix.addConvertedRule(dr)
	}
}

// addConvertedRule adds a converted DestinationRule's retry budget to a
// host. The first applied rule with a top-level trafficPolicy gives the
// host's policy (cluster_policy.go): the budget goes into a copy of it
// unless it sets its own; without one, the converted rule is appended.
func (ix *Index) addConvertedRule(dr *model.DestinationRule) {
	ref := model.ResolveHost(dr.Spec.Host, dr.NamespaceOrDefault())
	drs := ix.drByHost[ref]
	i := slices.IndexFunc(drs, func(d *model.DestinationRule) bool { return d.Spec.TrafficPolicy != nil })
	if i < 0 {
		ix.drByHost[ref] = append(drs, dr)
		return
	}
	if drs[i].Spec.TrafficPolicy.RetryBudget != nil {
		return
	}
	cp := *drs[i]
	tp := *cp.Spec.TrafficPolicy
	tp.RetryBudget = dr.Spec.TrafficPolicy.RetryBudget
	cp.Spec.TrafficPolicy = &tp
	drs[i] = &cp
}

// ports are the ports the service's workloads declare, in order.
func (ix *Index) ports(svc model.ServiceRef) []uint32 {
	var out []uint32
	for _, w := range ix.byService[svc] {
		for _, p := range w.Spec.Ports {
			if !slices.Contains(out, p.Port) {
				out = append(out, p.Port)
			}
		}
	}
	return out
}
