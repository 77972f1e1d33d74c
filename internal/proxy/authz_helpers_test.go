package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	xdsmatcherv3 "github.com/cncf/xds/go/xds/type/matcher/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

// Builders of the authz filters' xDS, shaped as the compiler emits them
// (ADR 002).

func rbacHTTPFilter(t testing.TB, name string, action rbacv3.RBAC_Action, policies map[string]*rbacv3.Policy) *hcmv3.HttpFilter {
	return httpFilterEntry(t, name, &rbachttpv3.RBAC{Rules: &rbacv3.RBAC{Action: action, Policies: policies}})
}

func rbacPolicy(perm *rbacv3.Permission, prin *rbacv3.Principal) *rbacv3.Policy {
	if perm == nil {
		perm = &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	}
	if prin == nil {
		prin = &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	}
	return &rbacv3.Policy{Permissions: []*rbacv3.Permission{perm}, Principals: []*rbacv3.Principal{prin}}
}

func smExact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func smPrefix(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

func smRegex(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: s}}}
}

func permHeaderPrefix(name, value string) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: smPrefix(value)}}}}
}

func permURLPath(m *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: m}}}}
}

func permHeaderExact(name, value string) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: smExact(value)}}}}
}

func prinPeer(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

// prinRequestPrincipal is Istio's requestPrincipals: istio_authn metadata.
func prinRequestPrincipal(v string) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
		Filter: "istio_authn",
		Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "request.auth.principal"}}},
		Value:  &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: smExact(v)}},
	}}}
}

// setServerFilters gives the server sidecar's inbound HCM the filters
// (before the router) and path normalization, as the compiler emits it.
func (m *mesh) setServerFilters(t testing.TB, filters ...*hcmv3.HttpFilter) {
	t.Helper()
	set := m.serverSet(t)
	f := set.Listeners[inName].FilterChains[0].Filters[0]
	var h hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	h.HttpFilters = append(append([]*hcmv3.HttpFilter{}, filters...), h.HttpFilters...)
	h.NormalizePath = wrapperspb.Bool(true)
	h.MergeSlashes = true
	h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.Any(t, &h)}
	if err := m.server.Update(set); err != nil {
		t.Fatalf("server Update: %v", err)
	}
}

// serverPaths runs fn on a mesh whose server sidecar serves its inbound
// requests on the fast path (HTTP/1.1 between the sidecars) and on the
// net/http path (h2 between them).
func serverPaths(t *testing.T, fn func(t *testing.T, http2 bool)) {
	t.Run("fast", func(t *testing.T) { fn(t, false) })
	t.Run("nethttp", func(t *testing.T) { fn(t, true) })
}

// jwtIssuer signs ES256 tokens with a key in an inline JWKS.
type jwtIssuer struct {
	iss  string
	key  *ecdsa.PrivateKey
	jwks string
}

func newJWTIssuer(t testing.TB, iss string) *jwtIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return &jwtIssuer{iss: iss, key: key, jwks: string(b)}
}

// token signs the claims (iss, exp and iat added).
func (j *jwtIssuer) token(t testing.TB, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": j.iss, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: j.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// jwtFilterEntry is the compiler's trellis.jwt: one provider, the default
// Authorization: Bearer location, the token removed (forward false), the
// payload forwarded in x-jwt-payload, missing tokens allowed.
func jwtFilterEntry(t testing.TB, j *jwtIssuer) *hcmv3.HttpFilter {
	cfg := &jwtauthnv3.JwtAuthentication{
		Providers: map[string]*jwtauthnv3.JwtProvider{"origins-0": {
			Issuer: j.iss,
			JwksSourceSpecifier: &jwtauthnv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: j.jwks}}},
			FromHeaders:          []*jwtauthnv3.JwtHeader{{Name: "Authorization", ValuePrefix: "Bearer "}},
			ForwardPayloadHeader: "x-jwt-payload",
			PayloadInMetadata:    j.iss,
		}},
		Rules: []*jwtauthnv3.RequirementRule{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtauthnv3.RequirementRule_Requires{Requires: &jwtauthnv3.JwtRequirement{
				RequiresType: &jwtauthnv3.JwtRequirement_RequiresAny{RequiresAny: &jwtauthnv3.JwtRequirementOrList{
					Requirements: []*jwtauthnv3.JwtRequirement{
						{RequiresType: &jwtauthnv3.JwtRequirement_ProviderName{ProviderName: "origins-0"}},
						{RequiresType: &jwtauthnv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}},
					},
				}},
			}},
		}},
	}
	return httpFilterEntry(t, "trellis.jwt", cfg)
}

// setJWTParams makes the jwt filter's provider also read the token from
// the query parameter name.
func setJWTParams(t testing.TB, f *hcmv3.HttpFilter, name string) {
	t.Helper()
	var cfg jwtauthnv3.JwtAuthentication
	if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Providers["origins-0"].FromParams = []string{name}
	f.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: proxytest.Any(t, &cfg)}
}

// authzGet sends a GET through the client sidecar with header pairs.
func authzGet(t *testing.T, c *http.Client, m *mesh, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return featDo(t, c, "GET", m.url(path), "", hdr...)
}

func wantDenied(t *testing.T, res *http.Response, body string) {
	t.Helper()
	if res.StatusCode != http.StatusForbidden || res.Header.Get(headerReason) != reasonRBACDenied || body != bodyRBACDenied {
		t.Fatalf("got %d %s=%q %q, want 403 %s %q", res.StatusCode, headerReason, res.Header.Get(headerReason), body, reasonRBACDenied, bodyRBACDenied)
	}
}

func wantOK(t *testing.T, res *http.Response, body string) {
	t.Helper()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("got %d (%s=%q) %q, want 200", res.StatusCode, headerReason, res.Header.Get(headerReason), body)
	}
}

func statLine(listener, name string, v int) string {
	return fmt.Sprintf("listener.%s.%s %d", listener, name, v)
}

// matcherTree is a (empty) xDS matcher, the form the rbac filters refuse.
func matcherTree() *xdsmatcherv3.Matcher { return &xdsmatcherv3.Matcher{} }
