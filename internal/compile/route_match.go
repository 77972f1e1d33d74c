package compile

import (
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// Pseudo-headers Istio matches method, authority and scheme on.
const (
	headerMethod    = ":method"
	headerAuthority = ":authority"
	headerScheme    = ":scheme"
)

// routeMatch turns one HTTPMatchRequest into an Envoy match, as Istio's
// TranslateRouteMatch does: uri → path, prefix or safe_regex (ignoreUriCase
// → case_sensitive false); headers and withoutHeaders (inverted) → header
// matchers sorted by name, then method, authority and scheme as the
// :method, :authority and :scheme pseudo-headers; queryParams → query
// parameter matchers sorted by name. Fields matched at compile time (port,
// sourceLabels, sourceNamespace, gateways) are not part of it. A nil m
// matches everything.
func routeMatch(m *model.HTTPMatchRequest) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm
	}
	if u := m.URI; u != nil {
		switch {
		case u.Exact != "":
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
		case u.Prefix != "":
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
		case u.Regex != "":
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
		}
	}
	if m.IgnoreURICase {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	for _, k := range sortedNames(m.Headers) {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.Headers[k]))
	}
	for _, k := range sortedNames(m.WithoutHeaders) {
		rm.Headers = append(rm.Headers, withoutHeaderMatcher(k, m.WithoutHeaders[k]))
	}
	sort.SliceStable(rm.Headers, func(i, j int) bool { return rm.Headers[i].GetName() < rm.Headers[j].GetName() })
	for _, pseudo := range []struct {
		name string
		m    *model.StringMatch
	}{{headerMethod, m.Method}, {headerAuthority, m.Authority}, {headerScheme, m.Scheme}} {
		if pseudo.m != nil {
			rm.Headers = append(rm.Headers, headerMatcher(pseudo.name, *pseudo.m))
		}
	}
	for _, k := range sortedNames(m.QueryParams) {
		rm.QueryParameters = append(rm.QueryParameters, queryParamMatcher(k, m.QueryParams[k]))
	}
	return rm
}

// stringMatcher is the Envoy form of a StringMatch; nil when none of exact,
// prefix and regex is set (the empty match, {} or exact "", which Istio
// reads as "present").
func stringMatcher(sm model.StringMatch) *matcherv3.StringMatcher {
	switch {
	case sm.Exact != "":
		return exactMatcher(sm.Exact)
	case sm.Prefix != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: sm.Prefix}}
	case sm.Regex != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: sm.Regex}}}
	}
	return nil
}

// headerMatcher matches a header's value, or its presence for an empty match.
func headerMatcher(name string, sm model.StringMatch) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: name}
	if s := stringMatcher(sm); s != nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: s}
	} else {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm
}

// withoutHeaderMatcher is headerMatcher inverted. As in Istio, a value
// matcher also treats a missing header as empty: Envoy's inverted matcher
// never matches a missing header otherwise, and "without x: exact foo" must
// match a request that has no x.
func withoutHeaderMatcher(name string, sm model.StringMatch) *routev3.HeaderMatcher {
	hm := headerMatcher(name, sm)
	hm.InvertMatch = true
	if hm.GetStringMatch() != nil {
		hm.TreatMissingHeaderAsEmpty = true
	}
	return hm
}

// queryParamMatcher matches a query parameter's value, or its presence for
// an empty match (exact "").
func queryParamMatcher(name string, sm model.StringMatch) *routev3.QueryParameterMatcher {
	qm := &routev3.QueryParameterMatcher{Name: name}
	if s := stringMatcher(sm); s != nil {
		qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: s}
	} else {
		qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
	}
	return qm
}

func exactMatcher(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// sortedNames returns the keys of m in order.
func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
