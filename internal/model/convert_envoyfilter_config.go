package model

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// efTypedConfig reads a LocalRateLimit given as a TypedStruct or in its own
// JSON form. It returns the limit (a token bucket and its reply headers,
// no port) when the config has a bucket that is enabled and enforced for
// every request.
func (v *validator) efTypedConfig(p string, raw any, perRoute bool) (RateLimitSpec, bool) {
	body, bp, ok := v.efTypedBody(p, raw, localRateLimitType)
	if !ok {
		return RateLimitSpec{}, false
	}
	return v.localRateLimit(bp, body, perRoute)
}

// efTypedBody unwraps an Envoy config of type typeURL given as a
// TypedStruct (udpa or xds) or in its own JSON form ("@type" and its
// fields): it returns the config's fields and their path.
func (v *validator) efTypedBody(p string, raw any, typeURL string) (map[string]any, string, bool) {
	tc, ok := raw.(map[string]any)
	if !ok {
		v.errf(p, "want an object, got %s", jsonKind(raw))
		return nil, "", false
	}
	typ, _ := tc["@type"].(string)
	body := map[string]any{}
	bp := p
	switch {
	case slices.Contains(typedStructTypes, typ):
		if u, _ := lookup(tc, "type_url"); u != typeURL {
			v.errf(p+".type_url", "%v: want %s", u, typeURL)
			return nil, "", false
		}
		val, key := lookup(tc, "value")
		if val != nil {
			m, ok := val.(map[string]any)
			if !ok {
				v.errf(keyPath(p, key), "want an object, got %s", jsonKind(val))
				return nil, "", false
			}
			body, bp = m, keyPath(p, key)
		}
		for _, k := range sortedKeys(tc) {
			if n := snakeCase(k); n != "@type" && n != "type_url" && n != "value" {
				v.errf(keyPath(p, k), "unknown field of a TypedStruct")
			}
		}
	case typ == typeURL:
		for k, x := range tc {
			if k != "@type" {
				body[k] = x
			}
		}
	default:
		v.errf(keyPath(p, "@type"), "%q: want %s, or a TypedStruct (%s) of it", typ, typeURL, typedStructTypes[0])
		return nil, "", false
	}
	return body, bp, true
}

// localRateLimit checks an envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit.
func (v *validator) localRateLimit(p string, m map[string]any, perRoute bool) (RateLimitSpec, bool) {
	errs := len(v.errs)
	var bucket *TokenBucket
	var headers []RateLimitHeader
	enabled, enforced := 0.0, 0.0
	hasStat := false
	for _, k := range sortedKeys(m) {
		kp, x := keyPath(p, k), m[k]
		switch snakeCase(k) {
		case "stat_prefix":
			s, ok := x.(string)
			hasStat = ok && s != ""
			if !ok {
				v.errf(kp, "want string, got %s", jsonKind(x))
			}
		case "token_bucket":
			bucket = v.envoyTokenBucket(kp, x)
		case "filter_enabled":
			enabled = v.runtimePercent(kp, x)
		case "filter_enforced":
			enforced = v.runtimePercent(kp, x)
		case "response_headers_to_add":
			headers = v.efResponseHeaders(kp, x)
		case "request_headers_to_add_when_not_enforced":
			v.warnf(kp, "ignored: Trellis only enforces limits")
		case "enable_x_ratelimit_headers":
			if s, _ := x.(string); s != "DRAFT_VERSION_03" {
				v.warnf(kp, "%v ignored: Trellis always sends the DRAFT_VERSION_03 x-ratelimit-* headers", x)
			}
		default:
			v.errf(kp, "not supported (supported: stat_prefix, token_bucket, filter_enabled, filter_enforced, response_headers_to_add)")
		}
	}
	if _, key := lookup(m, "stat_prefix"); key == "" || (!hasStat && len(v.errs) == errs) {
		v.errf(p+".stat_prefix", "required (a non-empty string)")
	}
	if len(v.errs) > errs {
		return RateLimitSpec{}, false
	}
	if bucket == nil {
		if perRoute {
			v.errf(p+".token_bucket", "required in a per-route config")
		}
		return RateLimitSpec{}, false
	}
	for _, f := range []struct {
		name string
		pct  float64
	}{{"filter_enabled", enabled}, {"filter_enforced", enforced}} {
		switch {
		case f.pct == 0:
			v.warnf(p+"."+f.name, "0%% (Envoy's default when unset): this token bucket limits nothing, ignored")
			return RateLimitSpec{}, false
		case f.pct < 100:
			v.errf(p+"."+f.name, "%g%%: only 100%% (or 0%%) is supported", f.pct)
			return RateLimitSpec{}, false
		}
	}
	return RateLimitSpec{TokenBucket: bucket, ResponseHeadersToAdd: headers}, true
}

