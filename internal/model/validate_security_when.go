package model

import (
	"fmt"
	"strings"
)

// Validation of AuthorizationPolicy when[] conditions: the key names an
// attribute Istio knows and docs/adr/002 maps to Envoy; the values are
// checked as that attribute's values.

// conditionKeys are the exact keys Trellis implements, with how their
// values are checked. request.headers[NAME] and request.auth.claims[NAME]...
// are parsed in conditionKey.
var conditionKeys = map[string]func(v *validator, p, s string){
	"source.ip":              (*validator).ipBlock,
	"remote.ip":              (*validator).ipBlock,
	"source.namespace":       (*validator).wildcardValue,
	"source.principal":       (*validator).principal,
	"request.auth.principal": (*validator).wildcardValue,
	"request.auth.audiences": (*validator).nonEmpty,
	"request.auth.presenter": (*validator).nonEmpty,
	"destination.ip":         (*validator).ipBlock,
	"destination.port":       (*validator).portString,
	"connection.sni":         (*validator).nonEmpty,
}

// knownConditionKeys lists the keys for error messages.
const knownConditionKeys = "request.headers[NAME], source.ip, remote.ip, source.namespace, source.principal, " +
	"request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[NAME], " +
	"destination.ip, destination.port, connection.sni"

func (v *validator) nonEmpty(p, s string) {
	if s == "" {
		v.errf(p, "must not be empty")
	}
}

func (v *validator) authzCondition(p string, c *AuthzCondition) {
	check, reason := conditionKey(c.Key)
	if reason != "" {
		v.errf(p+".key", "%s", reason)
		return
	}
	if len(c.Values) == 0 && len(c.NotValues) == 0 {
		v.errf(p, "one of values or notValues is required")
	}
	for i, s := range c.Values {
		check(v, fmt.Sprintf("%s.values[%d]", p, i), s)
	}
	for i, s := range c.NotValues {
		check(v, fmt.Sprintf("%s.notValues[%d]", p, i), s)
	}
}

// conditionKey returns how the values of key are checked, or why key is refused.
func conditionKey(key string) (check func(v *validator, p, s string), reason string) {
	if check, ok := conditionKeys[key]; ok {
		return check, ""
	}
	switch {
	case key == "":
		return nil, "required"
	case strings.HasPrefix(key, "request.headers["):
		name, ok := strings.CutSuffix(strings.TrimPrefix(key, "request.headers["), "]")
		if !ok || !headerNameRegex.MatchString(strings.TrimPrefix(name, ":")) {
			return nil, fmt.Sprintf("%q: want request.headers[NAME] with NAME an HTTP header name", key)
		}
		return (*validator).nonEmpty, ""
	case strings.HasPrefix(key, "request.auth.claims["):
		if !claimPath(strings.TrimPrefix(key, "request.auth.claims")) {
			return nil, fmt.Sprintf("%q: want request.auth.claims[NAME], or [NAME][NESTED]... for nested claims", key)
		}
		return (*validator).nonEmpty, ""
	case strings.HasPrefix(key, "experimental.envoy.filters."):
		return nil, fmt.Sprintf("%q: experimental.envoy.filters.* keys are not supported", key)
	case key == "source.serviceAccount", strings.HasPrefix(key, "request.experimental."):
		return nil, fmt.Sprintf("%q is not supported; want one of %s", key, knownConditionKeys)
	case key == "destination.namespace":
		return nil, fmt.Sprintf("%q: use the policy's namespace instead (as in Istio)", key)
	case strings.HasPrefix(key, "destination.labels["):
		return nil, fmt.Sprintf("%q: use spec.selector instead (as in Istio)", key)
	}
	return nil, fmt.Sprintf("unknown key %q; want one of %s", key, knownConditionKeys)
}

// claimPath reports whether s is one or more "[name]" segments, each name
// non-empty and without brackets.
func claimPath(s string) bool {
	if s == "" {
		return false
	}
	for s != "" {
		if s[0] != '[' {
			return false
		}
		end := strings.IndexByte(s, ']')
		if end < 2 || strings.IndexByte(s[1:end], '[') >= 0 {
			return false
		}
		s = s[end+1:]
	}
	return true
}
