package model

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Linkerd semantics the conversion keeps.
const (
	// ProfileRouteTimeout is Linkerd's timeout of a route that sets none.
	ProfileRouteTimeout Duration = "10s"
	// ProfileRetryAttempts bounds the retries of an isRetryable route.
	// Linkerd retries until the timeout or the retry budget stops it; Envoy
	// needs a count, and the budget still caps the extra load.
	ProfileRetryAttempts = 3
)

// Service is the service the profile describes: its name is the service's FQDN.
func (sp *ServiceProfile) Service() ServiceRef {
	return ResolveHost(sp.Name, sp.NamespaceOrDefault())
}

// ServesAllClients reports whether the profile applies to every client. A
// profile in another namespace than its service's applies, in Linkerd, only
// to the clients of that namespace, which Trellis does not implement.
func (sp *ServiceProfile) ServesAllClients() bool {
	return sp.Service().Namespace == sp.NamespaceOrDefault()
}

// VirtualService converts the profile into a VirtualService for its service:
// one rule per route, in order (a condition becomes one match per
// alternative of its disjunctive form), with the route's timeout (Linkerd's
// default 10s when unset) and, for an isRetryable route, retries on the
// responses its response classes call failures (by default 5xx); then a
// catch-all rule, as a profile never rejects a request. Retries are off
// where Linkerd would not retry. Requests go to the service, or to the
// dstOverrides, or to split's backends when a TrafficSplit shares the host
// (as Linkerd's SMI extension writes splits into dstOverrides).
// It returns nil for an invalid profile.
func (sp *ServiceProfile) VirtualService(split *TrafficSplit) *VirtualService {
	svc := sp.Service()
	dests, err := sp.destinations(split)
	if err != nil {
		return nil
	}
	vs := convertedVS(sp, svc.Name+"."+svc.Namespace)
	noRetries := &HTTPRetry{}
	for i := range sp.Spec.Routes {
		r := &sp.Spec.Routes[i]
		if r.Condition == nil {
			return nil
		}
		matches, err := profileMatches(r.Condition)
		if err != nil {
			return nil
		}
		if len(matches) == 0 {
			continue // the condition can never hold (Validate warns)
		}
		rule := HTTPRoute{Name: r.Name, Match: matches, Route: dests, Timeout: r.Timeout, Retries: noRetries}
		if rule.Timeout == "" {
			rule.Timeout = ProfileRouteTimeout
		}
		if r.IsRetryable {
			if on := retryOn(failureCodes(r.ResponseClasses)); on != "" {
				rule.Retries = &HTTPRetry{Attempts: ProfileRetryAttempts, RetryOn: on}
			}
		}
		vs.Spec.HTTP = append(vs.Spec.HTTP, rule)
	}
	vs.Spec.HTTP = append(vs.Spec.HTTP, HTTPRoute{Name: "unmatched", Route: dests, Retries: noRetries})
	return vs
}

// destinations are where the profile's requests go: split's backends, else
// the dstOverrides, else the service itself (on the port called).
func (sp *ServiceProfile) destinations(split *TrafficSplit) ([]HTTPRouteDestination, error) {
	if split != nil {
		if d := split.destinations(0); len(d) > 0 {
			return d, nil
		}
	}
	if len(sp.Spec.DstOverrides) == 0 {
		svc := sp.Service()
		return []HTTPRouteDestination{{Destination: Destination{Host: svc.Name + "." + svc.Namespace}}}, nil
	}
	weights, err := profileWeights(sp.Spec.DstOverrides)
	if err != nil {
		return nil, err
	}
	out := make([]HTTPRouteDestination, len(sp.Spec.DstOverrides))
	for i, d := range sp.Spec.DstOverrides {
		host, port, err := parseAuthority(d.Authority)
		if err != nil {
			return nil, err
		}
		ref := ResolveHost(host, sp.NamespaceOrDefault())
		dst := Destination{Host: ref.Name + "." + ref.Namespace}
		if port != 0 {
			dst.Port = &PortSelector{Number: port}
		}
		out[i] = HTTPRouteDestination{Destination: dst, Weight: int32(weights[i])}
	}
	return out, nil
}

