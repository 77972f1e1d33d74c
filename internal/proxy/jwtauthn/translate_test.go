package jwtauthn

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func remoteProvider(uri string) *jwtauthnv3.JwtProvider {
	return &jwtauthnv3.JwtProvider{
		Issuer: testIssuer,
		JwksSourceSpecifier: &jwtauthnv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtauthnv3.RemoteJwks{
			HttpUri:       &corev3.HttpUri{Uri: uri, Timeout: durationpb.New(time.Second)},
			CacheDuration: durationpb.New(5 * time.Minute),
		}},
	}
}

func providerName(name string) *jwtauthnv3.JwtRequirement {
	return &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_ProviderName{ProviderName: name}}
}

func TestTranslateErrors(t *testing.T) {
	jwks := jwksJSON(t, jwk{key: loadKey(t, "ec-p256.pem")})
	// mod returns the Trellis config with one change applied to a copy.
	mod := func(change func(cfg *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider)) *jwtauthnv3.JwtAuthentication {
		p := inlineProvider(testIssuer, jwks)
		cfg := istioConfig(map[string]*jwtauthnv3.JwtProvider{"origins-0": p}, true)
		change(cfg, p)
		return cfg
	}
	remote := func(uri string) func(*jwtauthnv3.JwtAuthentication, *jwtauthnv3.JwtProvider) {
		return func(cfg *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			cfg.Providers["origins-0"] = remoteProvider(uri)
		}
	}
	requires := func(r *jwtauthnv3.JwtRequirement) func(*jwtauthnv3.JwtAuthentication, *jwtauthnv3.JwtProvider) {
		return func(cfg *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			cfg.Rules[0].RequirementType = &jwtauthnv3.RequirementRule_Requires{Requires: r}
		}
	}
	anyOf := func(rs ...*jwtauthnv3.JwtRequirement) *jwtauthnv3.JwtRequirement {
		return &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_RequiresAny{RequiresAny: &jwtauthnv3.JwtRequirementOrList{Requirements: rs}}}
	}
	allowMissing := &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}}

	for _, tc := range []struct {
		name string
		cfg  *jwtauthnv3.JwtAuthentication
		want string
	}{
		{"nil config", nil, "config is nil"},
		{"filter_state_rules", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.FilterStateRules = &jwtauthnv3.FilterStateRule{Name: "x"}
		}), "filter_state_rules: not supported"},
		{"requirement_map", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.RequirementMap = map[string]*jwtauthnv3.JwtRequirement{"r": providerName("origins-0")}
		}), "requirement_map: not supported"},
		{"nil provider", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Providers["origins-1"] = nil
		}), `providers["origins-1"].value: required`},
		{"no jwks", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) { p.JwksSourceSpecifier = nil }),
			`providers["origins-0"].remote_jwks or local_jwks: required`},
		{"remote scheme", mod(remote("file:///etc/jwks.json")), `providers["origins-0"].remote_jwks.http_uri.uri: scheme "file"`},
		{"remote relative", mod(remote("/jwks.json")), `providers["origins-0"].remote_jwks.http_uri.uri: scheme ""`},
		{"remote no host", mod(remote("https:///jwks")), `remote_jwks.http_uri.uri: no host`},
		{"remote metadata address", mod(remote("http://169.254.169.254/latest")), `remote_jwks.http_uri.uri: address 169.254.169.254 is not allowed`},
		{"remote link-local v6", mod(remote("http://[fe80::1]/jwks")), `remote_jwks.http_uri.uri: address fe80::1 is not allowed`},
		{"remote unspecified", mod(remote("http://0.0.0.0:8080/jwks")), `is not allowed`},
		{"remote without a key cache", mod(remote("https://issuer.example/jwks")), `providers["origins-0"].remote_jwks: no key cache`},
		{"remote no http_uri", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Providers["origins-0"] = &jwtauthnv3.JwtProvider{JwksSourceSpecifier: &jwtauthnv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtauthnv3.RemoteJwks{}}}
		}), `remote_jwks.http_uri: required`},
		{"remote zero cache_duration", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			p := remoteProvider("https://issuer.example/jwks")
			p.GetRemoteJwks().CacheDuration = durationpb.New(0)
			c.Providers["origins-0"] = p
		}), `remote_jwks.cache_duration: want a positive duration`},
		{"remote retry_policy", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			p := remoteProvider("https://issuer.example/jwks")
			p.GetRemoteJwks().RetryPolicy = &corev3.RetryPolicy{}
			c.Providers["origins-0"] = p
		}), `remote_jwks.retry_policy: not supported`},
		{"remote failed_refetch_duration", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			p := remoteProvider("https://issuer.example/jwks")
			p.GetRemoteJwks().AsyncFetch = &jwtauthnv3.JwksAsyncFetch{FailedRefetchDuration: durationpb.New(time.Second)}
			c.Providers["origins-0"] = p
		}), `remote_jwks.async_fetch.failed_refetch_duration: not supported`},
		{"local filename", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) {
			p.GetLocalJwks().Specifier = &corev3.DataSource_Filename{Filename: "/etc/jwks"}
		}), `providers["origins-0"].local_jwks: only inline_string and inline_bytes`},
		{"subjects", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) {
			p.Subjects = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://"}}
		}), `providers["origins-0"].subjects: not supported`},
		{"header_in_metadata", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) { p.HeaderInMetadata = "h" }),
			`providers["origins-0"].header_in_metadata: not supported`},
		{"failed_status_in_metadata", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) { p.FailedStatusInMetadata = "s" }),
			`providers["origins-0"].failed_status_in_metadata: not supported`},
		{"clear_route_cache", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) { p.ClearRouteCache = true }),
			`providers["origins-0"].clear_route_cache: not supported`},
		{"max_lifetime zero", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) { p.MaxLifetime = durationpb.New(0) }),
			`providers["origins-0"].max_lifetime: want a positive duration`},
		{"bad header name", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) {
			p.FromHeaders = []*jwtauthnv3.JwtHeader{{Name: "x token"}}
		}), `providers["origins-0"].from_headers[0].name: "x token" is not a valid header name`},
		{"pseudo-header", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) {
			p.FromHeaders = []*jwtauthnv3.JwtHeader{{Name: ":path"}}
		}), `from_headers[0].name: ":path" is not a valid header name`},
		{"empty param", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) { p.FromParams = []string{""} }),
			`providers["origins-0"].from_params[0]: empty`},
		{"bad payload header", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) { p.ForwardPayloadHeader = "a\nb" }),
			`providers["origins-0"].forward_payload_header: "a\nb" is not a valid header name`},
		{"claim name and path", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) {
			p.ClaimToHeaders = []*jwtauthnv3.JwtClaimToHeader{{HeaderName: "x-a", ClaimName: "a", ClaimPath: []*jwtauthnv3.JwtClaimToHeader_PathSegment{{Key: "a"}}}}
		}), `providers["origins-0"].claim_to_headers[0].claim_name: exactly one of claim_name and claim_path`},
		{"claim empty segment", mod(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) {
			p.ClaimToHeaders = []*jwtauthnv3.JwtClaimToHeader{{HeaderName: "x-a", ClaimName: "a..b"}}
		}), `claim_to_headers[0].claim_name: "a..b" has an empty segment`},
		{"two rules", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Rules = append(c.Rules, c.Rules[0])
		}), `rules: more than one rule`},
		{"rule on another prefix", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Rules[0].Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"}}
		}), `rules[0].match: only prefix "/" is supported`},
		{"rule with a header match", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Rules[0].Match.Headers = []*routev3.HeaderMatcher{{Name: "x"}}
		}), `rules[0].match: only prefix "/" is supported (no headers`},
		{"rule without match", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) { c.Rules[0].Match = nil }),
			`rules[0].match: required`},
		{"requirement_name", mod(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Rules[0].RequirementType = &jwtauthnv3.RequirementRule_RequirementName{RequirementName: "r"}
		}), `rules[0].requirement_name: not supported`},
		{"requires_all", mod(requires(&jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_RequiresAll{
			RequiresAll: &jwtauthnv3.JwtRequirementAndList{Requirements: []*jwtauthnv3.JwtRequirement{providerName("origins-0")}},
		}})), `rules[0].requires: only provider_name and requires_any`},
		{"allow_missing_or_failed", mod(requires(anyOf(providerName("origins-0"), &jwtauthnv3.JwtRequirement{
			RequiresType: &jwtauthnv3.JwtRequirement_AllowMissingOrFailed{AllowMissingOrFailed: &emptypb.Empty{}},
		}))), `rules[0].requires.requires_any.requirements[1]: only provider_name and allow_missing`},
		{"unknown provider", mod(requires(anyOf(providerName("origins-9"), allowMissing))),
			`rules[0].requires.requires_any.requirements[0].provider_name: provider "origins-9" is not defined`},
		{"unknown provider_name", mod(requires(providerName("nope"))), `rules[0].requires.provider_name: provider "nope" is not defined`},
		{"allow_missing twice", mod(requires(anyOf(providerName("origins-0"), allowMissing, allowMissing))),
			`requirements[2].allow_missing: given twice`},
		{"allow_missing alone", mod(requires(anyOf(allowMissing))), `rules[0].requires.requires_any: names no provider`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Translate(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Translate = %v, %v; want error containing %q", f, err, tc.want)
			}
		})
	}
}

