package model

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Validation of RequestAuthentication: each jwtRule's issuer, key set
// (inline JWKS or a URI the sidecar fetches, never a cloud metadata
// address), token locations and output headers.

func (v *validator) requestAuthentication(s *RequestAuthenticationSpec) {
	v.workloadSelector("spec.selector", s.Selector)
	v.policyTargets(s.TargetRef, s.TargetRefs)
	issuers := map[string]int{}
	for i := range s.JWTRules {
		p := fmt.Sprintf("spec.jwtRules[%d]", i)
		r := &s.JWTRules[i]
		v.jwtRule(p, r)
		if r.Issuer == "" {
			continue
		}
		if j, dup := issuers[r.Issuer]; dup {
			v.errf(p+".issuer", "duplicate issuer %q (also spec.jwtRules[%d])", r.Issuer, j)
			continue
		}
		issuers[r.Issuer] = i
	}
}

func (v *validator) jwtRule(p string, r *JWTRule) {
	if r.Issuer == "" {
		v.errf(p+".issuer", "required")
	}
	for i, a := range r.Audiences {
		v.nonEmpty(fmt.Sprintf("%s.audiences[%d]", p, i), a)
	}
	switch {
	case r.Jwks != "" && r.JwksURI != "":
		v.errf(p, "jwks and jwksUri are mutually exclusive")
	case r.Jwks == "" && r.JwksURI == "":
		v.errf(p, "one of jwksUri and jwks is required (finding the keys through the issuer's OpenID discovery is not supported)")
	}
	if r.Jwks != "" {
		if err := checkJWKS(r.Jwks); err != nil {
			v.errf(p+".jwks", "%v", err)
		}
	}
	if r.JwksURI != "" {
		if err := checkJWKSURI(r.JwksURI); err != nil {
			v.errf(p+".jwksUri", "%v", err)
		}
	}
	for i, h := range r.FromHeaders {
		hp := fmt.Sprintf("%s.fromHeaders[%d]", p, i)
		if !headerNameRegex.MatchString(h.Name) {
			v.errf(hp+".name", "%q is not an HTTP header name", h.Name)
		}
		if prob := headerValueProblem(h.Prefix); prob != "" {
			v.errf(hp+".prefix", "%s", prob)
		}
	}
	for i, q := range r.FromParams {
		v.nonEmpty(fmt.Sprintf("%s.fromParams[%d]", p, i), q)
	}
	for i, c := range r.FromCookies {
		if !headerNameRegex.MatchString(c) { // a cookie name is a token
			v.errf(fmt.Sprintf("%s.fromCookies[%d]", p, i), "%q is not a cookie name", c)
		}
	}
	written := map[string]string{}
	if r.OutputPayloadToHeader != "" {
		v.outputHeader(p+".outputPayloadToHeader", r.OutputPayloadToHeader, written)
	}
	for i, c := range r.OutputClaimToHeaders {
		cp := fmt.Sprintf("%s.outputClaimToHeaders[%d]", p, i)
		v.outputHeader(cp+".header", c.Header, written)
		if c.Claim == "" {
			v.errf(cp+".claim", "required")
		}
	}
	if r.Timeout != nil {
		switch d, err := ParseDuration(*r.Timeout); {
		case err != nil:
			v.errf(p+".timeout", "%v", err)
		case d == 0:
			v.errf(p+".timeout", "must be positive")
		}
	}
}

// outputHeader checks a request header the JWT filter writes, and that no
// other output of the rule writes it (written: lowercase name → path).
func (v *validator) outputHeader(p, name string, written map[string]string) {
	if r := outputHeaderProblem(name); r != "" {
		v.errf(p, "%s", r)
		return
	}
	k := strings.ToLower(name)
	if prev, dup := written[k]; dup {
		v.errf(p, "header %q is also written by %s", name, prev)
		return
	}
	written[k] = p
}

