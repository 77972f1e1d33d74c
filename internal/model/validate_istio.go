package model

import (
	"fmt"
	"regexp"
	"slices"
)

// meshGateway is the gateway name that binds a VirtualService to sidecars.
const meshGateway = "mesh"

func (v *validator) virtualService(s *VirtualServiceSpec) {
	if len(s.Hosts) == 0 {
		v.errf("spec.hosts", "required")
	}
	for i, h := range s.Hosts {
		if h == "" {
			v.errf(fmt.Sprintf("spec.hosts[%d]", i), "must not be empty")
		}
	}
	if len(s.HTTP) == 0 && len(s.TCP) == 0 && len(s.TLS) == 0 {
		v.errf("spec", "one of http, tcp or tls is required")
	}
	switch {
	case len(s.Gateways) > 0 && !slices.Contains(s.Gateways, meshGateway):
		v.warnf("spec.gateways", "binds the VirtualService to gateways only, which are not implemented: it does not apply to sidecars")
	case slices.ContainsFunc(s.Gateways, func(g string) bool { return g != meshGateway }):
		v.warnf("spec.gateways", "gateways other than %q are not implemented yet, ignored", meshGateway)
	}
	if len(s.ExportTo) > 0 {
		v.notImplemented("spec.exportTo")
	}
	for i := range s.HTTP {
		v.httpRoute(fmt.Sprintf("spec.http[%d]", i), &s.HTTP[i])
	}
	for i, r := range s.TLS {
		p := fmt.Sprintf("spec.tls[%d]", i)
		v.notImplemented(p)
		if len(r.Match) == 0 {
			v.errf(p+".match", "required")
		}
		for j, m := range r.Match {
			if len(m.SNIHosts) == 0 {
				v.errf(fmt.Sprintf("%s.match[%d].sniHosts", p, j), "required")
			}
		}
		v.routeDestinations(p, r.Route)
	}
	for i := range s.TCP {
		v.tcpRoute(fmt.Sprintf("spec.tcp[%d]", i), &s.TCP[i])
	}
}

// tcpRoute checks a tcp[] rule. Matches by port, sourceLabels,
// sourceNamespace and gateways are decided when a proxy is compiled; the
// subnets would need the connection's addresses, which an outbound
// listener per service does not discriminate on.
func (v *validator) tcpRoute(p string, r *TCPRoute) {
	for j, m := range r.Match {
		mp := fmt.Sprintf("%s.match[%d]", p, j)
		v.port(mp+".port", m.Port, false)
		if len(m.DestinationSubnets) > 0 {
			v.notImplemented(mp + ".destinationSubnets")
		}
		if m.SourceSubnet != "" {
			v.notImplemented(mp + ".sourceSubnet")
		}
		v.sourceNamespace(mp+".sourceNamespace", m.SourceNamespace)
	}
	v.routeDestinations(p, r.Route)
}

// routeDestinations checks TCP/TLS destinations and their weights.
func (v *validator) routeDestinations(p string, route []RouteDestination) {
	if len(route) == 0 {
		v.errf(p+".route", "required")
	}
	weights := make([]int32, len(route))
	for j, d := range route {
		v.destination(fmt.Sprintf("%s.route[%d].destination", p, j), &d.Destination)
		weights[j] = d.Weight
	}
	v.weights(p+".route", weights)
}

// weights checks each weight is 0..100 and, with more than one destination, that they sum to 100.
func (v *validator) weights(p string, weights []int32) {
	sum := 0
	ok := true
	for j, w := range weights {
		if w < 0 || w > 100 {
			v.errf(fmt.Sprintf("%s[%d].weight", p, j), "weight %d out of range, want 0..100", w)
			ok = false
		}
		sum += int(w)
	}
	if ok && len(weights) > 1 && sum != 100 {
		v.errf(fmt.Sprintf("%s[%d].weight", p, len(weights)-1), "weights sum to %d, want 100", sum)
	}
}

func (v *validator) destination(p string, d *Destination) {
	if d.Host == "" {
		v.errf(p+".host", "required")
	}
	if d.Subset != "" {
		v.label(p+".subset", d.Subset)
	}
	if d.Port != nil {
		v.port(p+".port.number", d.Port.Number, true)
	}
}

func (v *validator) httpRoute(p string, r *HTTPRoute) {
	for j := range r.Match {
		v.httpMatch(fmt.Sprintf("%s.match[%d]", p, j), &r.Match[j])
	}
	v.httpActions(p, r)
	weights := make([]int32, len(r.Route))
	for j := range r.Route {
		d := &r.Route[j]
		dp := fmt.Sprintf("%s.route[%d]", p, j)
		v.destination(dp+".destination", &d.Destination)
		v.headerOperations(dp+".headers", d.Headers)
		v.authorityOnce(dp, nil, d.Headers)
		weights[j] = d.Weight
	}
	v.weights(p+".route", weights)
	v.duration(p+".timeout", r.Timeout)
	v.headerOperations(p+".headers", r.Headers)
	v.authorityOnce(p, r.Rewrite, r.Headers)
	v.redirect(p+".redirect", r.Redirect)
	v.directResponse(p+".directResponse", r.DirectResponse)
	v.rewrite(p+".rewrite", r.Rewrite)
	v.retries(p+".retries", r.Retries)
	v.fault(p+".fault", r.Fault)
	v.mirrors(p, r)
	if r.Delegate != nil {
		v.notImplemented(p + ".delegate")
	}
	if c := r.CorsPolicy; c != nil {
		v.notImplemented(p + ".corsPolicy")
		for j := range c.AllowOrigins {
			v.stringMatch(fmt.Sprintf("%s.corsPolicy.allowOrigins[%d]", p, j), &c.AllowOrigins[j])
		}
		v.duration(p+".corsPolicy.maxAge", c.MaxAge)
	}
}

