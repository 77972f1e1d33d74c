package rbac

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// translateCIDR translates a CidrRange; an unset prefix_len is 0, as in
// Envoy. IPv4-mapped IPv6 prefixes are kept as IPv4.
func translateCIDR(c *corev3.CidrRange) (netip.Prefix, error) {
	a, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address_prefix: %q is not an IP address", c.GetAddressPrefix())
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address_prefix: %q: zones are not supported", c.GetAddressPrefix())
	}
	bits := int(c.GetPrefixLen().GetValue())
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	if bits > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("prefix_len: %d exceeds %d bits", bits, a.BitLen())
	}
	return a.Prefix(bits)
}

func translatePath(p *matcherv3.PathMatcher) (matcher, error) {
	sm := p.GetPath()
	if sm == nil {
		return nil, fmt.Errorf("path: missing")
	}
	s, err := translateString(sm)
	if err != nil {
		return nil, fmt.Errorf("path%w", err)
	}
	return pathMatcher{s}, nil
}

// pseudoNames are the pseudo-headers a Request serves; "host" is
// :authority, as in Envoy.
var pseudoNames = map[string]string{":method": ":method", ":authority": ":authority", "host": ":authority",
	":path": ":path", ":scheme": ":scheme"}

func translateHeader(h *routev3.HeaderMatcher) (*headerMatcher, error) {
	name := strings.ToLower(h.GetName())
	if name == "" {
		return nil, fmt.Errorf("name: empty")
	}
	if p, ok := pseudoNames[name]; ok {
		name = p
	} else if strings.HasPrefix(name, ":") {
		return nil, fmt.Errorf("name: pseudo-header %q not supported (:method, :authority, :path, :scheme are)", h.GetName())
	}
	hm := &headerMatcher{name: name, kind: headerString, invert: h.GetInvertMatch(), missingAsEmpty: h.GetTreatMissingHeaderAsEmpty()}
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
		sm, field = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: s.SafeRegexMatch}}, "safe_regex_match"
	case *routev3.HeaderMatcher_StringMatch:
		sm = s.StringMatch
	case *routev3.HeaderMatcher_RangeMatch:
		lo, hi := s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
		if lo >= hi {
			return nil, fmt.Errorf("range_match: [%d, %d) is empty", lo, hi)
		}
		hm.kind, hm.lo, hm.hi = headerRange, lo, hi
		return hm, nil
	case *routev3.HeaderMatcher_PresentMatch:
		hm.kind = headerPresent
		if !s.PresentMatch {
			hm.invert = !hm.invert
		}
		return hm, nil
	case nil:
		// Envoy: no specifier is a presence match.
		hm.kind = headerPresent
		return hm, nil
	default:
		return nil, fmt.Errorf("header_match_specifier: %T not supported", s)
	}
	str, err := translateString(sm)
	if err != nil {
		return nil, fmt.Errorf("%s%w", field, err)
	}
	hm.s = str
	return hm, nil
}

func translateMetadata(m *matcherv3.MetadataMatcher) (*metadataMatcher, error) {
	if m.GetFilter() != AuthnFilter {
		return nil, fmt.Errorf("filter: %q not supported (only %q metadata is set)", m.GetFilter(), AuthnFilter)
	}
	if len(m.GetPath()) == 0 {
		return nil, fmt.Errorf("path: empty")
	}
	mm := &metadataMatcher{filter: m.GetFilter(), invert: m.GetInvert()}
	for i, seg := range m.GetPath() {
		k, ok := seg.GetSegment().(*matcherv3.MetadataMatcher_PathSegment_Key)
		if !ok || k.Key == "" {
			return nil, fmt.Errorf("path[%d].key: missing", i)
		}
		mm.path = append(mm.path, k.Key)
	}
	if m.GetValue() == nil {
		return nil, fmt.Errorf("value: missing")
	}
	v, err := translateValue(m.GetValue(), 0)
	if err != nil {
		return nil, fmt.Errorf("value.%w", err)
	}
	mm.value = v
	return mm, nil
}

