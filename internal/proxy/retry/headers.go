package retry

import (
	"fmt"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// Text is a header value: a string on the net/http path, bytes of the raw
// head on the HTTP/1.1 fast path.
type Text interface{ ~string | ~[]byte }

// Headers gives a matcher the request's header values. name is lower case;
// the pseudo-headers ":method", ":authority", ":path" and ":scheme" must be
// answered too. Several fields of one name are joined with ",", as Envoy
// matches them.
type Headers[T Text] interface {
	HeaderValue(name string) (T, bool)
}

type matchKind uint8

const (
	matchExact matchKind = iota + 1
	matchPrefix
	matchSuffix
	matchContains
	matchRegex
	matchPresent
)

// HeaderMatcher is one entry of retriable_request_headers (Envoy's
// HeaderMatcher).
type HeaderMatcher struct {
	Name       string // lower case
	kind       matchKind
	value      string // lower-cased when ignoreCase
	ignoreCase bool
	re         *regexp.Regexp
	literals   []string // a regex that is only literal alternatives ("GET|HEAD")
	invert     bool
}

// Eligible reports whether a request may be retried at all: when the policy
// lists retriable_request_headers, one of them must match.
func Eligible[T Text](p *Policy, h Headers[T]) bool {
	if len(p.RequestHeaders) == 0 {
		return true
	}
	for i := range p.RequestHeaders {
		if matchHeader(&p.RequestHeaders[i], h) {
			return true
		}
	}
	return false
}

func matchHeader[T Text](m *HeaderMatcher, h Headers[T]) bool {
	v, ok := h.HeaderValue(m.Name)
	if !ok {
		// As Envoy: a missing header matches only an inverted present match.
		return m.kind == matchPresent && m.invert
	}
	var r bool
	switch m.kind {
	case matchPresent:
		r = true
	case matchRegex:
		if m.literals != nil {
			for _, l := range m.literals {
				if string(v) == l {
					r = true
					break
				}
			}
			break
		}
		switch x := any(v).(type) {
		case string:
			r = m.re.MatchString(x)
		case []byte:
			r = m.re.Match(x)
		default:
			r = m.re.MatchString(string(v))
		}
	default:
		r = matchString(m, v)
	}
	return r != m.invert
}

// matchString compares without allocating: byte by byte, folding ASCII
// case when ignoreCase (the matcher's value is already lower case).
func matchString[T Text](m *HeaderMatcher, v T) bool {
	eq := func(off int) bool {
		for i := 0; i < len(m.value); i++ {
			c := v[off+i]
			if m.ignoreCase && 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != m.value[i] {
				return false
			}
		}
		return true
	}
	n, k := len(v), len(m.value)
	switch m.kind {
	case matchExact:
		return n == k && eq(0)
	case matchPrefix:
		return n >= k && eq(0)
	case matchSuffix:
		return n >= k && eq(n-k)
	case matchContains:
		for off := 0; off+k <= n; off++ {
			if eq(off) {
				return true
			}
		}
	}
	return false
}

func translateHeaderMatcher(h *routev3.HeaderMatcher) (HeaderMatcher, error) {
	m := HeaderMatcher{Name: strings.ToLower(h.GetName()), invert: h.GetInvertMatch()}
	if m.Name == "" {
		return m, fmt.Errorf("name: empty")
	}
	if strings.HasPrefix(m.Name, ":") {
		switch m.Name {
		case ":method", ":authority", ":path", ":scheme":
		default:
			return m, fmt.Errorf("name: pseudo-header %q not supported", m.Name)
		}
	}
	if h.GetTreatMissingHeaderAsEmpty() {
		return m, fmt.Errorf("treat_missing_header_as_empty: not supported")
	}
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
	case *routev3.HeaderMatcher_PresentMatch:
		m.kind = matchPresent
		if !s.PresentMatch {
			m.invert = !m.invert
		}
		return m, nil
	case nil:
		// No specifier: Envoy matches on presence.
		m.kind = matchPresent
		return m, nil
	default:
		return m, fmt.Errorf("header_match_specifier: %T not supported", s)
	}
	m.ignoreCase = sm.GetIgnoreCase()
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		m.kind, m.value = matchExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		m.kind, m.value = matchPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		m.kind, m.value = matchSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		m.kind, m.value = matchContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		expr := p.SafeRegex.GetRegex()
		if expr == "" {
			return m, fmt.Errorf("%s.safe_regex.regex: empty", field)
		}
		m.kind = matchRegex
		if !m.ignoreCase {
			// Literal alternatives match by comparison, and are a valid
			// RE2: no regexp is compiled (one costs ~6 KiB of heap, and
			// Istio's default retry policy puts this one on every route).
			if m.literals = literalAlternatives(expr); m.literals != nil {
				return m, nil
			}
		}
		flags := ""
		if m.ignoreCase {
			flags = "(?i)"
		}
		re, err := regexp.Compile(flags + "^(?:" + expr + ")$")
		if err != nil {
			return m, fmt.Errorf("%s.safe_regex.regex: invalid RE2 %q: %w", field, expr, err)
		}
		m.re = re
		return m, nil
	default:
		return m, fmt.Errorf("%s: %T not supported", field, p)
	}
	if m.ignoreCase {
		m.value = strings.ToLower(m.value)
	}
	return m, nil
}

// literalAlternatives returns the alternatives of a regex made only of
// letters, digits, '-' and '_' separated by '|' (the :method matcher of
// Istio's default retry policy), which match by comparison; nil otherwise.
func literalAlternatives(expr string) []string {
	alts := strings.Split(expr, "|")
	for _, a := range alts {
		if a == "" {
			return nil
		}
		for _, c := range a {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return nil
			}
		}
	}
	return alts
}
