package model

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Validation of the security kinds (security.go). It follows Istio's own
// validation (pkg/config/validation, pkg/config/security) and is stricter
// where Istio would accept a value that can never match: a policy that
// silently matches nothing is a DENY that does not deny.
//
//	PeerAuthentication    mode, portLevelMtls (ports, needs a selector)
//	AuthorizationPolicy   action, rules → from/to/when, each value by kind
//	RequestAuthentication jwtRules: validate_security_jwt.go

// mtlsModes are PeerAuthentication's modes, spelled as Istio spells them.
var mtlsModes = []string{MTLSUnset, MTLSDisable, MTLSPermissive, MTLSStrict}

func (v *validator) peerAuthentication(s *PeerAuthenticationSpec) {
	v.workloadSelector("spec.selector", s.Selector)
	if s.Mtls != nil {
		v.mtlsMode("spec.mtls.mode", s.Mtls.Mode)
	}
	switch {
	case s.PortLevelMtls != nil && len(s.PortLevelMtls) == 0:
		v.errf("spec.portLevelMtls", "must name at least one port when set")
	case len(s.PortLevelMtls) > 0 && s.Selector.Empty():
		v.errf("spec.portLevelMtls", "requires spec.selector: a namespace-wide or mesh-wide PeerAuthentication cannot set port-level mTLS (as in Istio)")
	}
	for _, k := range sortedKeys(s.PortLevelMtls) {
		kp := keyPath("spec.portLevelMtls", k)
		if n, err := strconv.ParseUint(k, 10, 16); err != nil || n == 0 || strconv.FormatUint(n, 10) != k {
			v.errf(kp, "%q is not a port number 1..65535", k)
		}
		v.mtlsMode(kp+".mode", s.PortLevelMtls[k].Mode)
	}
}

func (v *validator) mtlsMode(p, mode string) {
	if mode == "" {
		return // UNSET
	}
	for _, m := range mtlsModes {
		if mode == m {
			return
		}
	}
	v.errf(p, "%q is not one of %s (case-sensitive)", mode, strings.Join(mtlsModes, ", "))
}

