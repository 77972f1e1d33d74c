package compile

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/trellis-mesh/trellis/internal/model"
)

// headerOps are the Envoy forms of a Headers block, as Istio's
// TranslateHeadersOperations makes them: set → OVERWRITE_IF_EXISTS_OR_ADD,
// add → APPEND_IF_EXISTS_OR_ADD (each sorted by name, sets first), remove
// as given. A request set or add of host or :authority cannot be done by a
// header operation: it is returned as authority (a set wins over an add),
// for host_rewrite_literal. Other pseudo-headers and host are dropped
// (Validate rejects them).
type headerOps struct {
	requestAdd     []*corev3.HeaderValueOption
	requestRemove  []string
	responseAdd    []*corev3.HeaderValueOption
	responseRemove []string
	authority      string
}

func translateHeaders(h *model.Headers) headerOps {
	var ops headerOps
	if h == nil {
		return ops
	}
	if r := h.Request; r != nil {
		var setAuth, addAuth string
		ops.requestAdd, setAuth = headerValues(r.Set, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
		var add []*corev3.HeaderValueOption
		add, addAuth = headerValues(r.Add, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
		ops.requestAdd = append(ops.requestAdd, add...)
		ops.requestRemove = removableHeaders(r.Remove)
		ops.authority = addAuth
		if setAuth != "" {
			ops.authority = setAuth
		}
	}
	if r := h.Response; r != nil {
		ops.responseAdd, _ = headerValues(r.Set, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
		add, _ := headerValues(r.Add, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
		ops.responseAdd = append(ops.responseAdd, add...)
		ops.responseRemove = removableHeaders(r.Remove)
	}
	return ops
}

// headerValues returns the operations for m, sorted by name, and the value
// given to the authority (host or :authority), if any.
func headerValues(m map[string]string, action corev3.HeaderValueOption_HeaderAppendAction) ([]*corev3.HeaderValueOption, string) {
	var out []*corev3.HeaderValueOption
	authority := ""
	for _, k := range sortedNames(m) {
		if isAuthority(k) {
			authority = m[k]
			continue
		}
		if internalHeader(k) {
			continue
		}
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: m[k]},
			AppendAction: action,
		})
	}
	return out, authority
}

func removableHeaders(names []string) []string {
	var out []string
	for _, k := range names {
		if !internalHeader(k) {
			out = append(out, k)
		}
	}
	return out
}

// internalHeader reports whether a header is one Envoy does not let
// header operations touch: pseudo-headers and host.
func internalHeader(k string) bool {
	return strings.HasPrefix(k, ":") || strings.EqualFold(k, "host")
}

func isAuthority(k string) bool {
	return strings.EqualFold(k, "host") || strings.EqualFold(k, headerAuthority)
}
