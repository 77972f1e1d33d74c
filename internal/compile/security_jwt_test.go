package compile

import (
	"strings"
	"testing"

	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/trellis-mesh/trellis/internal/model"
)

const testJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","alg":"ES256","x":"SUntrafPDjQiwRSHfU0tH8wrFe8dZb7KDFD102k5p60","y":"ZDU7uVhddNgS_jqJqrQ7UYeAnJOdUAmFC2y_VlKfvfs"}]}`

// TestJWTProvider checks each jwtRule field's provider encoding.
func TestJWTProvider(t *testing.T) {
	twoSeconds := model.Duration("2s")
	const defaults = `"payloadInMetadata":"iss","clockSkewSeconds":60`
	const defaultLocations = `"fromHeaders":[{"name":"Authorization","valuePrefix":"Bearer "}],"fromParams":["access_token"]`
	cases := []struct {
		name string
		rule model.JWTRule
		want string
	}{
		{"https jwksUri: port 443, default timeout and locations",
			model.JWTRule{Issuer: "iss", JwksURI: "https://keys.example/jwks.json"},
			`{"issuer":"iss","remoteJwks":{"httpUri":{"uri":"https://keys.example/jwks.json","cluster":"jwks|keys.example:443","timeout":"5s"},"cacheDuration":"300s"},` +
				defaultLocations + `,` + defaults + `}`},
		{"http jwksUri: port 80",
			model.JWTRule{Issuer: "iss", JwksURI: "http://keys.example/jwks"},
			`{"issuer":"iss","remoteJwks":{"httpUri":{"uri":"http://keys.example/jwks","cluster":"jwks|keys.example:80","timeout":"5s"},"cacheDuration":"300s"},` +
				defaultLocations + `,` + defaults + `}`},
		{"explicit port, IPv6 host, timeout",
			model.JWTRule{Issuer: "iss", JwksURI: "http://[::1]:18080/jwks", Timeout: &twoSeconds},
			`{"issuer":"iss","remoteJwks":{"httpUri":{"uri":"http://[::1]:18080/jwks","cluster":"jwks|[::1]:18080","timeout":"2s"},"cacheDuration":"300s"},` +
				defaultLocations + `,` + defaults + `}`},
		{"inline jwks, audiences, forward",
			model.JWTRule{Issuer: "iss", Jwks: testJWKS, Audiences: []string{"a", "b"}, ForwardOriginalToken: true},
			`{"issuer":"iss","audiences":["a","b"],"localJwks":{"inlineString":` + jsonString(testJWKS) + `},"forward":true,` +
				defaultLocations + `,` + defaults + `}`},
		{"fromHeaders only: no default locations",
			model.JWTRule{Issuer: "iss", Jwks: testJWKS, FromHeaders: []model.JWTHeader{{Name: "x-jwt", Prefix: "Token "}, {Name: "x-raw"}}},
			`{"issuer":"iss","localJwks":{"inlineString":` + jsonString(testJWKS) + `},` +
				`"fromHeaders":[{"name":"x-jwt","valuePrefix":"Token "},{"name":"x-raw"}],` + defaults + `}`},
		{"fromParams only",
			model.JWTRule{Issuer: "iss", Jwks: testJWKS, FromParams: []string{"token"}},
			`{"issuer":"iss","localJwks":{"inlineString":` + jsonString(testJWKS) + `},"fromParams":["token"],` + defaults + `}`},
		{"fromCookies only",
			model.JWTRule{Issuer: "iss", Jwks: testJWKS, FromCookies: []string{"session"}},
			`{"issuer":"iss","localJwks":{"inlineString":` + jsonString(testJWKS) + `},"fromCookies":["session"],` + defaults + `}`},
		{"output headers",
			model.JWTRule{Issuer: "iss", Jwks: testJWKS, OutputPayloadToHeader: "x-payload",
				OutputClaimToHeaders: []model.ClaimToHeader{{Header: "x-sub", Claim: "sub"}, {Header: "x-org", Claim: "org.id"}}},
			`{"issuer":"iss","localJwks":{"inlineString":` + jsonString(testJWKS) + `},` + defaultLocations + `,` +
				`"forwardPayloadHeader":"x-payload","claimToHeaders":[{"headerName":"x-sub","claimName":"sub"},{"headerName":"x-org","claimName":"org.id"}],` + defaults + `}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := jwtProvider(&tc.rule)
			if err != nil {
				t.Fatal(err)
			}
			want := mustJSON(t, &jwtv3.JwtProvider{}, tc.want)
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := jwtProvider(&model.JWTRule{Issuer: "iss"}); err == nil {
		t.Error("a rule without keys compiled")
	}
}

func jsonString(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// requestAuthn is a RequestAuthentication with one rule per issuer.
func requestAuthn(ns, name string, sel map[string]string, issuers ...string) *model.RequestAuthentication {
	r := &model.RequestAuthentication{}
	r.Kind, r.APIVersion, r.Name, r.Namespace = model.KindRequestAuthentication, "security.istio.io/v1", name, ns
	if sel != nil {
		r.Spec.Selector = &model.LabelSelector{MatchLabels: sel}
	}
	for _, iss := range issuers {
		r.Spec.JWTRules = append(r.Spec.JWTRules, model.JWTRule{Issuer: iss, Jwks: testJWKS})
	}
	return r
}

// TestJWTFilter checks the providers' names and order (policies by
// namespace/name, rules in order) and the requirement: any provider, or
// no token.
func TestJWTFilter(t *testing.T) {
	app := map[string]string{"app": "api"}
	cases := []struct {
		name     string
		policies []*model.RequestAuthentication
		want     []string // issuers of origins-0, origins-1, …; nil: no filter
	}{
		{"none", nil, nil},
		{"policy without rules", []*model.RequestAuthentication{requestAuthn("default", "a", nil)}, nil},
		{"not selected", []*model.RequestAuthentication{requestAuthn("default", "a", map[string]string{"app": "x"}, "i")}, nil},
		{"invalid policy ignored", []*model.RequestAuthentication{requestAuthn("default", "a", nil, "i", "i")}, nil},
		{"order by namespace/name, then rules", []*model.RequestAuthentication{
			requestAuthn(model.RootNamespace, "mesh", nil, "m"),
			requestAuthn("default", "b", app, "b1", "b2"),
			requestAuthn("default", "a", nil, "a1"),
			requestAuthn("other", "o", nil, "o1"),
		}, []string{"a1", "b1", "b2", "m"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := secWorkload("default", "api-v1", app, "8080:18080")
			c := &compiler{ix: NewIndex(&Input{Workloads: []*model.Workload{w}, RequestAuthentications: tc.policies}), self: w}
			f, err := c.jwtFilter()
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if f != nil {
					t.Fatalf("got filter %v, want none", f)
				}
				return
			}
			if f.GetName() != "trellis.jwt" {
				t.Errorf("filter name %q", f.GetName())
			}
			var cfg jwtv3.JwtAuthentication
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				t.Fatal(err)
			}
			var got, reqs []string
			for i := range tc.want {
				got = append(got, cfg.GetProviders()[providerName(i)].GetIssuer())
			}
			if len(cfg.GetProviders()) != len(tc.want) {
				t.Errorf("%d providers, want %d", len(cfg.GetProviders()), len(tc.want))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("issuers (-want +got):\n%s", diff)
			}
			if len(cfg.GetRules()) != 1 || cfg.GetRules()[0].GetMatch().GetPrefix() != "/" {
				t.Fatalf("rules %v, want one for prefix /", cfg.GetRules())
			}
			for _, r := range cfg.GetRules()[0].GetRequires().GetRequiresAny().GetRequirements() {
				if r.GetAllowMissing() != nil {
					reqs = append(reqs, "allow_missing")
				} else {
					reqs = append(reqs, r.GetProviderName())
				}
			}
			wantReqs := []string{}
			for i := range tc.want {
				wantReqs = append(wantReqs, providerName(i))
			}
			wantReqs = append(wantReqs, "allow_missing")
			if diff := cmp.Diff(wantReqs, reqs); diff != "" {
				t.Errorf("requires_any (-want +got):\n%s", diff)
			}
		})
	}
}

func providerName(i int) string { return "origins-" + itoa(uint32(i)) }