var (
	// labelNameRegex is a Kubernetes label name (the part after an optional prefix/).
	labelNameRegex = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	// dnsSubdomainRegex is a lowercase RFC 1123 subdomain (a label key's prefix).
	dnsSubdomainRegex = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// labelKeyProblem says why k is not a Kubernetes label key, or "".
func labelKeyProblem(k string) string {
	if strings.Contains(k, "*") {
		return fmt.Sprintf("label %q: wildcards are not supported in a selector", k)
	}
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		prefix, name = "", k
	}
	switch {
	case k == "":
		return "label key must not be empty"
	case hasPrefix && (prefix == "" || len(prefix) > 253 || !dnsSubdomainRegex.MatchString(prefix)):
		return fmt.Sprintf("label key %q: the prefix must be a lowercase DNS subdomain", k)
	case len(name) > 63 || !labelNameRegex.MatchString(name):
		return fmt.Sprintf("label key %q: the name must be 1..63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k)
	}
	return ""
}

// labelValueProblem says why val is not a Kubernetes label value, or "".
func labelValueProblem(val string) string {
	switch {
	case val == "":
		return ""
	case strings.Contains(val, "*"):
		return fmt.Sprintf("label value %q: wildcards are not supported in a selector", val)
	case len(val) > 63 || !labelNameRegex.MatchString(val):
		return fmt.Sprintf("label value %q: want at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", val)
	}
	return ""
}

func (v *validator) workloadSelector(p string, s *LabelSelector) {
	if s == nil {
		return
	}
	if len(s.MatchLabels) == 0 {
		v.warnf(p, "a selector without matchLabels selects every workload of the namespace")
	}
	for _, k := range sortedKeys(s.MatchLabels) {
		kp := keyPath(p+".matchLabels", k)
		if r := labelKeyProblem(k); r != "" {
			v.errf(kp, "%s", r)
		}
		if r := labelValueProblem(s.MatchLabels[k]); r != "" {
			v.errf(kp, "%s", r)
		}
	}
}

// policyTargets refuses Gateway API attachment, which Trellis has no use for.
func (v *validator) policyTargets(ref *PolicyTargetReference, refs []PolicyTargetReference) {
	const reason = "not supported: select workloads with spec.selector"
	if ref != nil {
		v.errf("spec.targetRef", reason)
	}
	if len(refs) > 0 {
		v.errf("spec.targetRefs", reason)
	}
}

func (v *validator) authorizationPolicy(s *AuthorizationPolicySpec) {
	v.workloadSelector("spec.selector", s.Selector)
	v.policyTargets(s.TargetRef, s.TargetRefs)
	switch s.Action {
	case "", AuthzAllow, AuthzDeny, AuthzAudit:
	case AuthzCustom:
		v.errf("spec.action", "CUSTOM (ext_authz) is not supported")
	default:
		v.errf("spec.action", "%q is not one of ALLOW, DENY, AUDIT (case-sensitive)", s.Action)
	}
	if s.Provider != nil && s.Action != AuthzCustom {
		v.errf("spec.provider", "only with action CUSTOM")
	}
	if s.Action == AuthzDeny && len(s.Rules) == 0 {
		v.errf("spec.rules", "a DENY policy without rules never matches (Istio rejects it): add an empty rule {} to deny every request")
	}
	for i := range s.Rules {
		v.authzRule(fmt.Sprintf("spec.rules[%d]", i), &s.Rules[i])
	}
}

func (v *validator) authzRule(p string, r *AuthzRule) {
	if r.From != nil && len(r.From) == 0 {
		v.errf(p+".from", "must not be empty when set")
	}
	for j := range r.From {
		fp := fmt.Sprintf("%s.from[%d].source", p, j)
		if r.From[j].Source == nil {
			v.errf(fp, "required")
			continue
		}
		v.authzSource(fp, r.From[j].Source)
	}
	if r.To != nil && len(r.To) == 0 {
		v.errf(p+".to", "must not be empty when set")
	}
	for j := range r.To {
		tp := fmt.Sprintf("%s.to[%d].operation", p, j)
		if r.To[j].Operation == nil {
			v.errf(tp, "required")
			continue
		}
		v.authzOperation(tp, r.To[j].Operation)
	}
	for j := range r.When {
		v.authzCondition(fmt.Sprintf("%s.when[%d]", p, j), &r.When[j])
	}
}

// valueList is one list field of a source or operation and how to check a value of it.
type valueList struct {
	name   string
	values []string
	check  func(p, s string)
}

// valueLists checks every value of lists and returns how many there are.
func (v *validator) valueLists(p string, lists []valueList) int {
	n := 0
	for _, l := range lists {
		n += len(l.values)
		for i, s := range l.values {
			l.check(fmt.Sprintf("%s.%s[%d]", p, l.name, i), s)
		}
	}
	return n
}

func (v *validator) authzSource(p string, s *AuthzSource) {
	n := v.valueLists(p, []valueList{
		{"principals", s.Principals, v.principal},
		{"notPrincipals", s.NotPrincipals, v.principal},
		{"requestPrincipals", s.RequestPrincipals, v.wildcardValue},
		{"notRequestPrincipals", s.NotRequestPrincipals, v.wildcardValue},
		{"namespaces", s.Namespaces, v.wildcardValue},
		{"notNamespaces", s.NotNamespaces, v.wildcardValue},
		{"ipBlocks", s.IPBlocks, v.ipBlock},
		{"notIpBlocks", s.NotIPBlocks, v.ipBlock},
		{"remoteIpBlocks", s.RemoteIPBlocks, v.ipBlock},
		{"notRemoteIpBlocks", s.NotRemoteIPBlocks, v.ipBlock},
	})
	if n == 0 {
		v.errf(p, "must not be empty: set principals, requestPrincipals, namespaces, ipBlocks, remoteIpBlocks or a not* form")
	}
}

func (v *validator) authzOperation(p string, o *AuthzOperation) {
	n := v.valueLists(p, []valueList{
		{"hosts", o.Hosts, v.wildcardValue},
		{"notHosts", o.NotHosts, v.wildcardValue},
		{"ports", o.Ports, v.portString},
		{"notPorts", o.NotPorts, v.portString},
		{"methods", o.Methods, v.method},
		{"notMethods", o.NotMethods, v.method},
		{"paths", o.Paths, v.authzPath},
		{"notPaths", o.NotPaths, v.authzPath},
	})
	if n == 0 {
		v.errf(p, "must not be empty: set hosts, ports, methods, paths or a not* form")
	}
}

// wildcardProblem says why s is not a value of a matcher with Istio's
// wildcards, or "": "*" alone (present), "abc*" (prefix) or "*abc" (suffix);
// a '*' anywhere else would be taken literally and almost surely never match.
func wildcardProblem(s string) string {
	if s == "" {
		return "must not be empty"
	}
	switch n := strings.Count(s, "*"); {
	case n == 0, s == "*":
		return ""
	case n == 1 && (s[0] == '*' || s[len(s)-1] == '*'):
		return ""
	}
	return fmt.Sprintf("%q: '*' is only allowed as the whole value, a prefix (\"*abc\") or a suffix (\"abc*\")", s)
}

func (v *validator) wildcardValue(p, s string) {
	if r := wildcardProblem(s); r != "" {
		v.errf(p, "%s", r)
	}
}

// principal checks a peer identity as Istio writes it: the SPIFFE ID without
// its scheme ("cluster.local/ns/default/sa/sleep").
func (v *validator) principal(p, s string) {
	if r := wildcardProblem(s); r != "" {
		v.errf(p, "%s", r)
		return
	}
	if strings.HasPrefix(strings.ToLower(strings.TrimPrefix(s, "*")), "spiffe://") {
		v.errf(p, "%q: write principals without \"spiffe://\" (e.g. \"cluster.local/ns/default/sa/sleep\"); as written it never matches", s)
	}
}

// ipBlock checks an IP address or CIDR range (source.ip, ipBlocks...).
func (v *validator) ipBlock(p, s string) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			v.errf(p, "%q is not an IP address or CIDR range", s)
			return
		}
		if pfx != pfx.Masked() {
			v.warnf(p, "%q has bits set outside its prefix length: it matches %s", s, pfx.Masked())
		}
		return
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		v.errf(p, "%q is not an IP address or CIDR range", s)
	case a.Zone() != "":
		v.errf(p, "%q: an IPv6 zone is not allowed", s)
	}
}

