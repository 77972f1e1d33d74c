package jwtauthn

import (
	"errors"
	"fmt"
	"strings"
	"time"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
)

// provider is one translated JwtProvider.
type provider struct {
	name, issuer string
	audiences    []string // sanitized (see sanitizeAudience)
	skew         float64  // seconds
	requireExp   bool
	maxLifetime  time.Duration // 0: none

	forward       bool
	payloadHeader string // forward_payload_header, lowercase
	padPayload    bool
	claimHeaders  []claimHeader
	normalized    []string // space_delimited_claims

	locs []locSpec // from_headers, from_params, from_cookies; nil: Envoy's default

	local      *keySet // local_jwks
	localErr   error   // why local_jwks has no usable key
	remoteSpec *remoteSpec
	remote     *remoteEntry // set by Translate from remoteSpec

	warnings []string
}

type locSpec struct {
	kind         locKind
	name, prefix string
}

type claimHeader struct {
	header string   // lowercase
	path   []string // claim_name split on ".", or claim_path
}

func translateProvider(name string, pc *jwtauthnv3.JwtProvider) (*provider, error) {
	if pc == nil {
		return nil, errors.New("value: required")
	}
	p := &provider{name: name, issuer: pc.GetIssuer(), skew: DefaultClockSkew.Seconds()}
	for _, a := range pc.GetAudiences() {
		p.audiences = append(p.audiences, sanitizeAudience(a))
	}
	if pc.GetSubjects() != nil {
		return nil, errors.New("subjects: not supported")
	}
	if pc.GetHeaderInMetadata() != "" {
		return nil, errors.New("header_in_metadata: not supported")
	}
	if pc.GetFailedStatusInMetadata() != "" {
		return nil, errors.New("failed_status_in_metadata: not supported")
	}
	if pc.GetClearRouteCache() {
		return nil, errors.New("clear_route_cache: not supported (the route is chosen before jwt_authn runs)")
	}
	p.requireExp = pc.GetRequireExpiration()
	if ml := pc.GetMaxLifetime(); ml != nil {
		d, err := positive(ml)
		if err != nil {
			return nil, fmt.Errorf("max_lifetime: %w", err)
		}
		p.maxLifetime = d
	}
	if s := pc.GetClockSkewSeconds(); s > 0 {
		p.skew = float64(s)
	}
	switch src := pc.GetJwksSourceSpecifier().(type) {
	case *jwtauthnv3.JwtProvider_RemoteJwks:
		spec, err := translateRemote(src.RemoteJwks)
		if err != nil {
			return nil, err
		}
		p.remoteSpec = spec
	case *jwtauthnv3.JwtProvider_LocalJwks:
		data, err := inlineJWKS(src.LocalJwks)
		if err != nil {
			return nil, err
		}
		// Envoy accepts a config whose inline JWKS is unusable and fails its tokens.
		ks, skipped, err := parseJWKS(data)
		for _, s := range skipped {
			p.warnings = append(p.warnings, "local_jwks: "+s+": skipped")
		}
		if err != nil {
			p.localErr = err
			p.warnings = append(p.warnings, "local_jwks: "+err.Error()+": tokens of this provider fail")
		}
		p.local = ks
	default:
		return nil, errors.New("remote_jwks or local_jwks: required")
	}
	p.forward = pc.GetForward()
	if h := pc.GetForwardPayloadHeader(); h != "" {
		if !validHeaderName(h) {
			return nil, fmt.Errorf("forward_payload_header: %q is not a valid header name", h)
		}
		p.payloadHeader = strings.ToLower(h)
		p.padPayload = pc.GetPadForwardPayloadHeader()
	}
	for i, ch := range pc.GetClaimToHeaders() {
		c, err := translateClaimHeader(ch)
		if err != nil {
			return nil, fmt.Errorf("claim_to_headers[%d].%w", i, err)
		}
		p.claimHeaders = append(p.claimHeaders, c)
	}
	p.normalized = pc.GetNormalizePayloadInMetadata().GetSpaceDelimitedClaims()
	if err := p.translateLocations(pc); err != nil {
		return nil, err
	}
	return p, nil
}

