package model

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

// IstioRootNamespace is Istio's default config root namespace: an
// EnvoyFilter there applies to the workloads it selects in every namespace.
const IstioRootNamespace = "istio-system"

// Names an EnvoyFilter of the local rate limit form uses.
const (
	localRateLimitFilter = "envoy.filters.http.local_ratelimit"
	localRateLimitType   = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
)

var (
	typedStructTypes = []string{"type.googleapis.com/udpa.type.v1.TypedStruct", "type.googleapis.com/xds.type.v3.TypedStruct"}
	hcmFilterNames   = []string{"envoy.filters.network.http_connection_manager", "envoy.http_connection_manager"}
	routerNames      = []string{"envoy.filters.http.router", "envoy.router"}
	inboundVhostName = regexp.MustCompile(`^inbound\|http\|([0-9]+)$`)
	protoDuration    = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?s$`)
)

// Selects reports whether the EnvoyFilter applies to w, as Istio decides:
// workloads of its own namespace (of every namespace when it lives in the
// root namespace) whose labels include the selector's.
func (e *EnvoyFilter) Selects(w *Workload) bool {
	if ns := e.NamespaceOrDefault(); ns != IstioRootNamespace && ns != w.NamespaceOrDefault() {
		return false
	}
	if e.Spec.WorkloadSelector == nil {
		return true
	}
	for k, val := range e.Spec.WorkloadSelector.Labels {
		if got, ok := w.Spec.Labels[k]; !ok || got != val {
			return false
		}
	}
	return true
}

// RateLimits returns the local rate limits the EnvoyFilter configures, as
// RateLimitSpecs without a service (the workloads are those it Selects):
// Port 0 for a bucket in the filter itself (every inbound HTTP port), a port
// for a bucket merged into the routes of that port's inbound virtual host
// (it takes precedence there, as a per-route config does in Envoy). nil when
// the EnvoyFilter is invalid or limits nothing.
func (e *EnvoyFilter) RateLimits() []RateLimitSpec {
	v := &validator{doc: e.Key().String()}
	out := v.envoyFilter(&e.Spec)
	if len(v.errs) > 0 {
		return nil
	}
	return out
}

// envoyFilter checks that s is the local rate limit form and converts it.
func (v *validator) envoyFilter(s *EnvoyFilterSpec) []RateLimitSpec {
	const only = "only the local rate limit form of EnvoyFilter is supported (HTTP_FILTER inserting " +
		localRateLimitFilter + " on SIDECAR_INBOUND, HTTP_ROUTE or VIRTUAL_HOST merging its typed_per_filter_config)"
	if len(s.TargetRefs) > 0 {
		v.errf("spec.targetRefs", "not supported: select workloads with spec.workloadSelector")
	}
	if s.Priority != 0 {
		v.notImplemented("spec.priority")
	}
	if len(s.ConfigPatches) == 0 {
		v.errf("spec.configPatches", "required; %s", only)
		return nil
	}
	var out []RateLimitSpec
	filters := 0
	for i := range s.ConfigPatches {
		cp := &s.ConfigPatches[i]
		p := fmt.Sprintf("spec.configPatches[%d]", i)
		switch cp.ApplyTo {
		case "HTTP_FILTER":
			filters++
			if rl, ok := v.efFilterPatch(p, cp); ok {
				out = append(out, rl)
			}
		case "HTTP_ROUTE", "VIRTUAL_HOST":
			if rl, ok := v.efRoutePatch(p, cp); ok {
				out = append(out, rl)
			}
		default:
			v.errf(p+".applyTo", "%q: %s", cp.ApplyTo, only)
		}
	}
	switch {
	case filters == 0:
		v.errf("spec.configPatches", "no HTTP_FILTER patch inserts %s: a typed_per_filter_config alone does nothing", localRateLimitFilter)
	case filters > 1:
		v.errf("spec.configPatches", "%d HTTP_FILTER patches: want exactly one inserting %s", filters, localRateLimitFilter)
	case len(v.errs) == 0 && len(out) == 0:
		v.warnf("spec.configPatches", "no enforced token bucket: this EnvoyFilter limits nothing")
	}
	return dedupePorts(v, out)
}

// dedupePorts keeps the last bucket configured for each port, as later
// patches override earlier ones in Envoy, and warns.
func dedupePorts(v *validator, in []RateLimitSpec) []RateLimitSpec {
	var out []RateLimitSpec
	for _, rl := range in {
		if i := slices.IndexFunc(out, func(o RateLimitSpec) bool { return o.Port == rl.Port }); i >= 0 {
			v.warnf("spec.configPatches", "port %d has two token buckets; the later patch is used", rl.Port)
			out[i] = rl
			continue
		}
		out = append(out, rl)
	}
	return out
}

// efContext checks a patch's match.context: the inbound side.
func (v *validator) efContext(p string, m *EnvoyConfigObjectMatch) {
	if m == nil {
		v.warnf(p+".match", "no context: Istio also patches outbound and gateway listeners; Trellis enforces the limit on the inbound side only")
		return
	}
	switch m.Context {
	case "SIDECAR_INBOUND":
	case "", "ANY":
		v.warnf(p+".match.context", "ANY: Istio also patches outbound and gateway listeners; Trellis enforces the limit on the inbound side only")
	default:
		v.errf(p+".match.context", "%q: only SIDECAR_INBOUND (or ANY) is supported: local rate limits are enforced by the server's sidecar", m.Context)
	}
	if m.Proxy != nil {
		v.notImplemented(p + ".match.proxy")
	}
	if m.Cluster != nil {
		v.errf(p+".match.cluster", "not supported: the local rate limit patches listeners and routes")
	}
}

// efFilterPatch checks the HTTP_FILTER patch and returns the bucket of the
// filter's own config, if it has an enforced one.
func (v *validator) efFilterPatch(p string, cp *EnvoyConfigObjectPatch) (RateLimitSpec, bool) {
	v.efContext(p, cp.Match)
	var port uint32
	subFilter := ""
	if m := cp.Match; m != nil {
		if m.RouteConfiguration != nil {
			v.errf(p+".match.routeConfiguration", "not supported for an HTTP_FILTER patch (use match.listener)")
		}
		if l := m.Listener; l != nil {
			lp := p + ".match.listener"
			port = l.PortNumber
			v.port(lp+".portNumber", l.PortNumber, false)
			for _, f := range []struct{ name, val string }{{"portName", l.PortName}, {"listenerFilter", l.ListenerFilter}, {"name", l.Name}} {
				if f.val != "" {
					v.errf(lp+"."+f.name, "not supported: select the port with portNumber")
				}
			}
			if fc := l.FilterChain; fc != nil {
				if fc.Name != "" || fc.SNI != "" || fc.TransportProtocol != "" || fc.ApplicationProtocols != "" {
					v.errf(lp+".filterChain", "only filterChain.filter (and destinationPort) are supported")
				}
				if fc.DestinationPort != 0 {
					if port != 0 && port != fc.DestinationPort {
						v.errf(lp+".filterChain.destinationPort", "%d differs from portNumber %d", fc.DestinationPort, port)
					}
					port = fc.DestinationPort
				}
				if f := fc.Filter; f != nil {
					if f.Name != "" && !slices.Contains(hcmFilterNames, f.Name) {
						v.errf(lp+".filterChain.filter.name", "%q: the local rate limit goes into %s", f.Name, hcmFilterNames[0])
					}
					if f.SubFilter != nil {
						subFilter = f.SubFilter.Name
					}
				}
			}
		}
	}
	pp := p + ".patch"
	if cp.Patch == nil {
		v.errf(pp, "required")
		return RateLimitSpec{}, false
	}
	switch op := cp.Patch.Operation; {
	case op == "INSERT_FIRST":
	case op == "INSERT_BEFORE" && (subFilter == "" || slices.Contains(routerNames, subFilter)):
	case op == "INSERT_BEFORE":
		v.errf(p+".match.listener.filterChain.filter.subFilter.name", "%q: the local rate limit can only be inserted before %s", subFilter, routerNames[0])
	default:
		v.errf(pp+".operation", "%q: want INSERT_BEFORE (the router) or INSERT_FIRST: the filter must run before the router", op)
	}
	val := cp.Patch.Value
	vp := pp + ".value"
	if name, _ := val["name"].(string); name != localRateLimitFilter {
		v.errf(vp+".name", "%q: only %s is supported", name, localRateLimitFilter)
	}
	for _, k := range sortedKeys(val) {
		if k != "name" && k != "typed_config" && k != "typedConfig" {
			v.errf(keyPath(vp, k), "not supported")
		}
	}
	tc, tcKey := lookup(val, "typed_config")
	if tc == nil {
		v.errf(vp+".typed_config", "required")
		return RateLimitSpec{}, false
	}
	rl, ok := v.efTypedConfig(keyPath(vp, tcKey), tc, false)
	rl.Port = port
	return rl, ok
}

// efRoutePatch checks an HTTP_ROUTE or VIRTUAL_HOST patch merging a
// typed_per_filter_config into an inbound virtual host's routes.
func (v *validator) efRoutePatch(p string, cp *EnvoyConfigObjectPatch) (RateLimitSpec, bool) {
	v.efContext(p, cp.Match)
	var port uint32
	if m := cp.Match; m != nil {
		if m.Listener != nil {
			v.errf(p+".match.listener", "not supported for an %s patch (use match.routeConfiguration)", cp.ApplyTo)
		}
		if rc := m.RouteConfiguration; rc != nil {
			rp := p + ".match.routeConfiguration"
			port = rc.PortNumber
			v.port(rp+".portNumber", rc.PortNumber, false)
			for _, f := range []struct{ name, val string }{{"portName", rc.PortName}, {"gateway", rc.Gateway}, {"name", rc.Name}} {
				if f.val != "" {
					v.errf(rp+"."+f.name, "not supported: select the port with vhost.name \"inbound|http|<port>\" or portNumber")
				}
			}
			if vh := rc.Vhost; vh != nil {
				if vh.Name != "" {
					mm := inboundVhostName.FindStringSubmatch(vh.Name)
					n, err := uint64(0), error(nil)
					if mm != nil {
						n, err = strconv.ParseUint(mm[1], 10, 16)
					}
					switch {
					case mm == nil || err != nil || n == 0:
						v.errf(rp+".vhost.name", "%q: want the inbound virtual host \"inbound|http|<port>\"", vh.Name)
					case port != 0 && uint32(n) != port:
						v.errf(rp+".vhost.name", "port %d differs from portNumber %d", n, port)
					default:
						port = uint32(n)
					}
				}
				if vh.DomainName != "" {
					v.errf(rp+".vhost.domainName", "not supported")
				}
				if r := vh.Route; r != nil {
					if r.Name != "" {
						v.errf(rp+".vhost.route.name", "not supported: the limit applies to every route of the virtual host")
					}
					if r.Action != "" && r.Action != "ANY" && r.Action != "ROUTE" {
						v.errf(rp+".vhost.route.action", "%q: want ANY or ROUTE", r.Action)
					}
				}
			}
		}
	}
	pp := p + ".patch"
	if cp.Patch == nil {
		v.errf(pp, "required")
		return RateLimitSpec{}, false
	}
	if cp.Patch.Operation != "MERGE" {
		v.errf(pp+".operation", "%q: want MERGE", cp.Patch.Operation)
	}
	vp := pp + ".value"
	for _, k := range sortedKeys(cp.Patch.Value) {
		if k != "typed_per_filter_config" && k != "typedPerFilterConfig" {
			v.errf(keyPath(vp, k), "not supported: only typed_per_filter_config[%q]", localRateLimitFilter)
		}
	}
	tpfc, tpfcKey := lookup(cp.Patch.Value, "typed_per_filter_config")
	m, ok := tpfc.(map[string]any)
	if !ok {
		v.errf(vp+".typed_per_filter_config", "want an object with %q", localRateLimitFilter)
		return RateLimitSpec{}, false
	}
	mp := keyPath(vp, tpfcKey)
	for _, k := range sortedKeys(m) {
		if k != localRateLimitFilter {
			v.errf(keyPath(mp, k), "not supported: only %s", localRateLimitFilter)
		}
	}
	tc := m[localRateLimitFilter]
	if tc == nil {
		return RateLimitSpec{}, false
	}
	rl, ok := v.efTypedConfig(keyPath(mp, localRateLimitFilter), tc, true)
	rl.Port = port
	return rl, ok
}