// envoyTokenBucket reads an envoy.type.v3.TokenBucket.
func (v *validator) envoyTokenBucket(p string, x any) *TokenBucket {
	m, ok := x.(map[string]any)
	if !ok {
		v.errf(p, "want an object, got %s", jsonKind(x))
		return nil
	}
	b := &TokenBucket{}
	errs := len(v.errs)
	for _, k := range sortedKeys(m) {
		kp := keyPath(p, k)
		switch snakeCase(k) {
		case "max_tokens":
			if n, ok := v.protoUint32(kp, m[k]); ok {
				b.MaxTokens = n
				if n < 1 {
					v.errf(kp, "must be at least 1")
				}
			}
		case "tokens_per_fill":
			if n, ok := v.protoUint32(kp, m[k]); ok {
				b.TokensPerFill = &n
				if n < 1 {
					v.errf(kp, "must be at least 1")
				}
			}
		case "fill_interval":
			s, ok := m[k].(string)
			if !ok || !protoDuration.MatchString(s) {
				v.errf(kp, "%v: want a protobuf duration such as \"1s\" or \"0.5s\"", m[k])
				continue
			}
			b.FillInterval = Duration(s)
			if d, err := ParseDuration(b.FillInterval); err != nil || d < MinFillInterval {
				v.errf(kp, "%s is shorter than %s, the shortest interval Envoy's local rate limit accepts", s, MinFillInterval)
			}
		default:
			v.errf(kp, "unknown field of a TokenBucket")
		}
	}
	if _, has := lookup(m, "fill_interval"); has == "" {
		v.errf(p+".fill_interval", "required")
	}
	if _, has := lookup(m, "max_tokens"); has == "" {
		v.errf(p+".max_tokens", "required (at least 1)")
	}
	if len(v.errs) > errs {
		return nil
	}
	return b
}

// runtimePercent reads an envoy.config.core.v3.RuntimeFractionalPercent and
// returns its default value in percent.
func (v *validator) runtimePercent(p string, x any) float64 {
	m, ok := x.(map[string]any)
	if !ok {
		v.errf(p, "want an object, got %s", jsonKind(x))
		return 0
	}
	var pct float64
	for _, k := range sortedKeys(m) {
		kp := keyPath(p, k)
		switch snakeCase(k) {
		case "runtime_key":
			if _, ok := m[k].(string); !ok {
				v.errf(kp, "want string, got %s", jsonKind(m[k]))
			}
		case "default_value":
			pct = v.fractionalPercent(kp, m[k])
		default:
			v.errf(kp, "unknown field of a RuntimeFractionalPercent")
		}
	}
	return pct
}

// fractionalPercent reads an envoy.type.v3.FractionalPercent as percent (capped at 100).
func (v *validator) fractionalPercent(p string, x any) float64 {
	m, ok := x.(map[string]any)
	if !ok {
		v.errf(p, "want an object, got %s", jsonKind(x))
		return 0
	}
	var num uint32
	den := 100.0
	for _, k := range sortedKeys(m) {
		kp := keyPath(p, k)
		switch snakeCase(k) {
		case "numerator":
			num, _ = v.protoUint32(kp, m[k])
		case "denominator":
			switch m[k] {
			case "HUNDRED", 0.0:
			case "TEN_THOUSAND", 1.0:
				den = 10_000
			case "MILLION", 2.0:
				den = 1_000_000
			default:
				v.errf(kp, "%v: want HUNDRED, TEN_THOUSAND or MILLION", m[k])
			}
		default:
			v.errf(kp, "unknown field of a FractionalPercent")
		}
	}
	return math.Min(100, float64(num)*100/den)
}

// protoUint32 reads a uint32 as protobuf JSON writes it: a number or a decimal string.
func (v *validator) protoUint32(p string, x any) (uint32, bool) {
	var s string
	switch n := x.(type) {
	case float64:
		s = strconv.FormatFloat(n, 'f', -1, 64)
	case json.Number:
		s = n.String()
	case string:
		s = n
	default:
		v.errf(p, "want integer, got %s", jsonKind(x))
		return 0, false
	}
	u, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		v.errf(p, "%s: want an integer 0..%d", s, uint32(math.MaxUint32))
		return 0, false
	}
	return uint32(u), true
}

// lookup finds a protobuf JSON field by its snake_case name or its
// lowerCamelCase JSON name, and returns the key it was found under.
func lookup(m map[string]any, snake string) (any, string) {
	if x, ok := m[snake]; ok {
		return x, snake
	}
	if c := camelCase(snake); c != snake {
		if x, ok := m[c]; ok {
			return x, c
		}
	}
	return nil, ""
}

func camelCase(snake string) string {
	var b strings.Builder
	up := false
	for _, r := range snake {
		if r == '_' {
			up = true
			continue
		}
		if up {
			r = unicode.ToUpper(r)
			up = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// snakeCase turns a protobuf JSON name (lowerCamelCase or snake_case) into its field name.
func snakeCase(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('_')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
