package model

import (
	"fmt"
	"regexp"
)

// ServiceProfile (Linkerd, linkerd.io/v1alpha2) describes the routes of the
// service its name is the FQDN of ("books.default.svc.cluster.local"):
// per-route timeouts and retries, how responses are classified, and a retry
// budget. Routes are tried in order; a request no route matches still goes
// to the service (a profile never rejects a request). It is converted into
// a VirtualService and a DestinationRule (convert_serviceprofile.go).
type ServiceProfile struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       ServiceProfileSpec `json:"spec"`
}

// Key implements Object.
func (s *ServiceProfile) Key() Key {
	return Key{Kind: KindServiceProfile, Namespace: s.NamespaceOrDefault(), Name: s.Name}
}

// ServiceProfileSpec is Linkerd's ServiceProfileSpec.
type ServiceProfileSpec struct {
	Routes       []ServiceProfileRoute `json:"routes,omitempty"`
	RetryBudget  *LinkerdRetryBudget   `json:"retryBudget,omitempty"`
	DstOverrides []WeightedDst         `json:"dstOverrides,omitempty"`
	OpaquePorts  map[string]bool       `json:"opaquePorts,omitempty"`
}

// ServiceProfileRoute is one named route.
type ServiceProfileRoute struct {
	Name            string          `json:"name"`
	Condition       *RequestMatch   `json:"condition"`
	ResponseClasses []ResponseClass `json:"responseClasses,omitempty"`
	IsRetryable     bool            `json:"isRetryable,omitempty"`
	Timeout         Duration        `json:"timeout,omitempty"`
}

// RequestMatch matches requests; its set fields are ANDed.
type RequestMatch struct {
	All       []RequestMatch `json:"all,omitempty"`
	Not       *RequestMatch  `json:"not,omitempty"`
	Any       []RequestMatch `json:"any,omitempty"`
	PathRegex string         `json:"pathRegex,omitempty"`
	Method    string         `json:"method,omitempty"`
}

// ResponseClass says whether the responses its condition matches are failures.
type ResponseClass struct {
	Condition *ResponseMatch `json:"condition"`
	IsFailure bool           `json:"isFailure,omitempty"`
}

// ResponseMatch matches responses by status; its set fields are ANDed.
type ResponseMatch struct {
	All    []ResponseMatch `json:"all,omitempty"`
	Not    *ResponseMatch  `json:"not,omitempty"`
	Any    []ResponseMatch `json:"any,omitempty"`
	Status *StatusRange    `json:"status,omitempty"`
}

// StatusRange is min..max inclusive; with one of them set, that one code.
type StatusRange struct {
	Min uint32 `json:"min,omitempty"`
	Max uint32 `json:"max,omitempty"`
}

// LinkerdRetryBudget caps retries: at most RetryRatio retries per original
// request over the last TTL, plus MinRetriesPerSecond.
type LinkerdRetryBudget struct {
	RetryRatio          float64  `json:"retryRatio"`
	MinRetriesPerSecond uint32   `json:"minRetriesPerSecond"`
	TTL                 Duration `json:"ttl"`
}

// WeightedDst is a weighted alternative destination ("authority" is
// "<service>.<namespace>.svc.cluster.local:<port>"); weights are quantities.
type WeightedDst struct {
	Authority string `json:"authority"`
	Weight    any    `json:"weight"`
}

// httpToken is an HTTP method as RFC 9110 allows it (Linkerd matches any).
var httpToken = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// maxProfileMatches bounds the match alternatives one route's condition may expand to.
const maxProfileMatches = 64

