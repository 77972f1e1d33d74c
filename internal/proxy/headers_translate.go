package proxy

import (
	"fmt"
	"net/textproto"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// headerConfig is one level's headers_to_add/remove as configured.
type headerConfig struct {
	add    []*corev3.HeaderValueOption
	remove []string
}

// translateHeaderLevel validates one level of header mutation. Values are
// literal: Envoy's %VAR% formatters are refused, "%%" is a literal "%".
// Hop-by-hop, framing, Host and pseudo-headers cannot be added or removed.
func translateHeaderLevel(addField, removeField string, hc headerConfig) (mutationLevel, error) {
	var l mutationLevel
	if len(hc.add) > maxAdds {
		return l, fmt.Errorf("%s: %d headers, at most %d supported", addField, len(hc.add), maxAdds)
	}
	for i, name := range hc.remove {
		if err := checkMutableHeader(name); err != nil {
			return l, fmt.Errorf("%s[%d]: %w", removeField, i, err)
		}
		l.remove = append(l.remove, textproto.CanonicalMIMEHeaderKey(name))
	}
	for i, o := range hc.add {
		a, keep, err := translateHeaderValueOption(o)
		if err != nil {
			return l, fmt.Errorf("%s[%d].%w", addField, i, err)
		}
		if keep {
			l.add = append(l.add, a)
		}
	}
	return l, nil
}

// translateHeaderValueOption returns the addition, or keep=false for an
// empty value Envoy drops (keep_empty_value unset).
func translateHeaderValueOption(o *corev3.HeaderValueOption) (headerAdd, bool, error) {
	var a headerAdd
	h := o.GetHeader()
	if h == nil {
		return a, false, fmt.Errorf("header: missing")
	}
	if err := checkMutableHeader(h.GetKey()); err != nil {
		return a, false, fmt.Errorf("header.key: %w", err)
	}
	value := h.GetValue()
	if raw := h.GetRawValue(); len(raw) > 0 {
		if value != "" {
			return a, false, fmt.Errorf("header: both value and raw_value are set")
		}
		value = string(raw)
	} else {
		v, err := literalHeaderValue(value)
		if err != nil {
			return a, false, fmt.Errorf("header.value: %w", err)
		}
		value = v
	}
	if err := checkHeaderValue(value); err != nil {
		return a, false, fmt.Errorf("header.value: %w", err)
	}
	switch {
	case o.GetAppend() != nil && o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		return a, false, fmt.Errorf("append: both append and append_action are set")
	case o.GetAppend() != nil && o.GetAppend().GetValue():
		a.action = appendIfExistsOrAdd
	case o.GetAppend() != nil:
		a.action = overwriteIfExistsOrAdd
	default:
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			a.action = appendIfExistsOrAdd
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			a.action = addIfAbsent
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			a.action = overwriteIfExistsOrAdd
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			a.action = overwriteIfExists
		default:
			return a, false, fmt.Errorf("append_action: %s not supported", o.GetAppendAction())
		}
	}
	if value == "" && !o.GetKeepEmptyValue() {
		return a, false, nil
	}
	a.name = textproto.CanonicalMIMEHeaderKey(h.GetKey())
	a.value = value
	a.line = []byte(a.name + ": " + value + "\r\n")
	return a, true, nil
}

// literalHeaderValue refuses Envoy's substitution formatters (%VAR%), which
// the proxy does not implement, and unescapes "%%".
func literalHeaderValue(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		return "", fmt.Errorf("%q uses a %%VAR%% formatter, not supported (write %%%% for a literal %%)", v)
	}
	return b.String(), nil
}

// checkMutableHeader refuses names whose change would break the message or
// its framing, or that Envoy refuses (":"-prefixed and Host).
func checkMutableHeader(name string) error {
	if name == "" {
		return fmt.Errorf("empty header name")
	}
	if name[0] == ':' {
		return fmt.Errorf("pseudo-header %q cannot be modified", name)
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Errorf("invalid header name %q", name)
		}
	}
	switch strings.ToLower(name) {
	case "host":
		return fmt.Errorf("%q cannot be modified (use host_rewrite_literal)", name)
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade",
		"trailer", "content-length", "expect", "proxy-authenticate", "proxy-authorization":
		return fmt.Errorf("hop-by-hop or framing header %q cannot be modified", name)
	}
	return nil
}

func checkHeaderValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("invalid byte %#x in header value", c)
		}
	}
	return nil
}

// buildMutation joins levels (most specific first) into a mutation, nil
// when none changes anything.
func buildMutation(levels ...mutationLevel) *headerMutation {
	m := &headerMutation{}
	for _, l := range levels {
		if len(l.add) > 0 || len(l.remove) > 0 {
			m.levels = append(m.levels, l)
		}
	}
	if len(m.levels) == 0 {
		return nil
	}
	return m
}
