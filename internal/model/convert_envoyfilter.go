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
	return out.limits
}

// envoyFilterConfig is what an EnvoyFilter configures: local rate limits
// and request buffering (convert_envoyfilter_buffer.go).
type envoyFilterConfig struct {
	limits  []RateLimitSpec
	buffers []RequestBuffer
}

// efFilterUse is a typed_per_filter_config entry of a route patch: the
// filter it configures must be inserted by an HTTP_FILTER patch.
type efFilterUse struct{ path, filter string }

// envoyFilter checks that s is one of the supported forms (the local rate
// limit, the buffer filter, or both) and converts it.
func (v *validator) envoyFilter(s *EnvoyFilterSpec) envoyFilterConfig {
	const only = "only the local rate limit and buffer forms of EnvoyFilter are supported (HTTP_FILTER inserting " +
		localRateLimitFilter + " or " + bufferFilter + " on SIDECAR_INBOUND, HTTP_ROUTE or VIRTUAL_HOST merging their typed_per_filter_config)"
	var out envoyFilterConfig
	if len(s.TargetRefs) > 0 {
		v.errf("spec.targetRefs", "not supported: select workloads with spec.workloadSelector")
	}
	if s.Priority != 0 {
		v.notImplemented("spec.priority")
	}
	if len(s.ConfigPatches) == 0 {
		v.errf("spec.configPatches", "required; %s", only)
		return out
	}
	filters := 0
	inserted := map[string]int{} // HTTP_FILTER patches by the filter they insert
	var uses []efFilterUse
	for i := range s.ConfigPatches {
		cp := &s.ConfigPatches[i]
		p := fmt.Sprintf("spec.configPatches[%d]", i)
		switch cp.ApplyTo {
		case "HTTP_FILTER":
			filters++
			inserted[v.efFilterPatch(p, cp, &out)]++
		case "HTTP_ROUTE", "VIRTUAL_HOST":
			uses = append(uses, v.efRoutePatch(p, cp, &out)...)
		default:
			v.errf(p+".applyTo", "%q: %s", cp.ApplyTo, only)
		}
	}
	if filters == 0 {
		v.errf("spec.configPatches", "no HTTP_FILTER patch inserts %s or %s: a typed_per_filter_config alone does nothing",
			localRateLimitFilter, bufferFilter)
	}
	for _, name := range []string{localRateLimitFilter, bufferFilter} {
		if n := inserted[name]; n > 1 {
			v.errf("spec.configPatches", "%d HTTP_FILTER patches: want exactly one inserting %s", n, name)
		}
	}
	for _, u := range uses {
		if filters > 0 && inserted[u.filter] == 0 {
			v.errf(u.path, "no HTTP_FILTER patch inserts %s: a typed_per_filter_config alone does nothing", u.filter)
		}
	}
	if inserted[localRateLimitFilter] > 0 && len(v.errs) == 0 && len(out.limits) == 0 {
		v.warnf("spec.configPatches", "no enforced token bucket: this EnvoyFilter limits nothing")
	}
	out.limits = dedupePorts(v, out.limits)
	out.buffers = v.efBuffers(out.buffers)
	return out
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

// efFeature words the messages about one supported filter.
type efFeature struct {
	name  string // "the local rate limit"
	what  string // what Trellis enforces on the inbound side only
	where string // why only there
}

var (
	rateLimitFeature = efFeature{"the local rate limit", "the limit", "local rate limits are enforced by the server's sidecar"}
	bufferFeature    = efFeature{"the buffer filter", "request buffering", "request bodies are buffered by the server's sidecar"}
)

func efFeatureOf(filter string) efFeature {
	if filter == bufferFilter {
		return bufferFeature
	}
	return rateLimitFeature
}

// efContext checks a patch's match.context: the inbound side.
func (v *validator) efContext(p string, m *EnvoyConfigObjectMatch, f efFeature) {
	if m == nil {
		v.warnf(p+".match", "no context: Istio also patches outbound and gateway listeners; Trellis enforces %s on the inbound side only", f.what)
		return
	}
	switch m.Context {
	case "SIDECAR_INBOUND":
	case "", "ANY":
		v.warnf(p+".match.context", "ANY: Istio also patches outbound and gateway listeners; Trellis enforces %s on the inbound side only", f.what)
	default:
		v.errf(p+".match.context", "%q: only SIDECAR_INBOUND (or ANY) is supported: %s", m.Context, f.where)
	}
	if m.Proxy != nil {
		v.notImplemented(p + ".match.proxy")
	}
	if m.Cluster != nil {
		v.errf(p+".match.cluster", "not supported: %s patches listeners and routes", f.name)
	}
}

// efFilterPatch checks an HTTP_FILTER patch and adds what the filter it
// inserts configures (a token bucket, a buffer limit) to out. It returns
// the name of the filter inserted.
func (v *validator) efFilterPatch(p string, cp *EnvoyConfigObjectPatch, out *envoyFilterConfig) string {
	name := ""
	if cp.Patch != nil {
		name, _ = cp.Patch.Value["name"].(string)
	}
	feat := efFeatureOf(name)
	v.efContext(p, cp.Match, feat)
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
						v.errf(lp+".filterChain.filter.name", "%q: %s goes into %s", f.Name, feat.name, hcmFilterNames[0])
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
		return name
	}
	switch op := cp.Patch.Operation; {
	case op == "INSERT_FIRST":
	case op == "INSERT_BEFORE" && (subFilter == "" || slices.Contains(routerNames, subFilter)):
	case op == "INSERT_BEFORE":
		v.errf(p+".match.listener.filterChain.filter.subFilter.name", "%q: %s can only be inserted before %s", subFilter, feat.name, routerNames[0])
	default:
		v.errf(pp+".operation", "%q: want INSERT_BEFORE (the router) or INSERT_FIRST: the filter must run before the router", op)
	}
	val := cp.Patch.Value
	vp := pp + ".value"
	known := name == localRateLimitFilter || name == bufferFilter
	if !known {
		v.errf(vp+".name", "%q: only %s and %s are supported", name, localRateLimitFilter, bufferFilter)
	}
	for _, k := range sortedKeys(val) {
		if k != "name" && k != "typed_config" && k != "typedConfig" {
			v.errf(keyPath(vp, k), "not supported")
		}
	}
	tc, tcKey := lookup(val, "typed_config")
	switch {
	case tc == nil:
		v.errf(vp+".typed_config", "required")
	case name == bufferFilter:
		if b, ok := v.efBufferConfig(keyPath(vp, tcKey), tc); ok {
			b.Port = port
			out.buffers = append(out.buffers, b)
		}
	case known:
		if rl, ok := v.efTypedConfig(keyPath(vp, tcKey), tc, false); ok {
			rl.Port = port
			out.limits = append(out.limits, rl)
		}
	}
	return name
}

