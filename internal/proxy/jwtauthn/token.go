package jwtauthn

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// MaxTokenSize is the largest token (after the header prefix) Verify looks at.
const MaxTokenSize = 8 << 10

// Reasons a token is refused; Verify's errors wrap one of them (errors.Is).
var (
	ErrMissing       = errors.New("jwt: missing")                       // no token, and the requirement does not allow that
	ErrMultiple      = errors.New("jwt: more than one token")           // in two locations, or twice in one
	ErrMalformed     = errors.New("jwt: malformed")                     // not a JWS compact token, bad header or payload
	ErrTooLarge      = errors.New("jwt: token too large")               // over MaxTokenSize
	ErrAlgorithm     = errors.New("jwt: algorithm not allowed")         // none, HMAC, or unknown
	ErrUnknownIssuer = errors.New("jwt: issuer not accepted")           // no provider for iss at this location
	ErrExpired       = errors.New("jwt: expired")                       // exp + skew < now
	ErrNotYetValid   = errors.New("jwt: not yet valid")                 // now + skew < nbf
	ErrLifetime      = errors.New("jwt: expiration missing or too far") // require_expiration / max_lifetime
	ErrAudience      = errors.New("jwt: audience not allowed")
	ErrNoKeys        = errors.New("jwt: provider has no keys") // remote JWKS never fetched, or unusable
	ErrUnknownKid    = errors.New("jwt: unknown key id")
	ErrNoFittingKey  = errors.New("jwt: no key fits the algorithm")
	ErrSignature     = errors.New("jwt: signature verification failed")
)

// token is a parsed, not yet verified, compact JWS.
type token struct {
	raw        string
	payloadB64 string // the payload segment, as received
	alg, kid   string
	claims     map[string]any

	iss, sub, azp string
	aud           []string
	exp, nbf      float64 // 0: absent
	hasExp        bool
}

var strictB64 = base64.RawURLEncoding.Strict()

// parseToken checks the token's shape and decodes its header and payload; the
// signature is checked later, with the provider's keys.
func parseToken(raw string) (*token, error) {
	if len(raw) > MaxTokenSize {
		return nil, ErrTooLarge
	}
	for i := 0; i < len(raw); i++ {
		if !isB64URL(raw[i]) && raw[i] != '.' {
			return nil, fmt.Errorf("%w: character outside base64url", ErrMalformed)
		}
	}
	h, rest, ok1 := strings.Cut(raw, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s, ".") {
		return nil, fmt.Errorf("%w: want 3 dot-separated segments", ErrMalformed)
	}
	t := &token{raw: raw, payloadB64: p}
	if err := t.parseHeader(h); err != nil { // first: alg "none" is refused as such
		return nil, err
	}
	if p == "" || s == "" {
		return nil, fmt.Errorf("%w: empty segment", ErrMalformed)
	}
	if _, err := strictB64.DecodeString(s); err != nil {
		return nil, fmt.Errorf("%w: signature: bad base64url", ErrMalformed)
	}
	if err := t.parsePayload(p); err != nil {
		return nil, err
	}
	return t, nil
}

func isB64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func (t *token) parseHeader(seg string) error {
	b, err := strictB64.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("%w: header: bad base64url", ErrMalformed)
	}
	h, err := decodeObject(b)
	if err != nil {
		return fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	alg, ok := h["alg"].(string)
	if !ok {
		return fmt.Errorf("%w: header: alg missing or not a string", ErrMalformed)
	}
	if !supportedAlg(alg) {
		return ErrAlgorithm
	}
	t.alg = alg
	if v, present := h["kid"]; present {
		if t.kid, ok = v.(string); !ok {
			return fmt.Errorf("%w: header: kid is not a string", ErrMalformed)
		}
	}
	// crit names extensions the verifier must understand: there are none here. b64
	// (RFC 7797, unencoded payload) is not allowed in JWTs.
	for _, k := range []string{"crit", "b64"} {
		if _, present := h[k]; present {
			return fmt.Errorf("%w: header: %s is not supported", ErrMalformed, k)
		}
	}
	return nil
}

func (t *token) parsePayload(seg string) error {
	b, err := strictB64.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("%w: payload: bad base64url", ErrMalformed)
	}
	c, err := decodeObject(b)
	if err != nil {
		return fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	t.claims = c
	for _, f := range []struct {
		name string
		dst  *string
	}{{"iss", &t.iss}, {"sub", &t.sub}, {"azp", &t.azp}} {
		if v, present := c[f.name]; present {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("%w: payload: %s is not a string", ErrMalformed, f.name)
			}
			*f.dst = s
		}
	}
	switch v := c["aud"].(type) {
	case nil:
		if _, present := c["aud"]; present {
			return fmt.Errorf("%w: payload: aud is null", ErrMalformed)
		}
	case string:
		t.aud = []string{v}
	case []any:
		t.aud = make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("%w: payload: aud holds a non-string", ErrMalformed)
			}
			t.aud = append(t.aud, s)
		}
	default:
		return fmt.Errorf("%w: payload: aud is neither a string nor an array", ErrMalformed)
	}
	var err2 error
	if t.exp, t.hasExp, err2 = numericDate(c, "exp"); err2 != nil {
		return err2
	}
	if t.nbf, _, err2 = numericDate(c, "nbf"); err2 != nil {
		return err2
	}
	if _, _, err2 = numericDate(c, "iat"); err2 != nil {
		return err2
	}
	return nil
}

// numericDate reads a NumericDate claim: a non-negative JSON number of seconds.
func numericDate(c map[string]any, name string) (float64, bool, error) {
	v, present := c[name]
	if !present {
		return 0, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, false, fmt.Errorf("%w: payload: %s is not a number", ErrMalformed, name)
	}
	f, err := n.Float64()
	if err != nil || f < 0 || math.IsInf(f, 0) {
		return 0, false, fmt.Errorf("%w: payload: %s is not a valid NumericDate", ErrMalformed, name)
	}
	return f, true, nil
}