func (v *validator) serviceProfile(sp *ServiceProfile) {
	s := &sp.Spec
	names := map[string]int{}
	for i := range s.Routes {
		r := &s.Routes[i]
		p := fmt.Sprintf("spec.routes[%d]", i)
		if r.Name == "" {
			v.errf(p+".name", "required")
		} else if j, dup := names[r.Name]; dup {
			v.errf(p+".name", "duplicate route %q (also spec.routes[%d])", r.Name, j)
		} else {
			names[r.Name] = i
		}
		if r.Condition == nil {
			v.errf(p+".condition", "required")
		} else if v.requestMatch(p+".condition", r.Condition) {
			if ms, err := profileMatches(r.Condition); err != nil {
				v.errf(p+".condition", "%v", err)
			} else if len(ms) == 0 {
				v.warnf(p+".condition", "can never match (it asks for two different methods), route ignored")
			}
		}
		for j := range r.ResponseClasses {
			rc := &r.ResponseClasses[j]
			cp := fmt.Sprintf("%s.responseClasses[%d].condition", p, j)
			if rc.Condition == nil {
				v.errf(cp, "required")
			} else {
				v.responseMatch(cp, rc.Condition)
			}
		}
		v.duration(p+".timeout", r.Timeout)
	}
	if b := s.RetryBudget; b != nil {
		if b.RetryRatio < 0 {
			v.errf("spec.retryBudget.retryRatio", "must not be negative")
		}
		if b.MinRetriesPerSecond == 0 {
			v.warnf("spec.retryBudget.minRetriesPerSecond", "0 is read as the default, 10 per second (a DestinationRule retryBudget cannot express 0)")
		}
		if b.TTL == "" {
			v.errf("spec.retryBudget.ttl", "required")
		} else if d, err := ParseDuration(b.TTL); err != nil {
			v.errf("spec.retryBudget.ttl", "%v", err)
		} else if d == 0 {
			v.errf("spec.retryBudget.ttl", "must be positive")
		}
	}
	for i, d := range s.DstOverrides {
		p := fmt.Sprintf("spec.dstOverrides[%d]", i)
		if _, _, err := parseAuthority(d.Authority); err != nil {
			v.errf(p+".authority", "%v", err)
		}
		if _, err := quantityMilli(d.Weight); err != nil {
			v.errf(p+".weight", "%v", err)
		}
	}
	if len(s.DstOverrides) > 0 {
		if _, err := profileWeights(s.DstOverrides); err != nil {
			v.errf("spec.dstOverrides", "%v", err)
		}
	}
	if len(s.OpaquePorts) > 0 {
		v.notImplemented("spec.opaquePorts")
	}
}

// requestMatch checks a condition's leaves; it reports whether they are valid.
func (v *validator) requestMatch(p string, m *RequestMatch) bool {
	errs := len(v.errs)
	if m.PathRegex == "" && m.Method == "" && m.Not == nil && len(m.All) == 0 && len(m.Any) == 0 {
		v.errf(p, "one of pathRegex, method, all, any and not is required")
	}
	if m.PathRegex != "" {
		v.regex(p+".pathRegex", m.PathRegex)
	}
	if m.Method != "" && !httpToken.MatchString(m.Method) {
		v.errf(p+".method", "%q is not an HTTP method", m.Method)
	}
	for i := range m.All {
		v.requestMatch(fmt.Sprintf("%s.all[%d]", p, i), &m.All[i])
	}
	for i := range m.Any {
		v.requestMatch(fmt.Sprintf("%s.any[%d]", p, i), &m.Any[i])
	}
	if m.Not != nil {
		v.requestMatch(p+".not", m.Not)
	}
	return len(v.errs) == errs
}

func (v *validator) responseMatch(p string, m *ResponseMatch) {
	if m.Status == nil && m.Not == nil && len(m.All) == 0 && len(m.Any) == 0 {
		v.errf(p, "one of status, all, any and not is required")
	}
	if s := m.Status; s != nil {
		switch {
		case s.Min == 0 && s.Max == 0:
			v.errf(p+".status", "one of min and max is required")
		case s.Min != 0 && (s.Min < 100 || s.Min > 599):
			v.errf(p+".status.min", "%d is not an HTTP status (100..599)", s.Min)
		case s.Max != 0 && (s.Max < 100 || s.Max > 599):
			v.errf(p+".status.max", "%d is not an HTTP status (100..599)", s.Max)
		case s.Min != 0 && s.Max != 0 && s.Min > s.Max:
			v.errf(p+".status", "min %d is greater than max %d", s.Min, s.Max)
		}
	}
	for i := range m.All {
		v.responseMatch(fmt.Sprintf("%s.all[%d]", p, i), &m.All[i])
	}
	for i := range m.Any {
		v.responseMatch(fmt.Sprintf("%s.any[%d]", p, i), &m.Any[i])
	}
	if m.Not != nil {
		v.responseMatch(p+".not", m.Not)
	}
}