// outputHeaderProblem says why the JWT filter must not write name into a
// request, or "": it must be a header name, and neither a pseudo-header,
// Host, a hop-by-hop or framing header, nor an identity header the sidecar
// sets from what it verified.
func outputHeaderProblem(name string) string {
	switch {
	case name == "":
		return "required"
	case strings.HasPrefix(name, ":"):
		return fmt.Sprintf("pseudo-header %q cannot be written", name)
	case !headerNameRegex.MatchString(name):
		return fmt.Sprintf("%q is not an HTTP header name", name)
	}
	switch k := strings.ToLower(name); {
	case k == "host", k == "connection", k == "keep-alive", k == "proxy-connection", k == "transfer-encoding",
		k == "te", k == "upgrade", k == "trailer", k == "content-length", k == "expect", k == "proxy-authorization":
		return fmt.Sprintf("hop-by-hop or framing header %q cannot be written", name)
	case k == "x-forwarded-client-cert", k == "x-forwarded-for", strings.HasPrefix(k, "x-trellis-"):
		return fmt.Sprintf("%q is set by the sidecar from what it verified; a JWT cannot write it", name)
	}
	return ""
}

// jwsAlgorithms are the signature algorithms the proxy verifies, by key type
// (docs/adr/002); "none" and HMAC never.
var jwsAlgorithms = map[string][]string{
	"RSA": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
	"EC":  {"ES256", "ES384", "ES512"},
	"OKP": {"EdDSA"},
}

// ecCurveAlgorithm is the algorithm each curve signs with.
var ecCurveAlgorithm = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}

// checkJWKS checks that s is a JSON Web Key Set (RFC 7517) with at least one
// key the proxy can verify signatures with.
func checkJWKS(s string) error {
	var set map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &set); err != nil {
		return fmt.Errorf("not a JSON Web Key Set {\"keys\": [...]}: %v", err)
	}
	raw, ok := set["keys"]
	if !ok {
		return errors.New("not a JSON Web Key Set: want an object {\"keys\": [...]}")
	}
	var keys []json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return errors.New("keys: want an array of JSON Web Keys")
	}
	signing := 0
	for i, k := range keys {
		var jwk map[string]any
		if err := json.Unmarshal(k, &jwk); err != nil || jwk == nil {
			return fmt.Errorf("keys[%d]: want an object", i)
		}
		if use, _ := jwk["use"].(string); use != "" && use != "sig" {
			continue // an encryption key: not used to verify, not checked
		}
		if err := checkJWK(jwk); err != nil {
			return fmt.Errorf("keys[%d]: %w", i, err)
		}
		signing++
	}
	if signing == 0 {
		return errors.New("keys: no signature key (want at least one)")
	}
	return nil
}

// checkJWK checks one public signature key: its kty, its alg when set, and
// the parameters of its type, base64url-encoded.
func checkJWK(jwk map[string]any) error {
	str := func(name string) (string, error) {
		x, ok := jwk[name]
		if !ok {
			return "", fmt.Errorf("%s: required", name)
		}
		s, ok := x.(string)
		if !ok || s == "" {
			return "", fmt.Errorf("%s: want a non-empty string", name)
		}
		return s, nil
	}
	kty, err := str("kty")
	if err != nil {
		return err
	}
	algs, ok := jwsAlgorithms[kty]
	switch {
	case kty == "oct":
		return errors.New("kty \"oct\": symmetric (HMAC) keys are not accepted")
	case !ok:
		return fmt.Errorf("kty %q is not one of RSA, EC, OKP", kty)
	}
	params := map[string][]string{"RSA": {"n", "e"}, "EC": {"x", "y"}, "OKP": {"x"}}[kty]
	for _, name := range params {
		s, err := str(name)
		if err != nil {
			return err
		}
		if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil {
			return fmt.Errorf("%s: not base64url", name)
		}
	}
	want := ""
	switch kty {
	case "EC":
		crv, err := str("crv")
		if err != nil {
			return err
		}
		if want = ecCurveAlgorithm[crv]; want == "" {
			return fmt.Errorf("crv %q is not one of P-256, P-384, P-521", crv)
		}
	case "OKP":
		if crv, err := str("crv"); err != nil || crv != "Ed25519" {
			return errors.New("crv: want Ed25519")
		}
	}
	if _, set := jwk["alg"]; !set {
		return nil
	}
	alg, err := str("alg")
	switch {
	case err != nil:
		return err
	case !slices.Contains(algs, alg):
		return fmt.Errorf("alg %q is not one of %s for kty %s (\"none\" and HMAC are never accepted)", alg, strings.Join(algs, ", "), kty)
	case want != "" && alg != want:
		return fmt.Errorf("alg %q does not match the curve (want %s)", alg, want)
	}
	return nil
}

