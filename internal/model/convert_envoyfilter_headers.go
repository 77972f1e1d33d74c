package model

import (
	"fmt"
	"slices"
	"strings"
)

// efResponseHeaders reads LocalRateLimit.response_headers_to_add, a list of
// envoy.config.core.v3.HeaderValueOption, into RateLimitHeaders with
// literal values. Headers Envoy would not add (an empty value without
// keep_empty_value) are left out with a warning.
func (v *validator) efResponseHeaders(p string, x any) []RateLimitHeader {
	list, ok := x.([]any)
	if !ok {
		v.errf(p, "want an array, got %s", jsonKind(x))
		return nil
	}
	if len(list) > MaxRateLimitHeaders {
		v.errf(p, "%d headers, at most %d (Envoy's limit)", len(list), MaxRateLimitHeaders)
	}
	var out []RateLimitHeader
	for i, item := range list {
		if h, ok := v.efHeaderValueOption(fmt.Sprintf("%s[%d]", p, i), item); ok {
			out = append(out, h)
		}
	}
	return out
}

// efHeaderValueOption reads one HeaderValueOption: header {key, value},
// append_action (or the deprecated append: true is APPEND_IF_EXISTS_OR_ADD,
// false OVERWRITE_IF_EXISTS_OR_ADD) and keep_empty_value.
func (v *validator) efHeaderValueOption(p string, x any) (RateLimitHeader, bool) {
	var h RateLimitHeader
	m, ok := x.(map[string]any)
	if !ok {
		v.errf(p, "want an object, got %s", jsonKind(x))
		return h, false
	}
	errs := len(v.errs)
	keepEmpty, hasAction := false, false
	var appendFlag *bool
	for _, k := range sortedKeys(m) {
		kp := keyPath(p, k)
		switch snakeCase(k) {
		case "header":
			h.Name, h.Value = v.efHeaderValue(kp, m[k])
		case "append_action":
			hasAction = true
			h.AppendAction = v.efAppendAction(kp, m[k])
		case "append":
			b, ok := m[k].(bool)
			if !ok {
				v.errf(kp, "want boolean, got %s", jsonKind(m[k]))
				continue
			}
			appendFlag = &b
		case "keep_empty_value":
			if keepEmpty, ok = m[k].(bool); !ok {
				v.errf(kp, "want boolean, got %s", jsonKind(m[k]))
			}
		default:
			v.errf(kp, "unknown field of a HeaderValueOption")
		}
	}
	if _, key := lookup(m, "header"); key == "" {
		v.errf(p+".header", "required")
	}
	if appendFlag != nil {
		switch {
		case hasAction && h.AppendAction != "" && h.AppendAction != AppendIfExistsOrAdd:
			_, key := lookup(m, "append_action")
			v.errf(keyPath(p, key), "cannot be set together with the deprecated append (Envoy rejects both)")
		case *appendFlag:
			h.AppendAction = AppendIfExistsOrAdd
		default:
			h.AppendAction = OverwriteIfExistsOrAdd
		}
	}
	if len(v.errs) > errs {
		return h, false
	}
	if h.AppendAction == AppendIfExistsOrAdd {
		h.AppendAction = "" // the default
	}
	if h.Value == "" && !keepEmpty {
		v.warnf(p+".header.value", "empty: Envoy does not add the header unless keep_empty_value is true, ignored")
		return h, false
	}
	return h, true
}

// efHeaderValue reads an envoy.config.core.v3.HeaderValue and returns its
// name and literal value.
func (v *validator) efHeaderValue(p string, x any) (name, value string) {
	m, ok := x.(map[string]any)
	if !ok {
		v.errf(p, "want an object, got %s", jsonKind(x))
		return "", ""
	}
	for _, k := range sortedKeys(m) {
		kp := keyPath(p, k)
		s, isString := m[k].(string)
		switch snakeCase(k) {
		case "key":
			if !isString {
				v.errf(kp, "want string, got %s", jsonKind(m[k]))
			} else if r := replyHeaderName(s); r != "" {
				v.errf(kp, "%s", r)
			}
			name = s
		case "value":
			if !isString {
				v.errf(kp, "want string, got %s", jsonKind(m[k]))
				continue
			}
			lit, err := envoyLiteral(s)
			if err != nil {
				v.errf(kp, "%v", err)
				continue
			}
			if r := headerValueProblem(lit); r != "" {
				v.errf(kp, "%s", r)
			}
			value = lit
		case "raw_value":
			v.errf(kp, "not supported: use value")
		default:
			v.errf(kp, "unknown field of a HeaderValue")
		}
	}
	if _, key := lookup(m, "key"); key == "" {
		v.errf(p+".key", "required")
	}
	return name, value
}

// efAppendAction reads a HeaderAppendAction by name or number.
func (v *validator) efAppendAction(p string, x any) string {
	if s, ok := x.(string); ok {
		if !slices.Contains(headerAppendActions, s) {
			v.errf(p, "%q is not one of %v", s, headerAppendActions)
			return ""
		}
		return s
	}
	n, ok := v.protoUint32(p, x)
	if !ok {
		return ""
	}
	if int(n) >= len(headerAppendActions) {
		v.errf(p, "%d is not one of %v (0..%d)", n, headerAppendActions, len(headerAppendActions)-1)
		return ""
	}
	return headerAppendActions[n]
}

// envoyLiteral turns a header value as Envoy reads it (a format string:
// "%%" is a literal "%") into its literal value. Envoy's %VAR% formatters
// are not supported by the Trellis proxy and are refused.
func envoyLiteral(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] != '%':
			b.WriteByte(s[i])
		case i+1 < len(s) && s[i+1] == '%':
			b.WriteByte('%')
			i++
		default:
			return "", fmt.Errorf("%q uses a %%VAR%% formatter, not supported (write %%%% for a literal %%)", s)
		}
	}
	return b.String(), nil
}
