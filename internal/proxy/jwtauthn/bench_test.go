package jwtauthn

import (
	"testing"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
)

// benchVerify measures Verify of one valid token signed with alg: "cold" parses and
// checks the signature (a token seen for the first time, or the cache disabled),
// "cached" is a client repeating its token.
func benchVerify(b *testing.B, alg jose.SignatureAlgorithm) {
	b.Run("cold", func(b *testing.B) { benchVerifyCache(b, alg, false) })
	b.Run("cached", func(b *testing.B) { benchVerifyCache(b, alg, true) })
}

func benchVerifyCache(b *testing.B, alg jose.SignatureAlgorithm, cached bool) {
	key := loadKey(b, keyFiles[alg])
	p := withAudiences(inlineProvider(testIssuer, jwksJSON(b, jwk{key: key, kid: "k"})), "bookinfo")
	p.ForwardPayloadHeader = "x-jwt-payload"
	f := mustTranslate(b, istioConfig(map[string]*jwtauthnv3.JwtProvider{"origins-0": p}, true), nil)
	if !cached {
		f.cache = nil
	}
	var r Request = bearer(sign(b, alg, key, "k", baseClaims().with("groups", []string{"dev", "ops"}, "email", "alice@example.com")))
	if o, err := f.Verify(testNow, r); err != nil || !o.Authenticated {
		b.Fatalf("Verify = %v, %v", o.Authenticated, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Verify(testNow, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) { benchVerify(b, jose.ES256) }
func BenchmarkVerifyRS256(b *testing.B) { benchVerify(b, jose.RS256) }
func BenchmarkVerifyEdDSA(b *testing.B) { benchVerify(b, jose.EdDSA) }

// BenchmarkVerifyNoToken is the cost on requests without a token (most mesh traffic).
func BenchmarkVerifyNoToken(b *testing.B) {
	key := loadKey(b, "ec-p256.pem")
	f := mustTranslate(b, istioConfig(map[string]*jwtauthnv3.JwtProvider{
		"origins-0": inlineProvider(testIssuer, jwksJSON(b, jwk{key: key})),
	}, true), nil)
	var r Request = req{headers: map[string][]string{"accept": {"*/*"}}}
	b.ReportAllocs()
	for b.Loop() {
		if o, err := f.Verify(testNow, r); err != nil || o.Authenticated {
			b.Fatal(o, err)
		}
	}
}
