package proxy

import (
	"fmt"
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

var typeFilterConfig = typeURL(&routev3.FilterConfig{})

// httpFilters are the HTTP filters of an HCM before its router, in order.
type httpFilters struct {
	chain []httpFilter
}

type filterKind int

const (
	filterFault filterKind = iota + 1
	filterLocalRateLimit
	filterJWT    // envoy.filters.http.jwt_authn (authz.go)
	filterRBAC   // envoy.filters.http.rbac (authz.go)
	filterBuffer // envoy.filters.http.buffer (buffer_filter.go)
)

// String names the filter kind as explain shows it.
func (k filterKind) String() string {
	switch k {
	case filterFault:
		return "fault"
	case filterLocalRateLimit:
		return "local_ratelimit"
	case filterJWT:
		return "jwt_authn"
	case filterRBAC:
		return "rbac"
	case filterBuffer:
		return "buffer"
	}
	return "unknown"
}

// httpFilter is one filter of the HCM and its listener-wide config (nil:
// it acts only where a virtual host or route configures it).
type httpFilter struct {
	name   string
	kind   filterKind
	fault  *faultPolicy
	limit  *limitPolicy
	jwt    *jwtFilter    // filterJWT
	rbac   *rbacFilter   // filterRBAC
	buffer *bufferPolicy // filterBuffer
}

// filterConfig is one entry of a typed_per_filter_config, by filter name.
type filterConfig struct {
	name     string
	disabled bool // FilterConfig.disabled: the filter does nothing here
	fault    *faultPolicy
	limit    *limitPolicy
	buffer   *bufferPolicy // BufferPerRoute.buffer
}

// resolve returns the config of filter f for a request on rt: the most
// specific of the route's, the virtual host's (rt.filters lists the route's
// first) and the HCM's. Both results are nil when it does nothing.
func (f *httpFilter) resolve(rt *route) (*faultPolicy, *limitPolicy) {
	if rt != nil {
		for i := range rt.filters {
			if fc := &rt.filters[i]; fc.name == f.name {
				if fc.disabled {
					return nil, nil
				}
				if f.kind == filterFault && fc.fault != nil || f.kind == filterLocalRateLimit && fc.limit != nil {
					return fc.fault, fc.limit
				}
			}
		}
	}
	return f.fault, f.limit
}

// translatePerFilterConfigs translates a typed_per_filter_config map.
// scope names where it is configured (rate limit bucket identity).
func translatePerFilterConfigs(m map[string]*anypb.Any, scope string) ([]filterConfig, error) {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []filterConfig
	for _, name := range names {
		fc, ok, err := translatePerFilterConfig(name, m[name], scope)
		if err != nil {
			return nil, fmt.Errorf("typed_per_filter_config[%q].%w", name, err)
		}
		if ok {
			out = append(out, fc)
		}
	}
	return out, nil
}

func translatePerFilterConfig(name string, a *anypb.Any, scope string) (filterConfig, bool, error) {
	fc := filterConfig{name: name}
	optional := false
	if a.GetTypeUrl() == typeFilterConfig {
		var w routev3.FilterConfig
		if err := a.UnmarshalTo(&w); err != nil {
			return fc, false, fmt.Errorf("typed_config: %w", err)
		}
		if w.GetDisabled() {
			fc.disabled = true
			return fc, true, nil
		}
		a, optional = w.GetConfig(), w.GetIsOptional()
	}
	switch a.GetTypeUrl() {
	case typeHTTPFault:
		var f faultv3.HTTPFault
		if err := a.UnmarshalTo(&f); err != nil {
			return fc, false, fmt.Errorf("typed_config: %w", err)
		}
		fp, err := translateFault(&f)
		if err != nil {
			return fc, false, err
		}
		fc.fault = fp
	case typeLocalRateLimit:
		var l localratelimitv3.LocalRateLimit
		if err := a.UnmarshalTo(&l); err != nil {
			return fc, false, fmt.Errorf("typed_config: %w", err)
		}
		lp, err := translateLocalRateLimit(&l, scope+"/"+name, true)
		if err != nil {
			return fc, false, err
		}
		fc.limit = lp
	case typeBufferPerRoute:
		var b bufferv3.BufferPerRoute
		if err := a.UnmarshalTo(&b); err != nil {
			return fc, false, fmt.Errorf("typed_config: %w", err)
		}
		if err := translateBufferPerRoute(&b, &fc); err != nil {
			return fc, false, err
		}
	default:
		if optional {
			return fc, false, nil
		}
		return fc, false, fmt.Errorf("typed_config: filter type %q not supported (fault, local_ratelimit and buffer are)", a.GetTypeUrl())
	}
	return fc, true, nil
}