func translateClaimHeader(ch *jwtauthnv3.JwtClaimToHeader) (claimHeader, error) {
	if !validHeaderName(ch.GetHeaderName()) {
		return claimHeader{}, fmt.Errorf("header_name: %q is not a valid header name", ch.GetHeaderName())
	}
	c := claimHeader{header: strings.ToLower(ch.GetHeaderName())}
	switch {
	case ch.GetClaimName() != "" && len(ch.GetClaimPath()) > 0:
		return claimHeader{}, errors.New("claim_name: exactly one of claim_name and claim_path")
	case ch.GetClaimName() != "":
		c.path = strings.Split(ch.GetClaimName(), ".")
		for _, seg := range c.path {
			if seg == "" {
				return claimHeader{}, fmt.Errorf("claim_name: %q has an empty segment", ch.GetClaimName())
			}
		}
	case len(ch.GetClaimPath()) > 0:
		for i, seg := range ch.GetClaimPath() {
			if seg.GetKey() == "" {
				return claimHeader{}, fmt.Errorf("claim_path[%d].key: required", i)
			}
			c.path = append(c.path, seg.GetKey())
		}
	default:
		return claimHeader{}, errors.New("claim_name: exactly one of claim_name and claim_path")
	}
	return c, nil
}

func (p *provider) translateLocations(pc *jwtauthnv3.JwtProvider) error {
	for i, h := range pc.GetFromHeaders() {
		if !validHeaderName(h.GetName()) {
			return fmt.Errorf("from_headers[%d].name: %q is not a valid header name", i, h.GetName())
		}
		if strings.ContainsAny(h.GetValuePrefix(), "\r\n\x00") {
			return fmt.Errorf("from_headers[%d].value_prefix: control characters", i)
		}
		p.locs = append(p.locs, locSpec{kind: locHeader, name: strings.ToLower(h.GetName()), prefix: h.GetValuePrefix()})
	}
	for i, q := range pc.GetFromParams() {
		if q == "" {
			return fmt.Errorf("from_params[%d]: empty", i)
		}
		p.locs = append(p.locs, locSpec{kind: locParam, name: q})
	}
	for i, c := range pc.GetFromCookies() {
		if c == "" {
			return fmt.Errorf("from_cookies[%d]: empty", i)
		}
		p.locs = append(p.locs, locSpec{kind: locCookie, name: c})
	}
	return nil
}

// outputHeaders are the headers this provider writes: the Filter removes them from
// every request so that a client cannot forge them.
func (p *provider) outputHeaders() []string {
	var out []string
	if p.payloadHeader != "" {
		out = append(out, p.payloadHeader)
	}
	for _, c := range p.claimHeaders {
		out = append(out, c.header)
	}
	return out
}

// currentKeys is the provider's key set now: nil until a remote set is first fetched,
// or when an inline set has no usable key.
func (p *provider) currentKeys() *keySet {
	if p.remote != nil {
		return p.remote.keys.Load()
	}
	return p.local
}

// keys returns the provider's current key set, or why it has none.
func (p *provider) keys() (*keySet, error) {
	if ks := p.currentKeys(); ks != nil {
		return ks, nil
	}
	if p.remote != nil {
		p.remote.kick()
		return nil, fmt.Errorf("%w: JWKS not fetched yet", ErrNoKeys)
	}
	return nil, fmt.Errorf("%w: %v", ErrNoKeys, p.localErr)
}

// sanitizeAudience drops an http:// or https:// prefix and one trailing slash, as
// Envoy's jwt_verify_lib does on both sides of the comparison.
func sanitizeAudience(a string) string {
	if s, ok := strings.CutPrefix(a, "http://"); ok {
		a = s
	} else if s, ok := strings.CutPrefix(a, "https://"); ok {
		a = s
	}
	return strings.TrimSuffix(a, "/")
}

// validHeaderName reports an RFC 9110 token (no pseudo-headers).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isB64URL(c) {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+.^`|~", rune(c)) {
			return false
		}
	}
	return true
}
