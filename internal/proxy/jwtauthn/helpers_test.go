package jwtauthn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testNow is the clock every token test uses.
var testNow = time.Unix(1_800_000_000, 0)

const testIssuer = "https://issuer.example"

// loadKey reads a PKCS#8 private key from testdata.
func loadKey(t testing.TB, name string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return k.(crypto.Signer)
}

// keyFiles maps each algorithm to the test key that signs it.
var keyFiles = map[jose.SignatureAlgorithm]string{
	jose.RS256: "rsa-a.pem", jose.RS384: "rsa-a.pem", jose.RS512: "rsa-a.pem",
	jose.PS256: "rsa-a.pem", jose.PS384: "rsa-a.pem", jose.PS512: "rsa-a.pem",
	jose.ES256: "ec-p256.pem", jose.ES384: "ec-p384.pem", jose.ES512: "ec-p521.pem",
	jose.EdDSA: "ed25519.pem",
}

// jwk describes one key of a test JWKS.
type jwk struct {
	key      crypto.Signer
	kid, alg string
	use      string
}

// jwksJSON builds a JWKS of the public halves.
func jwksJSON(t testing.TB, keys ...jwk) string {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: k.alg, Use: k.use})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// claims are a token payload; defaults filled by sign.
type claims map[string]any

// sign makes a compact JWS with go-jose, with kid in the header when not empty.
func sign(t testing.TB, alg jose.SignatureAlgorithm, key crypto.Signer, kid string, c claims) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(c)
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

// signRaw signs exactly the given header and payload JSON: for tokens go-jose would
// not produce (duplicate members, HMAC with a public key, crit).
func signRaw(t testing.TB, alg string, key any, header, payload string) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch alg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:])
	case "ES256":
		r, s, e := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), sum[:])
		err = e
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(input))
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	default:
		t.Fatalf("signRaw: %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// baseClaims are valid claims for testIssuer at testNow.
func baseClaims() claims {
	return claims{
		"iss": testIssuer,
		"sub": "alice",
		"aud": "bookinfo",
		"exp": testNow.Add(time.Hour).Unix(),
		"iat": testNow.Add(-time.Minute).Unix(),
	}
}

// with returns a copy of c with the changes applied (a nil value deletes the claim).
func (c claims) with(kv ...any) claims {
	out := claims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// inlineProvider is a provider with an inline JWKS.
func inlineProvider(issuer, jwks string) *jwtauthnv3.JwtProvider {
	return &jwtauthnv3.JwtProvider{
		Issuer: issuer,
		JwksSourceSpecifier: &jwtauthnv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: jwks},
		}},
	}
}

// istioConfig is what Trellis emits: rules [{prefix "/", requires_any [providers...,
// allow_missing]}] (ADR 002).
func istioConfig(providers map[string]*jwtauthnv3.JwtProvider, allowMissing bool) *jwtauthnv3.JwtAuthentication {
	var reqs []*jwtauthnv3.JwtRequirement
	for _, name := range slices.Sorted(maps.Keys(providers)) {
		reqs = append(reqs, &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_ProviderName{ProviderName: name}})
	}
	if allowMissing {
		reqs = append(reqs, &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	}
	return &jwtauthnv3.JwtAuthentication{
		Providers: providers,
		Rules: []*jwtauthnv3.RequirementRule{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtauthnv3.RequirementRule_Requires{Requires: &jwtauthnv3.JwtRequirement{
				RequiresType: &jwtauthnv3.JwtRequirement_RequiresAny{RequiresAny: &jwtauthnv3.JwtRequirementOrList{Requirements: reqs}},
			}},
		}},
	}
}

func mustTranslate(t testing.TB, cfg *jwtauthnv3.JwtAuthentication, keys *KeyCache) *Filter {
	t.Helper()
	f, err := Translate(cfg, keys)
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	return f
}

// req is a Request from literal headers, query parameters and cookies.
type req struct {
	headers map[string][]string
	query   map[string]string
	cookies map[string]string
}

func (r req) HeaderValues(name string) []string { return r.headers[name] }
func (r req) QueryParam(name string) (string, bool) {
	v, ok := r.query[name]
	return v, ok
}
func (r req) Cookie(name string) (string, bool) {
	v, ok := r.cookies[name]
	return v, ok
}

// multiReq also implements MultiQueryRequest and MethodRequest.
type multiReq struct {
	req
	params map[string][]string
	method string
}

func (r multiReq) QueryParamValues(name string) []string { return r.params[name] }
func (r multiReq) Method() string                        { return r.method }

func bearer(tok string) req {
	return req{headers: map[string][]string{"authorization": {"Bearer " + tok}}}
}

// tamper replaces the payload segment of tok.
func tamper(tok, payload string) string {
	parts := strings.Split(tok, ".")
	parts[1] = b64(payload)
	return strings.Join(parts, ".")
}
