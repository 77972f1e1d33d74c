package rbac

import (
	"encoding/json"
	"net/netip"
	"regexp"
	"strconv"
)

// matcher is one node of a permission or principal tree.
type matcher interface {
	match(r Request) bool
}

type anyMatcher struct{}

func (anyMatcher) match(Request) bool { return true }

type andMatcher []matcher

func (m andMatcher) match(r Request) bool {
	for _, c := range m {
		if !c.match(r) {
			return false
		}
	}
	return true
}

type orMatcher []matcher

func (m orMatcher) match(r Request) bool { return anyMatch(m, r) }

type notMatcher struct{ m matcher }

func (m notMatcher) match(r Request) bool { return !m.m.match(r) }

// authenticatedMatcher is Principal.authenticated: a verified peer, whose
// URI SAN matches name when set.
type authenticatedMatcher struct {
	name *stringMatcher // nil: any verified peer
}

func (m authenticatedMatcher) match(r Request) bool {
	p, ok := r.PeerPrincipal()
	if !ok {
		return false
	}
	return m.name == nil || m.name.match(p)
}

type ipSource int

const (
	ipDirectRemote ipSource = iota + 1
	ipRemote
	ipDestination
)

// ipMatcher is direct_remote_ip, remote_ip, source_ip or destination_ip.
type ipMatcher struct {
	src    ipSource
	prefix netip.Prefix
}

func (m ipMatcher) match(r Request) bool {
	var a netip.Addr
	switch m.src {
	case ipDirectRemote:
		a = r.DirectRemoteIP()
	case ipRemote:
		a = r.RemoteIP()
	case ipDestination:
		a = r.DestinationIP()
	}
	return a.IsValid() && m.prefix.Contains(a.Unmap())
}

// portMatcher is destination_port (lo == hi) or destination_port_range
// (hi exclusive, stored as hi-1).
type portMatcher struct{ lo, hi uint32 }

func (m portMatcher) match(r Request) bool {
	p := r.DestinationPort()
	return m.lo <= p && p <= m.hi
}

type sniMatcher struct{ s stringMatcher }

func (m sniMatcher) match(r Request) bool { return m.s.match(r.RequestedServerName()) }

type pathMatcher struct{ s stringMatcher }

func (m pathMatcher) match(r Request) bool { return r.HTTP() && m.s.match(r.URLPath()) }

// headerMatcher is a config.route.v3.HeaderMatcher. Every value of a
// repeated header is tested; the header matches when any value does.
type headerMatcher struct {
	name           string // lowercase
	kind           headerKind
	s              stringMatcher
	lo, hi         int64 // range_match: [lo, hi)
	presentValue   bool  // present_match: its value
	invert         bool
	missingAsEmpty bool
}

type headerKind int

const (
	headerString headerKind = iota + 1
	headerPresent
	headerRange
)

func (m *headerMatcher) match(r Request) bool {
	if !r.HTTP() {
		return false
	}
	v, next, ok := r.HeaderValue(m.name, 0)
	if !ok {
		if !m.missingAsEmpty {
			// As Envoy: a missing header matches only an inverted
			// present_match (present_match: false is translated to that).
			return m.kind == headerPresent && m.invert
		}
		return m.matchValue("") != m.invert
	}
	if m.kind == headerPresent {
		return !m.invert
	}
	for {
		if m.matchValue(v) {
			return !m.invert
		}
		if v, next, ok = r.HeaderValue(m.name, next); !ok {
			return m.invert
		}
	}
}

func (m *headerMatcher) matchValue(v string) bool {
	switch m.kind {
	case headerString:
		return m.s.match(v)
	case headerPresent:
		return true
	case headerRange:
		n, err := strconv.ParseInt(v, 10, 64)
		return err == nil && m.lo <= n && n < m.hi
	}
	return false
}

// metadataMatcher is a type.matcher.v3.MetadataMatcher on the request's
// dynamic metadata.
type metadataMatcher struct {
	filter string
	path   []string
	value  valueMatcher
	invert bool
}

func (m *metadataMatcher) match(r Request) bool {
	if !r.HTTP() {
		return false
	}
	v, ok := r.AuthMetadata(m.filter, m.path)
	return m.value.match(v, ok) != m.invert
}

type valueKind int

const (
	valueNull valueKind = iota + 1
	valueDouble
	valueString
	valueBool
	valuePresent
	valueList
	valueOr
)

// valueMatcher is a type.matcher.v3.ValueMatcher over the values a
// Request's AuthMetadata returns.
type valueMatcher struct {
	kind     valueKind
	s        stringMatcher
	b        bool // bool_match, present_match
	exact    bool // double_match.exact, else the range [lo, hi)
	d, lo    float64
	hi       float64
	oneOf    *valueMatcher  // list_match.one_of
	branches []valueMatcher // or_match
}

// match tests v (ok: present). A list value matches a string matcher when
// one of its elements does, and a single value matches a list matcher as a
// list of one: Istio's claims may be either, and the ADR asks for "any
// element" semantics on both.
func (m *valueMatcher) match(v any, ok bool) bool {
	if !ok {
		return false
	}
	switch m.kind {
	case valueNull:
		return v == nil
	case valuePresent:
		return m.b && v != nil
	case valueBool:
		b, isBool := v.(bool)
		return isBool && b == m.b
	case valueString:
		switch v := v.(type) {
		case string:
			return m.s.match(v)
		case []string:
			for _, e := range v {
				if m.s.match(e) {
					return true
				}
			}
		case []any:
			for _, e := range v {
				if s, isStr := e.(string); isStr && m.s.match(s) {
					return true
				}
			}
		}
		return false
	case valueDouble:
		f, isNum := number(v)
		if !isNum {
			return false
		}
		if m.exact {
			return f == m.d
		}
		return m.lo <= f && f < m.hi
	case valueList:
		switch v := v.(type) {
		case []string:
			for _, e := range v {
				if m.oneOf.match(e, true) {
					return true
				}
			}
			return false
		case []any:
			for _, e := range v {
				if m.oneOf.match(e, true) {
					return true
				}
			}
			return false
		}
		return m.oneOf.match(v, true)
	case valueOr:
		for i := range m.branches {
			if m.branches[i].match(v, true) {
				return true
			}
		}
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// stringMatcher is a type.matcher.v3.StringMatcher: exact, prefix, suffix,
// contains (ASCII case-insensitive with ignore_case), or an RE2 regex that
// must match the whole value.
type stringMatcher struct {
	kind       stringKind
	value      string
	ignoreCase bool
	re         *regexp.Regexp
}

type stringKind int

const (
	stringExact stringKind = iota + 1
	stringPrefix
	stringSuffix
	stringContains
	stringRegex
)

func (s *stringMatcher) match(v string) bool {
	n := len(s.value)
	switch s.kind {
	case stringExact:
		if s.ignoreCase {
			return equalFold(v, s.value)
		}
		return v == s.value
	case stringPrefix:
		return len(v) >= n && s.eq(v[:n])
	case stringSuffix:
		return len(v) >= n && s.eq(v[len(v)-n:])
	case stringContains:
		for i := 0; i+n <= len(v); i++ {
			if s.eq(v[i : i+n]) {
				return true
			}
		}
		return false
	case stringRegex:
		return s.re.MatchString(v)
	}
	return false
}

func (s *stringMatcher) eq(v string) bool {
	if s.ignoreCase {
		return equalFold(v, s.value)
	}
	return v == s.value
}

// equalFold compares ASCII case-insensitively, as Envoy's ignore_case does.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
