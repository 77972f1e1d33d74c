package model

import (
	"fmt"
	"regexp"
	"slices"
)

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
	if len(s.Gateways) > 0 && !(len(s.Gateways) == 1 && s.Gateways[0] == "mesh") {
		v.warnf("spec.gateways", "gateways other than \"mesh\" are not implemented yet, ignored")
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
	for i, r := range s.TCP {
		p := fmt.Sprintf("spec.tcp[%d]", i)
		v.notImplemented(p)
		for j, m := range r.Match {
			v.port(fmt.Sprintf("%s.match[%d].port", p, j), m.Port, false)
		}
		v.routeDestinations(p, r.Route)
	}
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
	switch {
	case len(r.Route) == 0 && r.Redirect == nil && r.DirectResponse == nil && r.Delegate == nil:
		v.errf(p, "one of route, redirect, directResponse or delegate is required")
	case len(r.Route) > 0 && r.Redirect != nil:
		v.errf(p, "route and redirect are mutually exclusive")
	case len(r.Route) > 0 && r.DirectResponse != nil:
		v.errf(p, "route and directResponse are mutually exclusive")
	case r.Redirect != nil && r.DirectResponse != nil:
		v.errf(p, "redirect and directResponse are mutually exclusive")
	}
	weights := make([]int32, len(r.Route))
	for j := range r.Route {
		d := &r.Route[j]
		dp := fmt.Sprintf("%s.route[%d]", p, j)
		v.destination(dp+".destination", &d.Destination)
		if d.Headers != nil {
			v.notImplemented(dp + ".headers")
		}
		weights[j] = d.Weight
	}
	v.weights(p+".route", weights)
	v.duration(p+".timeout", r.Timeout)
	v.httpExtras(p, r)
}

// httpExtras checks the parts of an HTTP rule the compiler does not act on yet.
func (v *validator) httpExtras(p string, r *HTTPRoute) {
	if r.Redirect != nil {
		v.notImplemented(p + ".redirect")
		if c := r.Redirect.RedirectCode; c != 0 && (c < 300 || c > 399) {
			v.errf(p+".redirect.redirectCode", "%d is not a redirect status (300..399)", c)
		}
		if d := r.Redirect.DerivePort; d != "" && d != "FROM_PROTOCOL_DEFAULT" && d != "FROM_REQUEST_PORT" {
			v.errf(p+".redirect.derivePort", "%q is not FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT", d)
		}
	}
	if r.DirectResponse != nil {
		v.notImplemented(p + ".directResponse")
		if s := r.DirectResponse.Status; s < 200 || s > 599 {
			v.errf(p+".directResponse.status", "%d is not an HTTP status (200..599)", s)
		}
	}
	if r.Delegate != nil {
		v.notImplemented(p + ".delegate")
	}
	if r.Rewrite != nil {
		v.notImplemented(p + ".rewrite")
		if rr := r.Rewrite.URIRegexRewrite; rr != nil {
			v.regex(p+".rewrite.uriRegexRewrite.match", rr.Match)
		}
	}
	if r.Retries != nil {
		v.notImplemented(p + ".retries")
		if r.Retries.Attempts < 0 {
			v.errf(p+".retries.attempts", "must not be negative")
		}
		v.duration(p+".retries.perTryTimeout", r.Retries.PerTryTimeout)
		v.duration(p+".retries.backoff", r.Retries.Backoff)
	}
	if f := r.Fault; f != nil {
		v.notImplemented(p + ".fault")
		if f.Delay != nil {
			v.duration(p+".fault.delay.fixedDelay", f.Delay.FixedDelay)
			v.duration(p+".fault.delay.exponentialDelay", f.Delay.ExponentialDelay)
			v.percent(p+".fault.delay.percentage", f.Delay.Percentage)
		}
		if f.Abort != nil {
			v.percent(p+".fault.abort.percentage", f.Abort.Percentage)
			if s := f.Abort.HTTPStatus; s != 0 && (s < 200 || s > 599) {
				v.errf(p+".fault.abort.httpStatus", "%d is not an HTTP status (200..599)", s)
			}
		}
	}
	if r.Mirror != nil {
		v.notImplemented(p + ".mirror")
		v.destination(p+".mirror", r.Mirror)
	}
	for j := range r.Mirrors {
		mp := fmt.Sprintf("%s.mirrors[%d]", p, j)
		v.notImplemented(mp)
		v.destination(mp+".destination", &r.Mirrors[j].Destination)
		v.percent(mp+".percentage", r.Mirrors[j].Percentage)
	}
	if r.MirrorPercent != nil {
		v.notImplemented(p + ".mirrorPercent")
		if *r.MirrorPercent > 100 {
			v.errf(p+".mirrorPercent", "%d out of range, want 0..100", *r.MirrorPercent)
		}
	}
	if r.MirrorPercentage != nil {
		v.notImplemented(p + ".mirrorPercentage")
		v.percent(p+".mirrorPercentage", r.MirrorPercentage)
	}
	if c := r.CorsPolicy; c != nil {
		v.notImplemented(p + ".corsPolicy")
		for j := range c.AllowOrigins {
			v.stringMatch(fmt.Sprintf("%s.corsPolicy.allowOrigins[%d]", p, j), &c.AllowOrigins[j])
		}
		v.duration(p+".corsPolicy.maxAge", c.MaxAge)
	}
	if r.Headers != nil {
		v.notImplemented(p + ".headers")
	}
}

