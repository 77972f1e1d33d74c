package compile

import (
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// policy is the DestinationRule traffic policy in force for one cluster
// (service, subset, port). Nil fields are unset: Envoy's or Istio's
// defaults apply.
type policy struct {
	LoadBalancer     *model.LoadBalancerSettings
	ConnectionPool   *model.ConnectionPoolSettings
	OutlierDetection *model.OutlierDetection
	TLS              *model.ClientTLSSettings
	RetryBudget      *model.RetryBudget
}

// clusterPolicy resolves the traffic policy of a cluster as Istio does
// (util.MergeSubsetTrafficPolicy). The rule's top-level trafficPolicy is
// taken for the port; the subset's trafficPolicy, taken for the port the
// same way, then overrides it field by field. Taking a policy "for the
// port" means: a portLevelSettings entry for the port replaces the
// loadBalancer, connectionPool, outlierDetection and tls of its policy
// wholesale (a field the entry omits takes its default, it is not
// inherited), and a subset's entry overrides all four of them even when it
// leaves some unset. subset is "" for the whole service.
//
// Several DestinationRules for one host merge as in Istio: the first, by
// namespace/name, with a top-level trafficPolicy gives it; a subset's comes
// from the first rule defining the subset.
func (ix *Index) clusterPolicy(svc model.ServiceRef, subset string, port uint32) policy {
	top, sub := ix.trafficPolicies(svc, subset)
	return mergePolicy(top, sub, port)
}

// trafficPolicies returns the top-level trafficPolicy of svc's rules and
// the subset's own trafficPolicy (nil when subset is "").
func (ix *Index) trafficPolicies(svc model.ServiceRef, subset string) (top, sub *model.TrafficPolicy) {
	subFound := subset == ""
	for _, d := range ix.drByHost[svc] {
		if top == nil {
			top = d.Spec.TrafficPolicy
		}
		for i := range d.Spec.Subsets {
			if s := &d.Spec.Subsets[i]; !subFound && s.Name == subset {
				sub, subFound = s.TrafficPolicy, true
			}
		}
		if top != nil && subFound {
			break
		}
	}
	return top, sub
}

// mergePolicy overrides the top-level policy with the subset's, for port.
func mergePolicy(top, sub *model.TrafficPolicy, port uint32) policy {
	merged, _ := forPort(top, port)
	if sub == nil {
		return merged
	}
	over, portLevel := forPort(sub, port)
	if over.LoadBalancer != nil || portLevel {
		merged.LoadBalancer = over.LoadBalancer
	}
	if over.ConnectionPool != nil || portLevel {
		merged.ConnectionPool = over.ConnectionPool
	}
	if over.OutlierDetection != nil || portLevel {
		merged.OutlierDetection = over.OutlierDetection
	}
	if over.TLS != nil || portLevel {
		merged.TLS = over.TLS
	}
	if over.RetryBudget != nil {
		merged.RetryBudget = over.RetryBudget
	}
	return merged
}

// forPort returns the part of tp that applies to port, and whether a
// portLevelSettings entry (the first for the port) gave it. An entry
// replaces the whole policy, as Istio's GetPortLevelTrafficPolicy does: the
// top-level retryBudget, which an entry cannot carry, is dropped too.
func forPort(tp *model.TrafficPolicy, port uint32) (policy, bool) {
	if tp == nil {
		return policy{}, false
	}
	for i := range tp.PortLevelSettings {
		pl := &tp.PortLevelSettings[i]
		if pl.Port != nil && pl.Port.Number == port {
			return policy{
				LoadBalancer:     pl.LoadBalancer,
				ConnectionPool:   pl.ConnectionPool,
				OutlierDetection: pl.OutlierDetection,
				TLS:              pl.TLS,
			}, true
		}
	}
	return policy{
		LoadBalancer:     tp.LoadBalancer,
		ConnectionPool:   tp.ConnectionPool,
		OutlierDetection: tp.OutlierDetection,
		TLS:              tp.TLS,
		RetryBudget:      tp.RetryBudget,
	}, false
}

// tcpIdleTimeout is connectionPool.tcp.idleTimeout of the policy in force
// for a (service, subset, port): the idle_timeout of the tcp_proxy of a TCP
// listener sending to that cluster, as in Istio. It returns nil when unset
// (Envoy's default, 1h, applies); 0s disables the timeout.
func (ix *Index) tcpIdleTimeout(svc model.ServiceRef, subset string, port uint32) (*durationpb.Duration, error) {
	cp := ix.clusterPolicy(svc, subset, port).ConnectionPool
	if cp == nil || cp.TCP == nil || cp.TCP.IdleTimeout == "" {
		return nil, nil
	}
	return optionalDuration("connectionPool.tcp.idleTimeout", cp.TCP.IdleTimeout)
}
