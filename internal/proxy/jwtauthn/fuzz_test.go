package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
)

// FuzzVerifyToken: arbitrary token strings never panic, and only a token whose payload
// one of the seed signatures covers can verify (a signature binds the payload).
func FuzzVerifyToken(f *testing.F) {
	var keys []jwk
	var signed []string
	for _, alg := range algorithms {
		key := loadKey(f, keyFiles[alg])
		keys = append(keys, jwk{key: key, kid: string(alg)})
		signed = append(signed, sign(f, alg, key, string(alg), baseClaims()))
	}
	filter := mustTranslate(f, istioConfig(map[string]*jwtauthnv3.JwtProvider{
		"origins-0": withAudiences(inlineProvider(testIssuer, jwksJSON(f, keys...)), "bookinfo"),
	}, true), nil)
	payloads := map[string]bool{}
	for _, tok := range signed {
		f.Add(tok)
		payloads[strings.Split(tok, ".")[1]] = true
	}
	payload := `{"iss":"https://issuer.example","sub":"alice","aud":"bookinfo"}`
	for _, s := range []string{
		"",
		".",
		"..",
		"a.b.c",
		b64(`{"alg":"none"}`) + "." + b64(payload) + ".",
		b64(`{"alg":"HS256"}`) + "." + b64(payload) + ".AAAA",
		b64(`{"alg":"RS256","kid":"RS256","kid":"x"}`) + "." + b64(payload) + ".AAAA",
		b64(`{"alg":"ES256","crit":["b64"],"b64":false}`) + "." + b64(payload) + ".AAAA",
		b64(`{"alg":"EdDSA"}`) + "." + b64(`{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`) + ".AAAA",
		b64(`{"alg":"RS256"}`) + "." + b64(`{"exp":1e400}`) + ".AAAA",
		signed[0] + ".x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		for _, r := range []Request{bearer(tok), req{query: map[string]string{"access_token": tok}}} {
			o, err := filter.Verify(testNow, r)
			if err != nil {
				if o.Authenticated {
					t.Fatal("Authenticated with an error")
				}
				continue
			}
			parts := strings.Split(tok, ".")
			if !o.Authenticated || len(parts) != 3 || !payloads[parts[1]] {
				t.Fatalf("token verified with a payload no seed signed: %q", tok)
			}
			o.Lookup([]string{"request.auth.claims", "sub"})
		}
	})
}

// FuzzDecodeObject: the strict decoder accepts only valid JSON objects, and agrees with
// encoding/json on what they hold when they have no duplicate member names.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":{"b":[1,"x",null,true]}}`, `{"a":"\u0061"}`,
		`{"a":1}{"b":2}`, `[1]`, `{"a":1,}`, `{"a":1e999}`, `{"\ud800":1}`, " {\"a\" : 1} ",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeObject(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("decodeObject accepted invalid JSON %q", data)
		}
		var want map[string]any
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.UseNumber()
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("encoding/json refuses %q: %v", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeObject(%q) = %#v, encoding/json = %#v", data, got, want)
		}
	})
}

// FuzzParseJWKS: any JWKS document parses or fails without a panic, and every key kept
// is a public key of an allowed type.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(jwksJSON(f, jwk{key: loadKey(f, "rsa-a.pem"), kid: "r"}, jwk{key: loadKey(f, "ec-p384.pem")}, jwk{key: loadKey(f, "ed25519.pem"), use: "sig"})))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQ","e":"AQ"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"X25519","x":"AA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, _, err := parseJWKS(data)
		if err != nil {
			return
		}
		for _, k := range ks.keys {
			switch k.key.(type) {
			case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			default:
				t.Fatalf("kept a %T", k.key)
			}
			if k.alg != "" && !supportedAlg(k.alg) || strings.HasPrefix(k.alg, "HS") || k.alg == string(jose.HS256) {
				t.Fatalf("kept alg %q", k.alg)
			}
		}
	})
}
