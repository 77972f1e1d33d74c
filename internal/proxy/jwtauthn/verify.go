package jwtauthn

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Verify checks the request. A nil error with Authenticated=false means no token
// (allowed: the requirement is requires_any[providers..., allow_missing]), or a config
// that verifies nothing. A non-nil error means 401: a token was present but invalid, or
// tokens were found in more than one location / more than one token in one location, or
// the provider has no keys yet, or no token and allow_missing is absent. The error wraps
// one of the Err* reasons and never quotes the token.
func (f *Filter) Verify(now time.Time, r Request) (Outcome, error) {
	if f.verifyNothing || f.bypassCORS && isPreflight(r) {
		return Outcome{RemoveHeaders: f.sanitize}, nil
	}
	raw, loc, found, err := f.extract(r)
	if err != nil {
		return Outcome{}, err
	}
	if !found {
		if f.allowMissing {
			return Outcome{RemoveHeaders: f.sanitize}, nil
		}
		return Outcome{}, ErrMissing
	}
	if e := f.cache.get(raw, loc); e != nil {
		if err := e.p.checkClaims(e.t, now); err != nil {
			return Outcome{}, fmt.Errorf("provider %q: %w", e.p.name, err)
		}
		return e.o, nil
	}
	t, err := parseToken(raw)
	if err != nil {
		return Outcome{}, err
	}
	cands := f.byIssuer[t.iss]
	if !anyAt(cands, loc) {
		cands = f.anyIssuer
	}
	var first error
	var jws *jose.JSONWebSignature
	for _, p := range cands {
		if !containsProvider(loc.providers, p) {
			continue
		}
		var ks *keySet
		err := p.checkClaims(t, now)
		if err == nil {
			if jws == nil {
				if jws, err = jose.ParseSignedCompact(raw, algorithms); err != nil {
					return Outcome{}, fmt.Errorf("%w: %v", ErrMalformed, err)
				}
			}
			ks, err = p.checkSignature(t, jws)
		}
		if err == nil {
			o := f.outcome(t, p, loc)
			f.cache.put(raw, &cachedToken{t: t, p: p, loc: loc, ks: ks, o: o})
			return o, nil
		}
		if first == nil {
			first = fmt.Errorf("provider %q: %w", p.name, err)
		}
	}
	if first == nil {
		return Outcome{}, ErrUnknownIssuer
	}
	return Outcome{}, first
}

func anyAt(list []*provider, loc *location) bool {
	for _, p := range list {
		if containsProvider(loc.providers, p) {
			return true
		}
	}
	return false
}

func isPreflight(r Request) bool {
	m, ok := r.(MethodRequest)
	if !ok || m.Method() != "OPTIONS" {
		return false
	}
	return nonEmptyHeader(r, "origin") && nonEmptyHeader(r, "access-control-request-method")
}

func nonEmptyHeader(r Request, name string) bool {
	for _, v := range r.HeaderValues(name) {
		if v != "" {
			return true
		}
	}
	return false
}

// checkClaims applies the provider's time, lifetime and audience rules.
func (p *provider) checkClaims(t *token, now time.Time) error {
	s := float64(now.Unix())
	if t.nbf > 0 && s+p.skew < t.nbf {
		return ErrNotYetValid
	}
	if t.hasExp && t.exp+p.skew < s {
		return ErrExpired
	}
	if (p.requireExp || p.maxLifetime > 0) && !t.hasExp {
		return fmt.Errorf("%w: no exp", ErrLifetime)
	}
	if p.maxLifetime > 0 && t.exp-s > p.maxLifetime.Seconds() {
		return fmt.Errorf("%w: exp beyond max_lifetime", ErrLifetime)
	}
	if len(p.audiences) > 0 && !p.audienceAllowed(t.aud) {
		return ErrAudience
	}
	return nil
}

func (p *provider) audienceAllowed(aud []string) bool {
	for _, a := range aud {
		if contains(p.audiences, sanitizeAudience(a)) {
			return true
		}
	}
	return false
}

// checkSignature verifies the token with the provider's keys that fit its kid and alg,
// and returns the key set that verified it.
func (p *provider) checkSignature(t *token, jws *jose.JSONWebSignature) (*keySet, error) {
	ks, err := p.keys()
	if err != nil {
		return nil, err
	}
	var buf [4]*publicKey
	keys, unknownKid := ks.candidates(buf[:0], t.kid, t.alg)
	if len(keys) == 0 {
		if p.remote != nil {
			p.remote.kick() // a rotated key may have appeared since the last fetch
		}
		if unknownKid {
			return nil, ErrUnknownKid
		}
		return nil, ErrNoFittingKey
	}
	for _, k := range keys {
		if _, err := jws.Verify(k.key); err == nil {
			return ks, nil
		}
	}
	return nil, ErrSignature
}

// outcome builds the result of a verified token.
func (f *Filter) outcome(t *token, p *provider, loc *location) Outcome {
	o := Outcome{
		Authenticated: true,
		Issuer:        t.iss,
		Subject:       t.sub,
		Presenter:     t.azp,
		Audiences:     t.aud,
		Claims:        t.claims,
		RemoveHeaders: f.sanitize,
		normalized:    p.normalized,
	}
	if t.iss != "" && t.sub != "" {
		o.Principal = t.iss + "/" + t.sub
	}
	if !p.forward {
		switch loc.kind {
		case locHeader:
			o.RemoveHeaders = loc.remove
		case locParam:
			o.RemoveQueryParam = loc.name
		}
	}
	if p.payloadHeader != "" {
		v := t.payloadB64
		if p.padPayload && len(v)%4 != 0 {
			v += strings.Repeat("=", 4-len(v)%4)
		}
		o.SetHeaders = append(o.SetHeaders, [2]string{p.payloadHeader, v})
	}
	for _, c := range p.claimHeaders {
		v, ok := walk(t.claims, c.path)
		if !ok {
			continue
		}
		if s, ok := claimHeaderValue(v); ok {
			o.SetHeaders = append(o.SetHeaders, [2]string{c.header, s})
		}
	}
	return o
}

// claimHeaderValue formats a claim as Envoy's claim_to_headers does: strings verbatim,
// numbers as an integer when they are one in [0, 2^64) and with six decimals otherwise,
// booleans as true/false, arrays and objects as base64 (standard, padded) JSON. An empty
// string, null, or a string that is not a valid header value gives no header.
func claimHeaderValue(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, v != "" && validHeaderValue(v)
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return "", false
		}
		if f >= 0 && f < 1<<64 && f == float64(uint64(f)) {
			return strconv.FormatUint(uint64(f), 10), true
		}
		return strconv.FormatFloat(f, 'f', 6, 64), true
	case bool:
		return strconv.FormatBool(v), true
	case []any, map[string]any:
		b, err := json.Marshal(v)
		if err != nil {
			return "", false
		}
		return base64.StdEncoding.EncodeToString(b), true
	}
	return "", false
}

// validHeaderValue refuses control characters other than tab (CR and LF above all).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
