package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// algorithms are the JWS algorithms a token may use. HMAC and "none" are absent on
// purpose: the verifier holds only public keys.
var algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

func supportedAlg(alg string) bool {
	for _, a := range algorithms {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// publicKey is one usable JWK: a parsed public key and the fields that select it.
type publicKey struct {
	kid, alg string
	key      any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keySet is an immutable, parsed JWKS.
type keySet struct {
	keys []publicKey
}

// fits reports whether the key's type can verify alg (and, for EC, its curve matches).
func (k *publicKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch key := k.key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return key.Curve == elliptic.P256()
		case "ES384":
			return key.Curve == elliptic.P384()
		case "ES512":
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// candidates appends to dst the keys that may have signed a token with this kid and
// alg. A token without a kid may be signed by any key of a fitting type. A token with a
// kid: the keys with that kid, else (none has it) the keys without a kid, which Envoy
// tries too. unknownKid is true when the token names a kid that no key has and no
// kid-less key fits.
func (s *keySet) candidates(dst []*publicKey, kid, alg string) (out []*publicKey, unknownKid bool) {
	n := len(dst)
	known := false
	for i := range s.keys {
		k := &s.keys[i]
		if kid != "" && k.kid == kid {
			known = true
		}
		if k.kid == kid && k.fits(alg) || kid == "" && k.fits(alg) {
			dst = append(dst, k)
		}
	}
	if kid == "" || len(dst) > n {
		return dst, false
	}
	for i := range s.keys {
		if k := &s.keys[i]; k.kid == "" && k.fits(alg) {
			dst = append(dst, k)
		}
	}
	return dst, !known && len(dst) == n
}

// jwkHead is what parseJWKS reads of a JWK before handing it to go-jose.
type jwkHead struct {
	Kty string          `json:"kty"`
	Use string          `json:"use"`
	Alg string          `json:"alg"`
	Kid string          `json:"kid"`
	D   json.RawMessage `json:"d"`
	K   json.RawMessage `json:"k"`
	P   json.RawMessage `json:"p"`
	Q   json.RawMessage `json:"q"`
}

// parseJWKS parses a JWK Set ({"keys": [...]}). Keys it cannot or must not use are
// skipped (RFC 7517 section 5) and reported in skipped: symmetric ("oct") keys, keys
// with private members, keys whose use is not "sig", algorithms outside the list, and
// key types other than RSA, EC (P-256/384/521) and OKP Ed25519. A set left empty is an
// error.
func parseJWKS(data []byte) (ks *keySet, skipped []string, err error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("JWKS is not a JSON object with keys: %w", err)
	}
	ks = &keySet{}
	for i, raw := range doc.Keys {
		k, why := parseJWK(raw)
		if why != "" {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: %s", i, why))
			continue
		}
		ks.keys = append(ks.keys, k)
	}
	if len(ks.keys) == 0 {
		if len(skipped) > 0 {
			return nil, skipped, fmt.Errorf("JWKS has no usable key (%s)", strings.Join(skipped, "; "))
		}
		return nil, nil, errors.New("JWKS has no keys")
	}
	return ks, skipped, nil
}

// parseJWK returns the key, or why it was skipped.
func parseJWK(raw json.RawMessage) (publicKey, string) {
	var head jwkHead
	if err := json.Unmarshal(raw, &head); err != nil {
		return publicKey{}, "not a JWK: " + err.Error()
	}
	switch {
	case head.Kty == "oct":
		return publicKey{}, "symmetric (oct) keys are never used"
	case head.D != nil || head.K != nil || head.P != nil || head.Q != nil:
		return publicKey{}, "has private key members"
	case head.Use != "" && head.Use != "sig":
		return publicKey{}, fmt.Sprintf("use %q is not sig", head.Use)
	case head.Alg != "" && !supportedAlg(head.Alg):
		return publicKey{}, fmt.Sprintf("alg %q is not supported", head.Alg)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return publicKey{}, err.Error()
	}
	k := publicKey{kid: head.Kid, alg: head.Alg}
	switch key := jwk.Key.(type) {
	case *rsa.PublicKey, ed25519.PublicKey:
		k.key = key
	case *ecdsa.PublicKey:
		switch key.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			k.key = key
		default:
			return publicKey{}, "unsupported EC curve"
		}
	default:
		return publicKey{}, fmt.Sprintf("unsupported key type %q", head.Kty)
	}
	if k.alg != "" && !k.fits(k.alg) {
		return publicKey{}, fmt.Sprintf("alg %q does not fit the key type", k.alg)
	}
	return k, ""
}
