package proxy

import (
	"fmt"
	"net/textproto"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

func translateMatch(m *routev3.RouteMatch) (routeMatch, error) {
	rm := routeMatch{caseSensitive: true}
	if cs := m.GetCaseSensitive(); cs != nil {
		rm.caseSensitive = cs.GetValue()
	}
	if m.GetGrpc() != nil || m.GetTlsContext() != nil || len(m.GetDynamicMetadata()) > 0 ||
		m.GetRuntimeFraction() != nil || len(m.GetFilterState()) > 0 || len(m.GetCookies()) > 0 {
		return rm, fmt.Errorf("grpc/tls_context/dynamic_metadata/runtime_fraction/filter_state/cookies: not supported")
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		rm.kind, rm.value = pathPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		rm.kind, rm.value = pathExact, ps.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileRegex(ps.SafeRegex, !rm.caseSensitive)
		if err != nil {
			return rm, fmt.Errorf("safe_regex.regex: %w", err)
		}
		rm.kind, rm.regex = pathRegex, re
	default:
		return rm, fmt.Errorf("path_specifier: %T not supported, want prefix, path or safe_regex", ps)
	}
	if !rm.caseSensitive {
		rm.value = strings.ToLower(rm.value)
	}
	for i, h := range m.GetHeaders() {
		hm, err := translateHeaderMatcher(h)
		if err != nil {
			return rm, fmt.Errorf("headers[%d].%w", i, err)
		}
		rm.headers = append(rm.headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		qm, err := translateQueryMatcher(q)
		if err != nil {
			return rm, fmt.Errorf("query_parameters[%d].%w", i, err)
		}
		rm.query = append(rm.query, qm)
	}
	return rm, nil
}

// compileRegex compiles an RE2 regex that must match the whole input, as
// Envoy's safe_regex does.
func compileRegex(r *matcherv3.RegexMatcher, ignoreCase bool) (*regexp.Regexp, error) {
	expr := r.GetRegex()
	if expr == "" {
		return nil, fmt.Errorf("empty regex")
	}
	prefix := ""
	if ignoreCase {
		prefix = "(?i)"
	}
	re, err := regexp.Compile(prefix + "^(?:" + expr + ")$")
	if err != nil {
		return nil, fmt.Errorf("invalid RE2 %q: %w", expr, err)
	}
	return re, nil
}

// pseudoHeaders are the request properties a HeaderMatcher may name. Host
// is matched as :authority on both paths (net/http keeps it out of the
// header map; Envoy stores it as :authority).
var pseudoHeaders = map[string]pseudoHeader{
	":method": pseudoMethod, ":authority": pseudoAuthority, "host": pseudoAuthority,
	":scheme": pseudoScheme, ":path": pseudoPath,
}

func translateHeaderMatcher(h *routev3.HeaderMatcher) (headerMatcher, error) {
	hm := headerMatcher{invert: h.GetInvertMatch(), missingAsEmpty: h.GetTreatMissingHeaderAsEmpty()}
	name := h.GetName()
	if name == "" {
		return hm, fmt.Errorf("name: empty")
	}
	if p, ok := pseudoHeaders[strings.ToLower(name)]; ok {
		hm.pseudo = p
	} else if strings.HasPrefix(name, ":") {
		return hm, fmt.Errorf("name: pseudo-header %q not supported (:method, :authority, :scheme, :path are)", name)
	}
	hm.name = textproto.CanonicalMIMEHeaderKey(name)
	// The deprecated specifiers are the string_match forms under other
	// names: translate them to a StringMatcher and handle one shape.
	var sm *matcherv3.StringMatcher
	field := "string_match"
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		sm, field = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s.ExactMatch}}, "exact_match"
	case *routev3.HeaderMatcher_PrefixMatch:
		sm, field = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s.PrefixMatch}}, "prefix_match"
	case *routev3.HeaderMatcher_SuffixMatch:
		sm, field = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s.SuffixMatch}}, "suffix_match"
	case *routev3.HeaderMatcher_ContainsMatch:
		sm, field = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: s.ContainsMatch}}, "contains_match"
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := compileRegex(s.SafeRegexMatch, false)
		if err != nil {
			return hm, fmt.Errorf("safe_regex_match.regex: %w", err)
		}
		hm.str = stringMatcher{kind: stringRegex, regex: re}
		return hm, nil
	case *routev3.HeaderMatcher_StringMatch:
		sm = s.StringMatch
	case *routev3.HeaderMatcher_PresentMatch:
		hm.present = true
		if !s.PresentMatch {
			hm.invert = !hm.invert
		}
		return hm, nil
	default:
		return hm, fmt.Errorf("header_match_specifier: %T not supported", s)
	}
	str, err := translateStringMatcher(sm)
	if err != nil {
		return hm, fmt.Errorf("%s%w", field, err)
	}
	hm.str = str
	return hm, nil
}

func translateQueryMatcher(q *routev3.QueryParameterMatcher) (queryMatcher, error) {
	qm := queryMatcher{name: q.GetName()}
	if qm.name == "" {
		return qm, fmt.Errorf("name: empty")
	}
	switch s := q.GetQueryParameterMatchSpecifier().(type) {
	case nil:
		qm.present = true // Envoy: no matcher is a presence match
	case *routev3.QueryParameterMatcher_PresentMatch:
		if !s.PresentMatch {
			return qm, fmt.Errorf("present_match: false is not supported (Envoy requires true)")
		}
		qm.present = true
	case *routev3.QueryParameterMatcher_StringMatch:
		str, err := translateStringMatcher(s.StringMatch)
		if err != nil {
			return qm, fmt.Errorf("string_match%w", err)
		}
		qm.str = str
	}
	return qm, nil
}

// translateStringMatcher translates a StringMatcher. Errors start with the
// sub-field path ("": the matcher itself) so callers prefix their field.
func translateStringMatcher(sm *matcherv3.StringMatcher) (stringMatcher, error) {
	s := stringMatcher{ignoreCase: sm.GetIgnoreCase()}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		s.kind, s.value = stringExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		s.kind, s.value = stringPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		s.kind, s.value = stringSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		s.kind, s.value = stringContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		// ignore_case has no effect on safe_regex in Envoy.
		re, err := compileRegex(p.SafeRegex, false)
		if err != nil {
			return s, fmt.Errorf(".safe_regex.regex: %w", err)
		}
		s.kind, s.regex, s.ignoreCase = stringRegex, re, false
	default:
		return s, fmt.Errorf(": %T not supported, want exact, prefix, suffix, contains or safe_regex", p)
	}
	if (s.kind == stringPrefix || s.kind == stringSuffix || s.kind == stringContains) && s.value == "" {
		return s, fmt.Errorf(": empty %s", [...]string{stringPrefix: "prefix", stringSuffix: "suffix", stringContains: "contains"}[s.kind])
	}
	return s, nil
}
