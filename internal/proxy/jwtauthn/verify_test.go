package jwtauthn

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
)

// TestVerifyAlgorithms: every allowed algorithm verifies, with and without kid, and with
// the JWK's alg set.
func TestVerifyAlgorithms(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			key := loadKey(t, keyFiles[alg])
			for _, tc := range []struct {
				name        string
				kid, jwkAlg string
				tokenKid    string
			}{
				{name: "kid", kid: "k1", tokenKid: "k1"},
				{name: "no-kid", kid: "k1"},
				{name: "jwk-alg", kid: "k1", jwkAlg: string(alg), tokenKid: "k1"},
				{name: "kidless-jwk", tokenKid: "rotated"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{
						"origins-0": inlineProvider(testIssuer, jwksJSON(t, jwk{key: key, kid: tc.kid, alg: tc.jwkAlg})),
					}, true), nil)
					tok := sign(t, alg, key, tc.tokenKid, baseClaims())
					o, err := f.Verify(testNow, bearer(tok))
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					if !o.Authenticated || o.Principal != testIssuer+"/alice" {
						t.Fatalf("outcome = %+v", o)
					}
				})
			}
		})
	}
}

// TestVerifyRejects: each attack or malformed token fails with its reason.
func TestVerifyRejects(t *testing.T) {
	rsaA := loadKey(t, "rsa-a.pem").(*rsa.PrivateKey)
	rsaB := loadKey(t, "rsa-b.pem")
	ec := loadKey(t, "ec-p256.pem")
	ec384 := loadKey(t, "ec-p384.pem")
	jwks := jwksJSON(t,
		jwk{key: rsaA, kid: "rsa", use: "sig"},
		jwk{key: ec, kid: "ec", alg: "ES256"},
		jwk{key: ec384, kid: "enc", use: "enc"},
		jwk{key: loadKey(t, "rsa-b.pem"), kid: "pss-only", alg: "PS256"},
	)
	f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{
		"origins-0": withAudiences(inlineProvider(testIssuer, jwks), "bookinfo", "https://api.example/"),
	}, true), nil)

	good := sign(t, jose.RS256, rsaA, "rsa", baseClaims())
	pubDER, err := x509.MarshalPKIXPublicKey(rsaA.Public())
	if err != nil {
		t.Fatal(err)
	}
	hdr := `{"alg":"RS256","kid":"rsa","typ":"JWT"}`
	payload := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":"bookinfo","exp":%d}`, testIssuer, testNow.Add(time.Hour).Unix())
	huge := sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("pad", strings.Repeat("x", MaxTokenSize)))

	for _, tc := range []struct {
		name string
		r    Request
		want error
	}{
		{"alg none", bearer(b64(`{"alg":"none"}`) + "." + b64(payload) + "."), ErrAlgorithm},
		{"alg none with signature", bearer(b64(`{"alg":"none"}`) + "." + b64(payload) + ".AAAA"), ErrAlgorithm},
		{"HS256 with the RSA public key as secret", bearer(signRaw(t, "HS256", pubDER, `{"alg":"HS256","kid":"rsa"}`, payload)), ErrAlgorithm},
		{"HS256 with the PEM public key as secret", bearer(signRaw(t, "HS256", pemOf(pubDER), `{"alg":"HS256"}`, payload)), ErrAlgorithm},
		{"unknown kid", bearer(sign(t, jose.RS256, rsaA, "nope", baseClaims())), ErrUnknownKid},
		{"key with use enc is skipped", bearer(sign(t, jose.ES384, ec384, "enc", baseClaims())), ErrUnknownKid},
		{"JWK alg differs from the token alg", bearer(sign(t, jose.RS256, rsaB, "pss-only", baseClaims())), ErrNoFittingKey},
		{"EC key on another curve", bearer(sign(t, jose.ES384, ec384, "ec", baseClaims())), ErrNoFittingKey},
		{"wrong issuer", bearer(sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("iss", "https://evil.example"))), ErrUnknownIssuer},
		{"no issuer", bearer(sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("iss", nil))), ErrUnknownIssuer},
		{"wrong audience", bearer(sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("aud", "other"))), ErrAudience},
		{"no audience", bearer(sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("aud", nil))), ErrAudience},
		{"expired beyond skew", bearer(sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("exp", testNow.Add(-61*time.Second).Unix()))), ErrExpired},
		{"nbf in the future beyond skew", bearer(sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("nbf", testNow.Add(61*time.Second).Unix()))), ErrNotYetValid},
		{"signed by another key", bearer(sign(t, jose.RS256, rsaB, "rsa", baseClaims())), ErrSignature},
		{"tampered payload", bearer(tamper(good, strings.Replace(payload, "alice", "admin", 1))), ErrSignature},
		{"tampered signature", bearer(good[:len(good)-4] + flip(good[len(good)-4:])), ErrSignature},
		{"two Authorization headers", req{headers: map[string][]string{"authorization": {"Bearer " + good, "Bearer " + good}}}, ErrMultiple},
		{"header and query parameter", req{headers: map[string][]string{"authorization": {"Bearer " + good}}, query: map[string]string{"access_token": good}}, ErrMultiple},
		{"query parameter twice", multiReq{params: map[string][]string{"access_token": {good, good}}}, ErrMultiple},
		{"malformed base64", bearer(strings.Replace(good, ".", ".!", 1)), ErrMalformed},
		{"padded base64", bearer(b64(hdr) + "==." + b64(payload) + ".AAAA"), ErrMalformed},
		{"non-canonical base64", bearer(b64(hdr) + "." + b64(payload) + ".AB"), ErrMalformed},
		{"four segments", bearer(good + ".AAAA"), ErrMalformed},
		{"two segments", bearer(b64(hdr) + "." + b64(payload)), ErrMalformed},
		{"empty token", bearer(""), ErrMalformed},
		{"huge token", bearer(huge), ErrTooLarge},
		{"duplicate claim", bearer(signRaw(t, "RS256", rsaA, hdr, strings.Replace(payload, `"sub":"alice"`, `"sub":"alice","sub":"admin"`, 1))), ErrMalformed},
		{"duplicate claim, escaped", bearer(signRaw(t, "RS256", rsaA, hdr, strings.Replace(payload, `"sub":"alice"`, `"sub":"alice","s\u0075b":"admin"`, 1))), ErrMalformed},
		{"duplicate nested claim", bearer(signRaw(t, "RS256", rsaA, hdr, strings.Replace(payload, `"sub":"alice"`, `"sub":"alice","o":{"a":1,"a":2}`, 1))), ErrMalformed},
		{"duplicate header member", bearer(signRaw(t, "RS256", rsaA, `{"alg":"RS256","kid":"rsa","kid":"other"}`, payload)), ErrMalformed},
		{"crit header", bearer(signRaw(t, "RS256", rsaA, `{"alg":"RS256","kid":"rsa","crit":["exp"],"exp":1}`, payload)), ErrMalformed},
		{"b64 false", bearer(signRaw(t, "RS256", rsaA, `{"alg":"RS256","kid":"rsa","b64":false,"crit":["b64"]}`, payload)), ErrMalformed},
		{"payload is not an object", bearer(signRaw(t, "RS256", rsaA, hdr, `["iss"]`)), ErrMalformed},
		{"trailing data after the payload", bearer(signRaw(t, "RS256", rsaA, hdr, payload+`{}`)), ErrMalformed},
		{"deep nesting", bearer(signRaw(t, "RS256", rsaA, hdr, strings.Replace(payload, "}", `,"x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+"}", 1))), ErrMalformed},
		{"exp is a string", bearer(signRaw(t, "RS256", rsaA, hdr, strings.Replace(payload, `"exp":`, `"exp":"1","x":`, 1))), ErrMalformed},
		{"exp is negative", bearer(sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("exp", -5))), ErrMalformed},
		{"aud is a number", bearer(sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("aud", 7))), ErrMalformed},
		{"aud array with a number", bearer(sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("aud", []any{"bookinfo", 7}))), ErrMalformed},
		{"iss is not a string", bearer(sign(t, jose.RS256, rsaA, "rsa", baseClaims().with("iss", []string{testIssuer}))), ErrMalformed},
		{"kid is not a string", bearer(signRaw(t, "RS256", rsaA, `{"alg":"RS256","kid":7}`, payload)), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := f.Verify(testNow, tc.r)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
			if o.Authenticated {
				t.Fatal("Authenticated with an error")
			}
			if strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "eyJ") {
				t.Fatalf("error echoes the token: %v", err)
			}
		})
	}
}

// TestVerifyAccepts: the edges of the rules that must still pass.
func TestVerifyAccepts(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{
		"origins-0": withAudiences(inlineProvider(testIssuer, jwksJSON(t, jwk{key: key, kid: "ec"})), "bookinfo", "https://api.example/"),
	}, true), nil)
	for _, tc := range []struct {
		name string
		c    claims
	}{
		{"expired within skew", baseClaims().with("exp", testNow.Add(-59*time.Second).Unix())},
		{"nbf within skew", baseClaims().with("nbf", testNow.Add(59*time.Second).Unix())},
		{"no exp", baseClaims().with("exp", nil)},
		{"aud array", baseClaims().with("aud", []string{"x", "bookinfo"})},
		{"aud with scheme and slash", baseClaims().with("aud", "http://api.example")},
		{"aud without scheme", baseClaims().with("aud", "api.example/")},
		{"fractional exp", baseClaims().with("exp", float64(testNow.Unix())+0.5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := f.Verify(testNow, bearer(sign(t, jose.ES256, key, "ec", tc.c)))
			if err != nil || !o.Authenticated {
				t.Fatalf("Verify = %+v, %v", o, err)
			}
		})
	}
}

// TestVerifyNoToken: allow_missing lets a request without a token through
// unauthenticated; without it, the request fails.
func TestVerifyNoToken(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	providers := map[string]*jwtauthnv3.JwtProvider{
		"origins-0": inlineProvider(testIssuer, jwksJSON(t, jwk{key: key})),
	}
	for _, tc := range []struct {
		name         string
		allowMissing bool
		r            Request
		want         error
	}{
		{"allow missing", true, req{}, nil},
		{"other Authorization scheme", true, req{headers: map[string][]string{"authorization": {"Basic dXNlcjpwYXNz"}}}, nil},
		{"lowercase bearer is not the prefix", true, req{headers: map[string][]string{"authorization": {"bearer x.y.z"}}}, nil},
		{"required", false, req{}, ErrMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustTranslate(t, istioConfig(providers, tc.allowMissing), nil)
			o, err := f.Verify(testNow, tc.r)
			if !errors.Is(err, tc.want) || (err == nil && o.Authenticated) {
				t.Fatalf("Verify = %+v, %v; want unauthenticated, %v", o, err, tc.want)
			}
		})
	}
}

// TestVerifyProviderSelection: iss picks the provider, and the provider must list the
// location the token came from.
func TestVerifyProviderSelection(t *testing.T) {
	a, b, c := loadKey(t, "rsa-a.pem"), loadKey(t, "ec-p256.pem"), loadKey(t, "ed25519.pem")
	pa := inlineProvider("issuer-a", jwksJSON(t, jwk{key: a}))
	pb := inlineProvider("issuer-b", jwksJSON(t, jwk{key: b}))
	pb.FromHeaders = []*jwtauthnv3.JwtHeader{{Name: "X-Token"}}
	// A second provider for issuer-a with other keys at the same location: either may verify.
	pa2 := inlineProvider("issuer-a", jwksJSON(t, jwk{key: c}))
	pany := inlineProvider("", jwksJSON(t, jwk{key: c}))
	pany.FromParams = []string{"any"}
	f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{"a": pa, "a2": pa2, "b": pb, "any": pany}, true), nil)

	for _, tc := range []struct {
		name string
		r    Request
		want error
	}{
		{"issuer a in Authorization", bearer(sign(t, jose.RS256, a, "", claims{"iss": "issuer-a"})), nil},
		{"issuer a, second provider's key", bearer(sign(t, jose.EdDSA, c, "", claims{"iss": "issuer-a"})), nil},
		{"issuer b in its header", req{headers: map[string][]string{"x-token": {sign(t, jose.ES256, b, "", claims{"iss": "issuer-b"})}}}, nil},
		{"issuer b in Authorization", bearer(sign(t, jose.ES256, b, "", claims{"iss": "issuer-b"})), ErrUnknownIssuer},
		{"issuer a in b's header", req{headers: map[string][]string{"x-token": {sign(t, jose.RS256, a, "", claims{"iss": "issuer-a"})}}}, ErrUnknownIssuer},
		{"issuer a signed by b's key", bearer(sign(t, jose.ES256, b, "", claims{"iss": "issuer-a"})), ErrNoFittingKey},
		{"any issuer in its parameter", req{query: map[string]string{"any": sign(t, jose.EdDSA, c, "", claims{"iss": "whoever"})}}, nil},
		{"no issuer in its parameter", req{query: map[string]string{"any": sign(t, jose.EdDSA, c, "", claims{"sub": "x"})}}, nil},
		{"any issuer in Authorization", bearer(sign(t, jose.EdDSA, c, "", claims{"iss": "whoever"})), ErrUnknownIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := f.Verify(testNow, tc.r)
			if !errors.Is(err, tc.want) || (err == nil && !o.Authenticated) {
				t.Fatalf("Verify = %+v, %v; want %v", o.Authenticated, err, tc.want)
			}
		})
	}
}

// TestVerifyLocalJWKSUnusable: an inline JWKS without a usable key (only an HMAC key)
// is accepted with a warning, and every token of that provider fails.
func TestVerifyLocalJWKSUnusable(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	octJWKS := fmt.Sprintf(`{"keys":[{"kty":"oct","kid":"h","k":%q}]}`, base64.RawURLEncoding.EncodeToString(secret))
	f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{"p": inlineProvider(testIssuer, octJWKS)}, true), nil)
	if w := f.Warnings(); len(w) == 0 || !strings.Contains(strings.Join(w, "\n"), `providers["p"].local_jwks`) {
		t.Fatalf("Warnings = %q", w)
	}
	payload := fmt.Sprintf(`{"iss":%q,"sub":"alice"}`, testIssuer)
	for _, alg := range []string{"HS256", "RS256"} {
		tok := signRaw(t, "HS256", secret, `{"alg":"`+alg+`","kid":"h"}`, payload)
		if _, err := f.Verify(testNow, bearer(tok)); err == nil {
			t.Fatalf("%s token verified against an oct key", alg)
		}
	}
	es := loadKey(t, "ec-p256.pem")
	if _, err := f.Verify(testNow, bearer(sign(t, jose.ES256, es, "", claims{"iss": testIssuer}))); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Verify error = %v, want ErrNoKeys", err)
	}
}

func withAudiences(p *jwtauthnv3.JwtProvider, aud ...string) *jwtauthnv3.JwtProvider {
	p.Audiences = aud
	return p
}

func pemOf(der []byte) []byte {
	return []byte("-----BEGIN PUBLIC KEY-----\n" + base64.StdEncoding.EncodeToString(der) + "\n-----END PUBLIC KEY-----\n")
}

// flip changes a base64url string into another valid one of the same length.
func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}