// efRoutePatch checks an HTTP_ROUTE or VIRTUAL_HOST patch merging a
// typed_per_filter_config into an inbound virtual host's routes, adds what
// it configures to out, and returns the filters it configures.
func (v *validator) efRoutePatch(p string, cp *EnvoyConfigObjectPatch, out *envoyFilterConfig) []efFilterUse {
	var tpfc any
	tpfcKey := ""
	if cp.Patch != nil {
		tpfc, tpfcKey = lookup(cp.Patch.Value, "typed_per_filter_config")
	}
	m, isMap := tpfc.(map[string]any)
	feat := rateLimitFeature
	if _, ok := m[bufferFilter]; ok && len(m) == 1 {
		feat = bufferFeature
	}
	v.efContext(p, cp.Match, feat)
	var port uint32
	if m := cp.Match; m != nil {
		if m.Listener != nil {
			v.errf(p+".match.listener", "not supported for an %s patch (use match.routeConfiguration)", cp.ApplyTo)
		}
		if rc := m.RouteConfiguration; rc != nil {
			port = v.efRouteConfigMatch(p+".match.routeConfiguration", rc, feat)
		}
	}
	pp := p + ".patch"
	if cp.Patch == nil {
		v.errf(pp, "required")
		return nil
	}
	if cp.Patch.Operation != "MERGE" {
		v.errf(pp+".operation", "%q: want MERGE", cp.Patch.Operation)
	}
	vp := pp + ".value"
	for _, k := range sortedKeys(cp.Patch.Value) {
		if k != "typed_per_filter_config" && k != "typedPerFilterConfig" {
			v.errf(keyPath(vp, k), "not supported: only typed_per_filter_config[%q] or [%q]", localRateLimitFilter, bufferFilter)
		}
	}
	if !isMap {
		v.errf(vp+".typed_per_filter_config", "want an object with %q or %q", localRateLimitFilter, bufferFilter)
		return nil
	}
	mp := keyPath(vp, tpfcKey)
	var uses []efFilterUse
	for _, k := range sortedKeys(m) {
		kp := keyPath(mp, k)
		switch k {
		case localRateLimitFilter:
			uses = append(uses, efFilterUse{kp, k})
			if m[k] == nil {
				continue
			}
			if rl, ok := v.efTypedConfig(kp, m[k], true); ok {
				rl.Port = port
				out.limits = append(out.limits, rl)
			}
		case bufferFilter:
			uses = append(uses, efFilterUse{kp, k})
			if b, ok := v.efBufferPerRoute(kp, m[k]); ok {
				b.Port, b.PerRoute = port, true
				out.buffers = append(out.buffers, b)
			}
		default:
			v.errf(kp, "not supported: only %s and %s", localRateLimitFilter, bufferFilter)
		}
	}
	return uses
}

// efRouteConfigMatch checks a route patch's match.routeConfiguration and
// returns the inbound port it selects (0: every one).
func (v *validator) efRouteConfigMatch(rp string, rc *EnvoyFilterRouteConfig, feat efFeature) uint32 {
	port := rc.PortNumber
	v.port(rp+".portNumber", rc.PortNumber, false)
	for _, f := range []struct{ name, val string }{{"portName", rc.PortName}, {"gateway", rc.Gateway}, {"name", rc.Name}} {
		if f.val != "" {
			v.errf(rp+"."+f.name, "not supported: select the port with vhost.name \"inbound|http|<port>\" or portNumber")
		}
	}
	vh := rc.Vhost
	if vh == nil {
		return port
	}
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
			v.errf(rp+".vhost.route.name", "not supported: %s applies to every route of the virtual host", feat.what)
		}
		if r.Action != "" && r.Action != "ANY" && r.Action != "ROUTE" {
			v.errf(rp+".vhost.route.action", "%q: want ANY or ROUTE", r.Action)
		}
	}
	return port
}