// portString checks a port written as a string (ports, destination.port).
func (v *validator) portString(p, s string) {
	if n, err := strconv.ParseUint(s, 10, 16); err != nil || n == 0 {
		v.errf(p, "%q is not a port number 1..65535", s)
	}
}

// method checks an HTTP method. Istio matches it exactly: a lowercase
// method is legal HTTP but never matches what clients send.
func (v *validator) method(p, s string) {
	switch {
	case s == "":
		v.errf(p, "must not be empty")
	case !headerNameRegex.MatchString(s):
		v.errf(p, "%q is not an HTTP method (a token)", s)
	case strings.ToUpper(s) != s:
		v.warnf(p, "methods are case-sensitive: %q does not match %q", s, strings.ToUpper(s))
	}
}

// authzPath checks a path of an operation: exact ("/a"), prefix ("/a/*"),
// suffix ("*.html") or presence ("*"), matched on the normalized path
// without its query (docs/adr/002).
func (v *validator) authzPath(p, s string) {
	switch {
	case s == "":
		v.errf(p, "must not be empty")
		return
	case strings.ContainsAny(s, "{}"):
		v.errf(p, "%q: path templates are not supported", s)
		return
	}
	if r := wildcardProblem(s); r != "" {
		v.errf(p, "%s", r)
		return
	}
	if s[0] != '/' && s[0] != '*' {
		v.errf(p, "%q must start with \"/\" (or be \"*\", or a suffix \"*abc\")", s)
		return
	}
	if strings.ContainsAny(s, "?#") {
		v.warnf(p, "%q: paths are matched without the query and fragment, so this never matches", s)
		return
	}
	if r := unnormalizedPath(strings.Trim(s, "*")); r != "" {
		v.warnf(p, "%q: %s; requests are matched after normalization, so this never matches", s, r)
	}
}

// unnormalizedPath says why a literal piece of a path would be changed by
// the proxy's normalization (internal/proxy/pathnorm), or "".
func unnormalizedPath(s string) string {
	switch {
	case strings.Contains(s, "//"):
		return "merged slashes"
	case strings.Contains(s, "\\"):
		return "a backslash is read as \"/\""
	case strings.Contains(s, "/./"), strings.Contains(s, "/../"), strings.HasSuffix(s, "/."), strings.HasSuffix(s, "/.."):
		return "dot segments are removed"
	}
	for i := strings.IndexByte(s, '%'); i >= 0; i = strings.IndexByte(s, '%') {
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "a malformed %-escape is refused with 400"
		}
		b, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
		switch c := byte(b); {
		case c == '/' || c == '\\' || isUnreserved(c):
			return fmt.Sprintf("%s is decoded", s[i:i+3])
		case s[i+1:i+3] != strings.ToUpper(s[i+1:i+3]):
			return fmt.Sprintf("%s is uppercased", s[i:i+3])
		}
		s = s[i+3:]
	}
	return ""
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// isUnreserved reports an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