func (v *validator) percent(p string, pc *Percent) {
	if pc != nil && (pc.Value < 0 || pc.Value > 100) {
		v.errf(p+".value", "%g out of range, want 0..100", pc.Value)
	}
}

func (v *validator) regex(p, re string) {
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
			v.notImplemented(p + "." + f.name)
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
		if len(f.m) > 0 && f.name != "headers" {
			v.notImplemented(p + "." + f.name)
		}
	}
	v.port(p+".port", m.Port, false)
	if m.Port != 0 {
		v.notImplemented(p + ".port")
	}
	if len(m.SourceLabels) > 0 {
		v.notImplemented(p + ".sourceLabels")
	}
	if len(m.Gateways) > 0 {
		v.notImplemented(p + ".gateways")
	}
	if m.SourceNamespace != "" {
		v.notImplemented(p + ".sourceNamespace")
	}
	if m.StatPrefix != "" {
		v.notImplemented(p + ".statPrefix")
	}
}

var (
	lbSimple = []string{"UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"}
	tlsModes = []string{"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"}
)

func (v *validator) destinationRule(s *DestinationRuleSpec) {
	if s.Host == "" {
		v.errf("spec.host", "required")
	}
	v.trafficPolicy("spec.trafficPolicy", s.TrafficPolicy)
	names := map[string]int{}
	for i, sub := range s.Subsets {
		p := fmt.Sprintf("spec.subsets[%d]", i)
		v.label(p+".name", sub.Name)
		if j, dup := names[sub.Name]; dup && sub.Name != "" {
			v.errf(p+".name", "duplicate subset %q (also spec.subsets[%d])", sub.Name, j)
		} else {
			names[sub.Name] = i
		}
		v.trafficPolicy(p+".trafficPolicy", sub.TrafficPolicy)
	}
	if len(s.ExportTo) > 0 {
		v.notImplemented("spec.exportTo")
	}
	if s.WorkloadSelector != nil {
		v.notImplemented("spec.workloadSelector")
	}
}

func (v *validator) trafficPolicy(p string, tp *TrafficPolicy) {
	if tp == nil {
		return
	}
	v.policyParts(p, tp.LoadBalancer, tp.ConnectionPool, tp.OutlierDetection, tp.TLS)
	for i, pl := range tp.PortLevelSettings {
		pp := fmt.Sprintf("%s.portLevelSettings[%d]", p, i)
		v.notImplemented(pp)
		if pl.Port == nil {
			v.errf(pp+".port", "required")
		} else {
			v.port(pp+".port.number", pl.Port.Number, true)
		}
		v.policyParts(pp, pl.LoadBalancer, pl.ConnectionPool, pl.OutlierDetection, pl.TLS)
	}
	if tp.Tunnel != nil {
		v.notImplemented(p + ".tunnel")
	}
	if tp.ProxyProtocol != nil {
		v.notImplemented(p + ".proxyProtocol")
	}
}

func (v *validator) policyParts(p string, lb *LoadBalancerSettings, cp *ConnectionPoolSettings, od *OutlierDetection, tls *ClientTLSSettings) {
	if lb != nil {
		switch {
		case lb.Simple != "" && lb.ConsistentHash != nil:
			v.errf(p+".loadBalancer", "simple and consistentHash are mutually exclusive")
		case lb.Simple != "" && !slices.Contains(lbSimple, lb.Simple):
			v.errf(p+".loadBalancer.simple", "%q is not one of %v", lb.Simple, lbSimple)
		}
		if lb.Simple != "" && lb.Simple != "ROUND_ROBIN" && lb.Simple != "UNSPECIFIED" || lb.ConsistentHash != nil ||
			lb.LocalityLbSetting != nil || lb.Warmup != nil || lb.WarmupDurationSecs != "" {
			v.warnf(p+".loadBalancer", "only ROUND_ROBIN is implemented yet, ignored")
		}
		v.duration(p+".loadBalancer.warmupDurationSecs", lb.WarmupDurationSecs)
	}
	if cp != nil {
		v.notImplemented(p + ".connectionPool")
		if cp.TCP != nil {
			v.duration(p+".connectionPool.tcp.connectTimeout", cp.TCP.ConnectTimeout)
			v.duration(p+".connectionPool.tcp.idleTimeout", cp.TCP.IdleTimeout)
			v.duration(p+".connectionPool.tcp.maxConnectionDuration", cp.TCP.MaxConnectionDuration)
		}
		if cp.HTTP != nil {
			v.duration(p+".connectionPool.http.idleTimeout", cp.HTTP.IdleTimeout)
		}
	}
	if od != nil {
		v.notImplemented(p + ".outlierDetection")
		v.duration(p+".outlierDetection.interval", od.Interval)
		v.duration(p+".outlierDetection.baseEjectionTime", od.BaseEjectionTime)
		if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
			v.errf(p+".outlierDetection.maxEjectionPercent", "%d out of range, want 0..100", od.MaxEjectionPercent)
		}
		if od.MinHealthPercent < 0 || od.MinHealthPercent > 100 {
			v.errf(p+".outlierDetection.minHealthPercent", "%d out of range, want 0..100", od.MinHealthPercent)
		}
	}
	if tls != nil {
		if tls.Mode != "" && !slices.Contains(tlsModes, tls.Mode) {
			v.errf(p+".tls.mode", "%q is not one of %v", tls.Mode, tlsModes)
		}
		if tls.Mode != "ISTIO_MUTUAL" {
			v.warnf(p+".tls", "only ISTIO_MUTUAL is implemented (the mesh always uses mutual TLS), ignored")
		}
	}
}
