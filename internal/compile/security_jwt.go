package compile

// RequestAuthentication → envoy.filters.http.jwt_authn (ADR 002): one
// provider origins-<i> per jwtRule of the policies selecting the workload
// (sorted by namespace/name, rules in order), and one requirement: any of
// the providers, or no token at all (Istio: a request without a token is
// left to AuthorizationPolicy).

import (
	"fmt"
	"net"
	"net/url"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// JWT filter settings of the contract.
const (
	jwtFilterName     = "trellis.jwt"
	jwksCacheDuration = 5 * time.Minute
	jwksFetchTimeout  = 5 * time.Second
	jwtClockSkew      = 60 // seconds
)

// jwtFilter is the jwt_authn filter of the workload's HTTP inbound ports,
// nil when no RequestAuthentication with a rule applies to it.
func (c *compiler) jwtFilter() (*hcmv3.HttpFilter, error) {
	providers := map[string]*jwtv3.JwtProvider{}
	var anyOf []*jwtv3.JwtRequirement
	for _, ra := range c.ix.requestAuthns(c.self) {
		for i := range ra.Spec.JWTRules {
			p, err := jwtProvider(&ra.Spec.JWTRules[i])
			if err != nil {
				return nil, fmt.Errorf("%s: spec.jwtRules[%d]: %w", ra.Key(), i, err)
			}
			name := fmt.Sprintf("origins-%d", len(providers))
			providers[name] = p
			anyOf = append(anyOf, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}})
		}
	}
	if len(providers) == 0 {
		return nil, nil
	}
	anyOf = append(anyOf, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	a, err := toAny(&jwtv3.JwtAuthentication{
		Providers: providers,
		Rules: []*jwtv3.RequirementRule{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{
				RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: anyOf}},
			}},
		}},
	})
	if err != nil {
		return nil, err
	}
	return typedHTTPFilter(jwtFilterName, a), nil
}

// jwtProvider encodes one jwtRule. Without fromHeaders, fromParams or
// fromCookies the token is looked for where Istio (and Envoy) look by
// default: "Authorization: Bearer <token>" and the access_token query
// parameter; with any of them, only there.
func jwtProvider(r *model.JWTRule) (*jwtv3.JwtProvider, error) {
	p := &jwtv3.JwtProvider{
		Issuer:               r.Issuer,
		Audiences:            r.Audiences,
		Forward:              r.ForwardOriginalToken,
		FromParams:           r.FromParams,
		FromCookies:          r.FromCookies,
		ForwardPayloadHeader: r.OutputPayloadToHeader,
		PayloadInMetadata:    r.Issuer,
		ClockSkewSeconds:     jwtClockSkew,
	}
	for _, h := range r.FromHeaders {
		p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.Name, ValuePrefix: h.Prefix})
	}
	if len(r.FromHeaders)+len(r.FromParams)+len(r.FromCookies) == 0 {
		p.FromHeaders = []*jwtv3.JwtHeader{{Name: "Authorization", ValuePrefix: "Bearer "}}
		p.FromParams = []string{"access_token"}
	}
	for _, c := range r.OutputClaimToHeaders {
		p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.Header, ClaimName: c.Claim})
	}
	switch {
	case r.Jwks != "":
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: r.Jwks},
		}}
	case r.JwksURI != "":
		remote, err := remoteJWKS(r)
		if err != nil {
			return nil, err
		}
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: remote}
	default:
		// Validation requires jwks or jwksUri (no OpenID discovery).
		return nil, fmt.Errorf("issuer %q: no jwks or jwksUri", r.Issuer)
	}
	return p, nil
}

// remoteJWKS is where the sidecar fetches the rule's keys. Envoy needs a
// cluster for the fetch; the Trellis sidecar fetches the URI itself and
// ignores it, so the name only says what it would be: jwks|<host>:<port>.
func remoteJWKS(r *model.JWTRule) (*jwtv3.RemoteJwks, error) {
	u, err := url.Parse(r.JwksURI)
	if err != nil {
		return nil, fmt.Errorf("jwksUri: %w", err)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	timeout := jwksFetchTimeout
	if r.Timeout != nil {
		d, err := model.ParseDuration(*r.Timeout)
		if err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		if d > 0 {
			timeout = d
		}
	}
	return &jwtv3.RemoteJwks{
		HttpUri: &corev3.HttpUri{
			Uri:              r.JwksURI,
			HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "jwks|" + net.JoinHostPort(u.Hostname(), port)},
			Timeout:          duration(timeout),
		},
		CacheDuration: duration(jwksCacheDuration),
	}, nil
}