// httpActions checks that a rule has exactly one action (route, redirect,
// directResponse or delegate) and no field that contradicts it, as Istio's
// validation does.
func (v *validator) httpActions(p string, r *HTTPRoute) {
	route, redirect, direct, delegate := len(r.Route) > 0, r.Redirect != nil, r.DirectResponse != nil, r.Delegate != nil
	switch {
	case !route && !redirect && !direct && !delegate:
		v.errf(p, "one of route, redirect, directResponse or delegate is required")
	case route && redirect:
		v.errf(p, "route and redirect are mutually exclusive")
	case route && direct:
		v.errf(p, "route and directResponse are mutually exclusive")
	case redirect && direct:
		v.errf(p, "redirect and directResponse are mutually exclusive")
	case delegate && (route || redirect || direct):
		v.errf(p, "delegate is mutually exclusive with route, redirect and directResponse")
	}
	if redirect || direct {
		action := "redirect"
		if direct {
			action = "directResponse"
		}
		if r.Fault != nil {
			v.errf(p+".fault", "not allowed with %s", action)
		}
		if r.Rewrite != nil {
			v.errf(p+".rewrite", "not allowed with %s", action)
		}
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"timeout", r.Timeout != ""}, {"retries", r.Retries != nil}, {"mirror", r.Mirror != nil},
			{"mirrors", len(r.Mirrors) > 0}, {"mirrorPercentage", r.MirrorPercentage != nil}, {"mirrorPercent", r.MirrorPercent != nil},
		} {
			if f.set {
				v.warnf(p+"."+f.name, "has no effect with %s, ignored", action)
			}
		}
	}
	if r.Mirror != nil && len(r.Mirrors) > 0 {
		v.errf(p+".mirrors", "mirror and mirrors are mutually exclusive")
	}
}

func (v *validator) percent(p string, pc *Percent) {
	if pc != nil && (pc.Value < 0 || pc.Value > 100) {
		v.errf(p+".value", "%g out of range, want 0..100", pc.Value)
	}
}

// maxRegexLen is the longest regex Istio accepts (Envoy's RE2 program size limit, approximated).
const maxRegexLen = 1024

func (v *validator) regex(p, re string) {
	if len(re) > maxRegexLen {
		v.errf(p, "regex is %d characters long, longer than %d", len(re), maxRegexLen)
		return
	}
	if _, err := regexp.Compile(re); err != nil {
		v.errf(p, "invalid RE2 regex %q: %v", re, err)
	}
}

// stringMatch checks that at most one of exact, prefix and regex is set, and that the regex compiles.
func (v *validator) stringMatch(p string, m *StringMatch) {
	n := 0
	for _, s := range []string{m.Exact, m.Prefix, m.Regex} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		v.errf(p, "exactly one of exact, prefix and regex may be set")
	}
	if m.Regex != "" {
		v.regex(p+".regex", m.Regex)
	}
}

func (v *validator) sourceNamespace(p, ns string) {
	if ns != "" {
		v.label(p, ns)
	}
}

func (v *validator) httpMatch(p string, m *HTTPMatchRequest) {
	if m.URI != nil {
		v.stringMatch(p+".uri", m.URI)
	}
	for _, f := range []struct {
		name string
		m    *StringMatch
	}{{"scheme", m.Scheme}, {"method", m.Method}, {"authority", m.Authority}} {
		if f.m != nil {
			v.stringMatch(p+"."+f.name, f.m)
		}
	}
	for _, f := range []struct {
		name string
		m    map[string]StringMatch
	}{{"headers", m.Headers}, {"queryParams", m.QueryParams}, {"withoutHeaders", m.WithoutHeaders}} {
		for _, k := range sortedKeys(f.m) {
			sm := f.m[k]
			kp := keyPath(p+"."+f.name, k)
			if k == "" {
				v.errf(kp, "name must not be empty")
			}
			v.stringMatch(kp, &sm)
		}
	}
	v.port(p+".port", m.Port, false)
	v.sourceNamespace(p+".sourceNamespace", m.SourceNamespace)
	if len(m.Gateways) > 0 && !slices.Contains(m.Gateways, meshGateway) {
		v.warnf(p+".gateways", "names gateways only, which are not implemented: this match never applies to sidecars")
	}
	if m.StatPrefix != "" {
		v.notImplemented(p + ".statPrefix")
	}
}