// metadataHostNames are names that resolve to a cloud instance metadata service.
var metadataHostNames = []string{"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}

// metadataPrefixes are the link-local and cloud metadata addresses a JWKS
// fetch must never reach (instance credentials live there).
var metadataPrefixes = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),     // IPv4 link-local: AWS, GCP, Azure, OpenStack metadata
	netip.MustParsePrefix("fe80::/10"),          // IPv6 link-local
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS IMDS over IPv6
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
}

var (
	nat64Prefix      = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: the IPv4 address is the last 4 bytes
	ipv4CompatPrefix = netip.MustParsePrefix("::/96")        // deprecated IPv4-compatible addresses
)

// checkJWKSURI checks a jwksUri: an absolute http or https URL with a host
// that is not a cloud metadata or link-local address (SSRF: the sidecar
// fetches it). Names are checked as written; the fetcher must also refuse
// such addresses after resolving a name.
func checkJWKSURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: the scheme must be http or https", s)
	}
	host := u.Hostname()
	if u.Opaque != "" || host == "" {
		return fmt.Errorf("%q: want an absolute URL with a host", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("%q: port %q is not 1..65535", s, p)
		}
	}
	if isMetadataHost(host) {
		return fmt.Errorf("%q: %s is a cloud metadata / link-local address: refused (SSRF)", s, host)
	}
	if _, ok := parseLegacyIPv4(strings.TrimSuffix(host, ".")); ok {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: %s is an IPv4 address in a non-standard form: write it as a.b.c.d", s, host)
		}
	}
	return nil
}

// isMetadataHost reports whether host (a URL's host, without brackets or
// port) names a cloud metadata or link-local address, in any form a
// resolver might accept: a known name (with or without a final dot, any
// case), an IPv4 or IPv6 address, an IPv4-mapped, IPv4-compatible or NAT64
// IPv6 address, or an inet_aton form ("2852039166", "0xa9.0376.43518").
func isMetadataHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if slices.Contains(metadataHostNames, h) {
		return true
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		var ok bool
		if a, ok = parseLegacyIPv4(h); !ok {
			return false
		}
	}
	a = a.WithZone("").Unmap()
	if a.Is6() && (nat64Prefix.Contains(a) || ipv4CompatPrefix.Contains(a)) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	for _, p := range metadataPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseLegacyIPv4 parses the IPv4 forms inet_aton accepts: one to four
// dot-separated numbers, each decimal, octal (leading 0) or hex (0x), the
// last filling the remaining bytes.
func parseLegacyIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case len(p) > 2 && (p[:2] == "0x" || p[:2] == "0X"):
			p, base = p[2:], 16
		case len(p) > 1 && p[0] == '0':
			p, base = p[1:], 8
		}
		n, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	var ip uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false
		}
		ip |= n << (24 - 8*i)
	}
	last, room := nums[len(nums)-1], uint(32-8*(len(nums)-1))
	if last >= 1<<room {
		return netip.Addr{}, false
	}
	ip |= last
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}