// TestTranslateAccepts: the shapes Trellis or Envoy users write that must be accepted,
// and what each does with a token and without one.
func TestTranslateAccepts(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	jwks := jwksJSON(t, jwk{key: key})
	tok := sign(t, jose.ES256, key, "", baseClaims())
	base := func() *jwtauthnv3.JwtAuthentication {
		return istioConfig(map[string]*jwtauthnv3.JwtProvider{"origins-0": inlineProvider(testIssuer, jwks)}, true)
	}
	for _, tc := range []struct {
		name        string
		change      func(*jwtauthnv3.JwtAuthentication)
		withToken   bool  // Authenticated with a good token
		noTokenErr  error // Verify without a token
		badTokenErr error // Verify with a garbage token
	}{
		{"istio shape", func(*jwtauthnv3.JwtAuthentication) {}, true, nil, ErrMalformed},
		{"single provider_name", func(c *jwtauthnv3.JwtAuthentication) {
			c.Rules[0].RequirementType = &jwtauthnv3.RequirementRule_Requires{Requires: providerName("origins-0")}
		}, true, ErrMissing, ErrMalformed},
		{"requires_any without allow_missing", func(c *jwtauthnv3.JwtAuthentication) {
			c.Rules[0].GetRequires().GetRequiresAny().Requirements = c.Rules[0].GetRequires().GetRequiresAny().Requirements[:1]
		}, true, ErrMissing, ErrMalformed},
		{"no rules verify nothing", func(c *jwtauthnv3.JwtAuthentication) { c.Rules = nil }, false, nil, nil},
		{"rule without requires verifies nothing", func(c *jwtauthnv3.JwtAuthentication) { c.Rules[0].RequirementType = nil }, false, nil, nil},
		{"case_sensitive on prefix /", func(c *jwtauthnv3.JwtAuthentication) {
			c.Rules[0].Match.CaseSensitive = wrapperspb.Bool(false)
		}, true, nil, ErrMalformed},
		{"accepted no-ops", func(c *jwtauthnv3.JwtAuthentication) {
			c.StatPrefix = "x"
			c.StripFailureResponse = true
			p := c.Providers["origins-0"]
			p.PayloadInMetadata = testIssuer
			p.JwtCacheConfig = &jwtauthnv3.JwtCacheConfig{JwtCacheSize: 100}
			p.ClockSkewSeconds = 30
		}, true, nil, ErrMalformed},
		{"inline_bytes", func(c *jwtauthnv3.JwtAuthentication) {
			c.Providers["origins-0"].GetLocalJwks().Specifier = &corev3.DataSource_InlineBytes{InlineBytes: []byte(jwks)}
		}, true, nil, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.change(cfg)
			f := mustTranslate(t, cfg, nil)
			o, err := f.Verify(testNow, bearer(tok))
			if err != nil || o.Authenticated != tc.withToken {
				t.Fatalf("good token: %+v, %v; want Authenticated=%v", o.Authenticated, err, tc.withToken)
			}
			if _, err := f.Verify(testNow, req{}); !errors.Is(err, tc.noTokenErr) {
				t.Fatalf("no token: %v, want %v", err, tc.noTokenErr)
			}
			if _, err := f.Verify(testNow, bearer("garbage")); !errors.Is(err, tc.badTokenErr) {
				t.Fatalf("bad token: %v, want %v", err, tc.badTokenErr)
			}
		})
	}
}

// TestTranslateRemoteAccepted: a remote provider with a KeyCache translates; its
// defaults (timeout, cache_duration) are Envoy's.
func TestTranslateRemoteAccepted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no fetch is wanted here: a cancelled cache starts no goroutine
	keys := NewKeyCache(ctx, nil, nil)
	p := remoteProvider("https://issuer.example/.well-known/jwks.json")
	p.GetRemoteJwks().GetHttpUri().Timeout = nil
	p.GetRemoteJwks().CacheDuration = nil
	f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{"origins-0": p}, true), keys)
	got := f.byIssuer[testIssuer][0].remote.spec
	want := remoteSpec{uri: "https://issuer.example/.well-known/jwks.json", timeout: DefaultFetchTimeout, cacheDuration: DefaultCacheDuration}
	if got != want {
		t.Fatalf("spec = %+v, want %+v", got, want)
	}
	if _, err := f.Verify(testNow, bearer(sign(t, jose.ES256, loadKey(t, "ec-p256.pem"), "", baseClaims()))); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Verify before any fetch: %v, want ErrNoKeys", err)
	}
}