// profileWeights are the dstOverrides' quantity weights in thousandths.
func profileWeights(dsts []WeightedDst) ([]uint32, error) {
	raw := make([]uint64, len(dsts))
	for i, d := range dsts {
		n, err := quantityMilli(d.Weight)
		if err != nil {
			return nil, fmt.Errorf("dstOverrides[%d].weight: %w", i, err)
		}
		raw[i] = n
	}
	return reduceWeights(raw)
}

// parseAuthority splits "<service FQDN>[:<port>]".
func parseAuthority(a string) (string, uint32, error) {
	if a == "" {
		return "", 0, errors.New("required")
	}
	host, portStr, err := net.SplitHostPort(a)
	if err != nil {
		host, portStr = a, ""
	}
	var port uint64
	if portStr != "" {
		if port, err = strconv.ParseUint(portStr, 10, 16); err != nil || port == 0 {
			return "", 0, fmt.Errorf("%q: port must be 1..65535", a)
		}
	}
	for _, part := range strings.Split(host, ".") {
		if dnsLabel(part) != "" {
			return "", 0, fmt.Errorf("%q is not <service FQDN>:<port>", a)
		}
	}
	return host, uint32(port), nil
}

// conjunct is one alternative of a condition in disjunctive normal form:
// a path regex, a method, and methods it must not be.
type conjunct struct {
	path       string
	method     string
	notMethods []string
}

// profileMatches turns a Linkerd condition into VirtualService match
// alternatives (their OR is the condition): negations are pushed down to
// the leaves (De Morgan), then ANDs are distributed over ORs. A negated
// method becomes withoutHeaders on ":method"; a negated pathRegex, or the
// AND of two different pathRegexes, cannot be written as RE2 matches and is
// an error. Alternatives that can never hold (two different methods) are
// dropped; none left means the condition never holds.
func profileMatches(m *RequestMatch) ([]HTTPMatchRequest, error) {
	cs, err := dnf(m, false)
	if err != nil {
		return nil, err
	}
	out := make([]HTTPMatchRequest, 0, len(cs))
	for _, c := range cs {
		var hm HTTPMatchRequest
		if c.path != "" {
			hm.URI = &StringMatch{Regex: c.path}
		}
		if c.method != "" {
			hm.Method = &StringMatch{Exact: c.method}
		}
		switch len(c.notMethods) {
		case 0:
		case 1:
			hm.WithoutHeaders = map[string]StringMatch{":method": {Exact: c.notMethods[0]}}
		default:
			quoted := make([]string, len(c.notMethods))
			for i, x := range c.notMethods {
				quoted[i] = regexp.QuoteMeta(x)
			}
			hm.WithoutHeaders = map[string]StringMatch{":method": {Regex: strings.Join(quoted, "|")}}
		}
		out = append(out, hm)
	}
	return out, nil
}

