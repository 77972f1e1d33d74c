package model

import "fmt"

// TrafficSplit (SMI, split.smi-spec.io v1alpha1..v1alpha4) splits the
// requests addressed to a root service between backend services by weight.
// Weights are relative (1000 and 500 send a third to the second backend);
// v1alpha1 writes them as Kubernetes quantities ("500m"). It is converted
// into a VirtualService for the root host (convert_trafficsplit.go).
type TrafficSplit struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       TrafficSplitSpec `json:"spec"`
}

// Key implements Object.
func (t *TrafficSplit) Key() Key {
	return Key{Kind: KindTrafficSplit, Namespace: t.NamespaceOrDefault(), Name: t.Name}
}

// TrafficSplitSpec is the root service, its backends and (v1alpha3+) the
// HTTPRouteGroups the split is limited to.
type TrafficSplitSpec struct {
	Service  string                `json:"service"`
	Backends []TrafficSplitBackend `json:"backends"`
	Matches  []TrafficSplitMatch   `json:"matches,omitempty"`
}

// TrafficSplitBackend is a service of the root's namespace and its weight.
type TrafficSplitBackend struct {
	Service string `json:"service"`
	// Weight is an integer (v1alpha2 and later) or a Kubernetes quantity
	// ("500m", "1"; v1alpha1): any JSON number or string, checked by Validate.
	Weight any `json:"weight"`
}

// TrafficSplitMatch references an HTTPRouteGroup (SMI traffic specs).
type TrafficSplitMatch struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	APIGroup string `json:"apiGroup,omitempty"`
}

// quantityWeights reports whether the version writes weights as quantities.
func (t *TrafficSplit) quantityWeights() bool {
	return t.APIVersion == "split.smi-spec.io/v1alpha1"
}

func (v *validator) trafficSplit(t *TrafficSplit) {
	s := &t.Spec
	v.serviceHost("spec.service", s.Service)
	if len(s.Backends) == 0 {
		v.errf("spec.backends", "required")
	}
	for i, b := range s.Backends {
		v.label(fmt.Sprintf("spec.backends[%d].service", i), b.Service)
	}
	if _, err := splitWeights(t); err != nil && len(s.Backends) > 0 {
		v.errs = append(v.errs, err)
	}
	if len(s.Matches) > 0 {
		v.warnf("spec.matches", "HTTPRouteGroup matches are not implemented: this TrafficSplit is ignored "+
			"(splitting every request would route traffic the split does not select)")
	}
}

// splitWeights returns the backends' weights as integers with the ratios
// written: integers as they are, quantities in thousandths ("500m" is 500,
// "1" is 1000).
func splitWeights(t *TrafficSplit) ([]uint32, *FieldError) {
	raw := make([]uint64, len(t.Spec.Backends))
	for i, b := range t.Spec.Backends {
		p := fmt.Sprintf("spec.backends[%d].weight", i)
		var n uint64
		var err error
		if t.quantityWeights() {
			n, err = quantityMilli(b.Weight)
		} else {
			n, err = wholeWeight(b.Weight)
		}
		if err != nil {
			return nil, &FieldError{Path: p, Reason: err.Error()}
		}
		raw[i] = n
	}
	out, err := reduceWeights(raw)
	if err != nil {
		return nil, &FieldError{Path: "spec.backends", Reason: err.Error()}
	}
	return out, nil
}
