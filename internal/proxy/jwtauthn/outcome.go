package jwtauthn

import "strings"

// Request gives the filter read access to one request. name is lowercase.
type Request interface {
	HeaderValues(name string) []string // every value of the header, in order; nil when absent
	QueryParam(name string) (string, bool)
	Cookie(name string) (string, bool)
}

// MultiQueryRequest is optionally implemented by a Request: every value of a query
// parameter (decoded), so that ?access_token=a&access_token=b is refused as two tokens
// rather than reading only the first.
type MultiQueryRequest interface {
	QueryParamValues(name string) []string
}

// MethodRequest is optionally implemented by a Request; bypass_cors_preflight needs the
// method (a CORS preflight is OPTIONS with Origin and Access-Control-Request-Method).
type MethodRequest interface {
	Method() string
}

// Outcome is the result of a successful check. Its slices and maps may be shared with
// the Filter or with other requests: read them, never modify them.
type Outcome struct {
	Authenticated bool // false: no token was present and missing tokens are allowed

	Issuer, Subject, Principal, Presenter string // Principal is iss + "/" + sub (Istio), "" unless both are set
	Audiences                             []string
	// Claims is the JWT payload decoded with encoding/json, numbers as json.Number.
	Claims map[string]any

	// RemoveHeaders lists (lowercase) headers to drop from the request before SetHeaders
	// is applied: every provider's forward_payload_header and claim_to_headers names
	// (always, so that a client cannot forge them, as Envoy sanitizes them), plus the
	// header that carried the token when the provider's forward is false.
	RemoveHeaders []string
	// RemoveQueryParam is the query parameter that carried the token when the provider's
	// forward is false ("" otherwise). Envoy removes it from the path; cookies are kept.
	RemoveQueryParam string
	// SetHeaders are (lowercase name, value) pairs to set after RemoveHeaders:
	// forward_payload_header (base64url payload, no padding unless
	// pad_forward_payload_header) and claim_to_headers.
	SetHeaders [][2]string

	// normalized lists top-level claims whose string value Lookup splits on spaces
	// (normalize_payload_in_metadata.space_delimited_claims).
	normalized []string
}

// Lookup implements Istio's istio_authn metadata for rbac: path[0] is one of
// "request.auth.principal" (string), "request.auth.audiences" ([]string),
// "request.auth.presenter" (string), "request.auth.claims" (then path[1:] walks nested
// objects; the result is a string, or a []string holding the string elements of an
// array). ok is false when the value is absent, empty, or of another JSON type (a number
// or a boolean claim is not matched by a string matcher in Envoy either).
func (o *Outcome) Lookup(path []string) (any, bool) {
	if !o.Authenticated || len(path) == 0 {
		return nil, false
	}
	switch path[0] {
	case "request.auth.principal":
		return nonEmpty(o.Principal)
	case "request.auth.presenter":
		return nonEmpty(o.Presenter)
	case "request.auth.audiences":
		if len(path) != 1 || len(o.Audiences) == 0 {
			return nil, false
		}
		return o.Audiences, true
	case "request.auth.claims":
		return o.claim(path[1:])
	}
	return nil, false
}

func nonEmpty(s string) (any, bool) {
	if s == "" {
		return nil, false
	}
	return s, true
}

func (o *Outcome) claim(path []string) (any, bool) {
	if len(path) == 0 {
		return nil, false
	}
	v, ok := walk(o.Claims, path)
	if !ok {
		return nil, false
	}
	switch v := v.(type) {
	case string:
		if len(path) == 1 && contains(o.normalized, path[0]) {
			if f := strings.Fields(v); len(f) > 0 {
				return f, true
			}
			return nil, false
		}
		return v, true
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		if len(out) == 0 {
			return nil, false
		}
		return out, true
	}
	return nil, false
}

// walk follows keys through nested JSON objects.
func walk(m map[string]any, path []string) (any, bool) {
	var cur any = m
	for _, k := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