func translateValue(v *matcherv3.ValueMatcher, depth int) (valueMatcher, error) {
	if depth > maxDepth {
		return valueMatcher{}, fmt.Errorf("match_pattern: nested deeper than %d", maxDepth)
	}
	switch p := v.GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_NullMatch_:
		return valueMatcher{kind: valueNull}, nil
	case *matcherv3.ValueMatcher_DoubleMatch:
		vm := valueMatcher{kind: valueDouble}
		switch d := p.DoubleMatch.GetMatchPattern().(type) {
		case *matcherv3.DoubleMatcher_Exact:
			vm.exact, vm.d = true, d.Exact
		case *matcherv3.DoubleMatcher_Range:
			vm.lo, vm.hi = d.Range.GetStart(), d.Range.GetEnd()
			if !(vm.lo < vm.hi) || math.IsNaN(vm.lo) || math.IsNaN(vm.hi) {
				return vm, fmt.Errorf("double_match.range: [%v, %v) is empty", vm.lo, vm.hi)
			}
		default:
			return vm, fmt.Errorf("double_match.match_pattern: missing")
		}
		return vm, nil
	case *matcherv3.ValueMatcher_StringMatch:
		s, err := translateString(p.StringMatch)
		if err != nil {
			return valueMatcher{}, fmt.Errorf("string_match%w", err)
		}
		return valueMatcher{kind: valueString, s: s}, nil
	case *matcherv3.ValueMatcher_BoolMatch:
		return valueMatcher{kind: valueBool, b: p.BoolMatch}, nil
	case *matcherv3.ValueMatcher_PresentMatch:
		return valueMatcher{kind: valuePresent, b: p.PresentMatch}, nil
	case *matcherv3.ValueMatcher_ListMatch:
		one, ok := p.ListMatch.GetMatchPattern().(*matcherv3.ListMatcher_OneOf)
		if !ok || one.OneOf == nil {
			return valueMatcher{}, fmt.Errorf("list_match.one_of: missing")
		}
		inner, err := translateValue(one.OneOf, depth+1)
		if err != nil {
			return valueMatcher{}, fmt.Errorf("list_match.one_of.%w", err)
		}
		return valueMatcher{kind: valueList, oneOf: &inner}, nil
	case *matcherv3.ValueMatcher_OrMatch:
		vs := p.OrMatch.GetValueMatchers()
		if len(vs) < 2 {
			return valueMatcher{}, fmt.Errorf("or_match.value_matchers: %d, want at least 2", len(vs))
		}
		vm := valueMatcher{kind: valueOr}
		for i, b := range vs {
			inner, err := translateValue(b, depth+1)
			if err != nil {
				return valueMatcher{}, fmt.Errorf("or_match.value_matchers[%d].%w", i, err)
			}
			vm.branches = append(vm.branches, inner)
		}
		return vm, nil
	case nil:
		return valueMatcher{}, fmt.Errorf("match_pattern: missing")
	default:
		return valueMatcher{}, fmt.Errorf("match_pattern: %T not supported", p)
	}
}

// translateString translates a StringMatcher. Errors start with the
// sub-field path ("": the matcher itself) so callers prefix their field.
func translateString(sm *matcherv3.StringMatcher) (stringMatcher, error) {
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
		expr := p.SafeRegex.GetRegex()
		if expr == "" {
			return s, fmt.Errorf(".safe_regex.regex: empty")
		}
		// Envoy ignores ignore_case for safe_regex; so do we.
		re, err := regexp.Compile("^(?:" + expr + ")$")
		if err != nil {
			return s, fmt.Errorf(".safe_regex.regex: invalid RE2 %q: %w", expr, err)
		}
		s.kind, s.re, s.ignoreCase = stringRegex, re, false
	case *matcherv3.StringMatcher_Custom:
		return s, fmt.Errorf(".custom: extension string matchers are not supported")
	default:
		return s, fmt.Errorf(": match_pattern missing, want exact, prefix, suffix, contains or safe_regex")
	}
	if s.kind != stringExact && s.kind != stringRegex && s.value == "" {
		return s, fmt.Errorf(": empty %s", [...]string{stringPrefix: "prefix", stringSuffix: "suffix", stringContains: "contains"}[s.kind])
	}
	return s, nil
}
