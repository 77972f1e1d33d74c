package compile

// The encoding of one AuthorizationPolicy value (ADR 002, the contract
// table): a principal, a namespace, an IP block, a host, a path… each into
// the Envoy rbac Principal or Permission that matches it.

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// authnFilter is the dynamic metadata namespace jwt_authn results are read
// from (Istio's name), and the keys under it.
const (
	authnFilter      = "istio_authn"
	attrReqPrincipal = "request.auth.principal"
	attrReqAudiences = "request.auth.audiences"
	attrReqPresenter = "request.auth.presenter"
	attrReqClaims    = "request.auth.claims"
	attrReqHeaders   = "request.headers"
	attrSourceIP     = "source.ip"
	attrRemoteIP     = "remote.ip"
	attrSourceNS     = "source.namespace"
	attrSourcePrinc  = "source.principal"
	attrDestIP       = "destination.ip"
	attrDestPort     = "destination.port"
	attrConnSNI      = "connection.sni"
	spiffePrefix     = "spiffe://"
	anythingRegex    = ".+"
	authorityHeader  = ":authority"
	methodHeader     = ":method"
)

// principalGen encodes one value of a source-side field.
type principalGen func(v string) (*rbacv3.Principal, error)

// permissionGen encodes one value of a request-side field.
type permissionGen func(v string) (*rbacv3.Permission, error)

// stringMatch is Istio's wildcard form of a string: "*" any non-empty
// value, "p*" a prefix, "*s" a suffix, anything else exact.
func stringMatch(v string, ignoreCase bool) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: anythingRegex}}}
	case strings.HasPrefix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}, IgnoreCase: ignoreCase}
	case strings.HasSuffix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v[:len(v)-1]}, IgnoreCase: ignoreCase}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}, IgnoreCase: ignoreCase}
}

// regexMatch is a StringMatcher for an RE2 regex (matching the whole value).
func regexMatch(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

// headerMatch matches a header (name lowercased: header names are
// case-insensitive) against a wildcard value: "*" is presence.
func headerMatch(name, v string, ignoreCase bool) *routev3.HeaderMatcher {
	h := &routev3.HeaderMatcher{Name: strings.ToLower(name)}
	if v == "*" {
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	} else {
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatch(v, ignoreCase)}
	}
	return h
}

// sourcePrincipal: the peer certificate's URI SAN. Istio principals are
// SPIFFE IDs without the scheme: "v" is exactly spiffe://v, "*" any
// authenticated peer, "p*" a prefix, "*s" a suffix.
func sourcePrincipal(v string) (*rbacv3.Principal, error) {
	var sm *matcherv3.StringMatcher
	switch {
	case v == "*":
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: spiffePrefix}}
	case strings.HasPrefix(v, "*"):
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}}
	case strings.HasSuffix(v, "*"):
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: spiffePrefix + v[:len(v)-1]}}
	default:
		sm = exactMatcher(spiffePrefix + v)
	}
	return authenticated(sm), nil
}

// sourceNamespace: the namespace segment of the peer's SPIFFE ID, each
// "*" of v matching any characters but "/".
func sourceNamespace(v string) (*rbacv3.Principal, error) {
	parts := strings.Split(v, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return authenticated(regexMatch("^spiffe://[^/]+/ns/" + strings.Join(parts, "[^/]*") + "/sa/[^/]+$")), nil
}

func authenticated(sm *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
		Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: sm},
	}}
}

// cidr parses an IP block: a CIDR, or a bare address (/32 or /128).
func cidr(v string) (*corev3.CidrRange, error) {
	var p netip.Prefix
	if strings.Contains(v, "/") {
		var err error
		if p, err = netip.ParsePrefix(v); err != nil {
			return nil, fmt.Errorf("IP block %q: %w", v, err)
		}
		p = p.Masked()
	} else {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("IP block %q: %w", v, err)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, nil
}

// directRemoteIP: the address of the connection's peer.
func directRemoteIP(v string) (*rbacv3.Principal, error) {
	c, err := cidr(v)
	if err != nil {
		return nil, err
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: c}}, nil
}

// remoteIP: the original client's address (x-forwarded-for, see the ADR).
func remoteIP(v string) (*rbacv3.Principal, error) {
	c, err := cidr(v)
	if err != nil {
		return nil, err
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: c}}, nil
}

// authnMetadata matches the value at path in jwt_authn's istio_authn
// metadata.
func authnMetadata(value *matcherv3.ValueMatcher, path ...string) *rbacv3.Principal {
	segs := make([]*matcherv3.MetadataMatcher_PathSegment, len(path))
	for i, k := range path {
		segs[i] = &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: k}}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
		Filter: authnFilter,
		Path:   segs,
		Value:  value,
	}}}
}

func stringValue(v string) *matcherv3.ValueMatcher {
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: stringMatch(v, false)}}
}