// dnf returns m (or its negation) as an OR of conjuncts.
func dnf(m *RequestMatch, neg bool) ([]conjunct, error) {
	var parts [][]conjunct
	add := func(cs []conjunct, err error) error {
		if err == nil {
			parts = append(parts, cs)
		}
		return err
	}
	if m.PathRegex != "" {
		if neg {
			return nil, fmt.Errorf("not pathRegex %q cannot be expressed: RE2 has no negation", m.PathRegex)
		}
		parts = append(parts, []conjunct{{path: m.PathRegex}})
	}
	if m.Method != "" {
		if neg {
			parts = append(parts, []conjunct{{notMethods: []string{m.Method}}})
		} else {
			parts = append(parts, []conjunct{{method: m.Method}})
		}
	}
	for i := range m.All {
		if err := add(dnf(&m.All[i], neg)); err != nil {
			return nil, err
		}
	}
	if len(m.Any) > 0 {
		var cs []conjunct
		for i := range m.Any {
			sub, err := dnf(&m.Any[i], neg)
			if err != nil {
				return nil, err
			}
			if neg { // not(a or b) = not a and not b
				if cs, err = andDNF(cs, sub, i == 0); err != nil {
					return nil, err
				}
			} else {
				cs = append(cs, sub...)
			}
		}
		parts = append(parts, cs)
	}
	if m.Not != nil {
		if err := add(dnf(m.Not, !neg)); err != nil {
			return nil, err
		}
	}
	if neg { // not(a and b) = not a or not b
		var out []conjunct
		for _, p := range parts {
			out = append(out, p...)
		}
		return capDNF(out)
	}
	var out []conjunct
	for i, p := range parts {
		var err error
		if out, err = andDNF(out, p, i == 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// andDNF is the AND of two DNFs; first says a is the empty AND (true).
func andDNF(a, b []conjunct, first bool) ([]conjunct, error) {
	if first {
		return capDNF(b)
	}
	var out []conjunct
	for _, x := range a {
		for _, y := range b {
			c, ok, err := andConjuncts(x, y)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, c)
			}
		}
	}
	return capDNF(out)
}

func capDNF(cs []conjunct) ([]conjunct, error) {
	if len(cs) > maxProfileMatches {
		return nil, fmt.Errorf("expands to more than %d match alternatives", maxProfileMatches)
	}
	return cs, nil
}

// andConjuncts is x AND y; ok is false when it can never hold.
func andConjuncts(x, y conjunct) (conjunct, bool, error) {
	c := conjunct{method: x.method}
	switch {
	case x.method != "" && y.method != "" && x.method != y.method:
		return c, false, nil
	case c.method == "":
		c.method = y.method
	}
	if c.method != "" {
		if slices.Contains(x.notMethods, c.method) || slices.Contains(y.notMethods, c.method) {
			return c, false, nil
		}
	} else {
		c.notMethods = append(slices.Clone(x.notMethods), y.notMethods...)
		slices.Sort(c.notMethods)
		c.notMethods = slices.Compact(c.notMethods)
	}
	switch {
	case x.path != "" && y.path != "" && x.path != y.path:
		return c, false, fmt.Errorf("pathRegex %q and pathRegex %q must both match: their intersection cannot be written as one RE2 match", x.path, y.path)
	case x.path != "":
		c.path = x.path
	default:
		c.path = y.path
	}
	return c, true, nil
}

// failureCodes are the HTTP statuses (100..599) the response classes call
// failures: the first class whose condition matches decides; a status no
// class matches is a failure when it is 5xx (Linkerd's default).
func failureCodes(classes []ResponseClass) []uint32 {
	var out []uint32
	for code := uint32(100); code <= 599; code++ {
		failed := code >= 500
		for i := range classes {
			if c := classes[i].Condition; c != nil && c.matches(code) {
				failed = classes[i].IsFailure
				break
			}
		}
		if failed {
			out = append(out, code)
		}
	}
	return out
}

// matches evaluates a response condition for a status code.
func (m *ResponseMatch) matches(code uint32) bool {
	if s := m.Status; s != nil {
		lo, hi := s.Min, s.Max
		switch {
		case lo == 0:
			lo = hi
		case hi == 0:
			hi = lo
		}
		if code < lo || code > hi {
			return false
		}
	}
	for i := range m.All {
		if !m.All[i].matches(code) {
			return false
		}
	}
	if len(m.Any) > 0 && !slices.ContainsFunc(m.Any, func(a ResponseMatch) bool { return a.matches(code) }) {
		return false
	}
	if m.Not != nil && m.Not.matches(code) {
		return false
	}
	return true
}

// retryOn writes failure codes as a VirtualService retryOn: "5xx" when all
// of 500..599 are failures, and the other codes as retriable status codes.
func retryOn(codes []uint32) string {
	all5xx := true
	for c := uint32(500); c <= 599; c++ {
		if !slices.Contains(codes, c) {
			all5xx = false
			break
		}
	}
	var parts, nums []string
	if all5xx {
		parts = append(parts, "5xx")
	}
	for _, c := range codes {
		if !all5xx || c < 500 {
			nums = append(nums, strconv.FormatUint(uint64(c), 10))
		}
	}
	if len(nums) > 0 {
		parts = append(parts, "retriable-status-codes")
		parts = append(parts, nums...)
	}
	return strings.Join(parts, ",")
}