// listValue matches a list with an element matching v.
func listValue(v string) *matcherv3.ValueMatcher {
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{
		MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: stringValue(v)},
	}}}
}

// requestPrincipal: the verified JWT's iss/sub (HTTP only).
func requestPrincipal(v string) (*rbacv3.Principal, error) {
	return authnMetadata(stringValue(v), attrReqPrincipal), nil
}

// requestAudiences: one of the verified JWT's audiences (HTTP only).
func requestAudiences(v string) (*rbacv3.Principal, error) {
	return authnMetadata(listValue(v), attrReqAudiences), nil
}

// requestPresenter: the verified JWT's azp (HTTP only).
func requestPresenter(v string) (*rbacv3.Principal, error) {
	return authnMetadata(stringValue(v), attrReqPresenter), nil
}

// requestClaim returns the generator of a claim at path (nested objects):
// a string claim equal to v, or a list claim with an element equal to v.
func requestClaim(path []string) principalGen {
	full := append([]string{attrReqClaims}, path...)
	return func(v string) (*rbacv3.Principal, error) {
		return orPrincipal([]*rbacv3.Principal{
			authnMetadata(stringValue(v), full...),
			authnMetadata(listValue(v), full...),
		}), nil
	}
}

// requestHeader returns the generator of a header condition; the proxy
// tests every value of a repeated header (ADR 002 deviation).
func requestHeader(name string) principalGen {
	return func(v string) (*rbacv3.Principal, error) {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: headerMatch(name, v, false)}}, nil
	}
}

// host matches the :authority case-insensitively, with or without a port:
// "h" is h or "h:<port>", "h:p" exactly that, "*s" ends with s (before an
// optional port), "p*" starts with p, "*" any host.
func host(v string) (*rbacv3.Permission, error) {
	authority := func(sm *matcherv3.StringMatcher) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
			Name:                 authorityHeader,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm},
		}}}
	}
	switch {
	case v == "*":
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatch(authorityHeader, v, true)}}, nil
	case strings.HasPrefix(v, "*"):
		return orPermission([]*rbacv3.Permission{
			authority(stringMatch(v, true)),
			authority(regexMatch("(?i)^.*" + regexp.QuoteMeta(v[1:]) + ":[0-9]+$")),
		}), nil
	case strings.HasSuffix(v, "*"):
		return authority(stringMatch(v, true)), nil
	case hasPort(v):
		return authority(stringMatch(v, true)), nil
	}
	return orPermission([]*rbacv3.Permission{
		authority(stringMatch(v, true)),
		authority(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v + ":"}, IgnoreCase: true}),
	}), nil
}

// hasPort reports whether a host value ends with ":<digits>".
func hasPort(v string) bool {
	i := strings.LastIndexByte(v, ':')
	if i < 0 || i == len(v)-1 || strings.HasSuffix(v, "]") {
		return false
	}
	_, err := strconv.ParseUint(v[i+1:], 10, 16)
	return err == nil
}

// method matches the :method pseudo-header exactly (HTTP only).
func method(v string) (*rbacv3.Permission, error) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatch(methodHeader, v, false)}}, nil
}

// path matches the normalized path without the query (HTTP only).
func path(v string) (*rbacv3.Permission, error) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: stringMatch(v, false)},
	}}}, nil
}

// destinationPort matches the port the connection was accepted on.
func destinationPort(v string) (*rbacv3.Permission, error) {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("port %q: want 1..65535", v)
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}, nil
}

// destinationIP matches the address the connection was accepted on.
func destinationIP(v string) (*rbacv3.Permission, error) {
	c, err := cidr(v)
	if err != nil {
		return nil, err
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: c}}, nil
}

// serverName matches the TLS SNI.
func serverName(v string) (*rbacv3.Permission, error) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: stringMatch(v, false)}}, nil
}

// bracketKey parses the "[a][b]…" suffix of a when key: the names inside
// the brackets, at least one, none empty.
func bracketKey(key, prefix string) ([]string, error) {
	rest := strings.TrimPrefix(key, prefix)
	var out []string
	for rest != "" {
		if rest[0] != '[' {
			return nil, fmt.Errorf("key %q: want %s[name]", key, prefix)
		}
		end := strings.IndexByte(rest, ']')
		if end < 2 {
			return nil, fmt.Errorf("key %q: want %s[name]", key, prefix)
		}
		out = append(out, rest[1:end])
		rest = rest[end+1:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("key %q: want %s[name]", key, prefix)
	}
	return out, nil
}

func andPrincipal(ids []*rbacv3.Principal) *rbacv3.Principal {
	if len(ids) == 0 {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ids}}}
}

func orPrincipal(ids []*rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
}

func notPrincipal(id *rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: id}}
}

func andPermission(rules []*rbacv3.Permission) *rbacv3.Permission {
	if len(rules) == 0 {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: rules}}}
}

func orPermission(rules []*rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rules}}}
}

func notPermission(rule *rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: rule}}
}
