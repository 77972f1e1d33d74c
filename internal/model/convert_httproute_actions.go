package model

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// gwRuleAction converts a rule's filters, backends, timeouts and retries
// into a VirtualService rule without matches. It returns the replacement of
// a URLRewrite replacePrefixMatch, which depends on the match.
func (v *validator) gwRuleAction(p, ns string, rule *GatewayHTTPRouteRule) (HTTPRoute, *string) {
	var hr HTTPRoute
	var prefixRewrite *string
	for i := range rule.Filters {
		fp := fmt.Sprintf("%s.filters[%d]", p, i)
		if pr := v.gwFilter(fp, ns, &rule.Filters[i], &hr, false); pr != nil {
			prefixRewrite = pr
		}
	}
	if hr.Redirect != nil && len(rule.BackendRefs) > 0 {
		v.errf(p+".backendRefs", "a RequestRedirect filter must not be used together with backendRefs")
	}
	if hr.Redirect != nil && hr.Rewrite != nil {
		v.errf(p+".filters", "RequestRedirect and URLRewrite may not be combined")
	}
	live := 0
	for i := range rule.BackendRefs {
		b := &rule.BackendRefs[i]
		bp := fmt.Sprintf("%s.backendRefs[%d]", p, i)
		d, ok := v.gwBackend(bp, ns, &b.GatewayBackendObjectRef)
		if !ok {
			continue
		}
		w := int32(1)
		if b.Weight != nil {
			w = *b.Weight
			if w < 0 || w > 1_000_000 {
				v.errf(bp+".weight", "%d out of range, want 0..1000000", w)
			}
		}
		if w > 0 {
			live++
		}
		rd := HTTPRouteDestination{Destination: d, Weight: w}
		for j := range b.Filters {
			var tmp HTTPRoute
			v.gwFilter(fmt.Sprintf("%s.filters[%d]", bp, j), ns, &b.Filters[j], &tmp, true)
			rd.Headers = tmp.Headers
		}
		hr.Route = append(hr.Route, rd)
	}
	if hr.Redirect == nil && live == 0 {
		// Nothing to forward to: Gateway API answers 500.
		hr.Route = nil
		hr.DirectResponse = &HTTPDirectResponse{Status: 500}
	}
	if len(rule.SessionPersistence) > 0 {
		v.errf(p+".sessionPersistence", "not supported: use a DestinationRule consistentHash")
	}
	v.gwTimeouts(p, rule, &hr)
	return hr, prefixRewrite
}

// gwBackend checks a Service reference and returns its destination.
func (v *validator) gwBackend(p, ns string, b *GatewayBackendObjectRef) (Destination, bool) {
	if (b.Group != nil && *b.Group != "" && *b.Group != "core") || (b.Kind != nil && *b.Kind != "Service") {
		v.errf(p, "only Services (group \"\", kind Service) are supported as backends")
		return Destination{}, false
	}
	if r := dnsLabel(b.Name); r != "" {
		v.errf(p+".name", "%s", r)
		return Destination{}, false
	}
	if b.Namespace != "" && b.Namespace != ns {
		v.errf(p+".namespace", "%q: a backend in another namespace needs a ReferenceGrant, which Trellis does not support", b.Namespace)
		return Destination{}, false
	}
	if b.Port == nil {
		v.errf(p+".port", "required for a Service backend")
		return Destination{}, false
	}
	v.port(p+".port", *b.Port, true)
	return Destination{Host: b.Name + "." + ns, Port: &PortSelector{Number: *b.Port}}, true
}

// gwFilter applies one filter to hr; it returns a replacePrefixMatch
// replacement. onBackend limits the filters to those a backendRef may carry.
func (v *validator) gwFilter(p, ns string, f *GatewayHTTPRouteFilter, hr *HTTPRoute, onBackend bool) *string {
	set := 0
	for _, x := range []bool{f.RequestHeaderModifier != nil, f.ResponseHeaderModifier != nil, f.RequestMirror != nil,
		f.RequestRedirect != nil, f.URLRewrite != nil, f.ExtensionRef != nil, f.CORS != nil} {
		if x {
			set++
		}
	}
	if set > 1 {
		v.errf(p, "exactly one filter configuration may be set, the one type names")
	}
	field := map[string]bool{
		"RequestHeaderModifier": f.RequestHeaderModifier != nil, "ResponseHeaderModifier": f.ResponseHeaderModifier != nil,
		"RequestMirror": f.RequestMirror != nil, "RequestRedirect": f.RequestRedirect != nil, "URLRewrite": f.URLRewrite != nil,
		"ExtensionRef": f.ExtensionRef != nil, "CORS": f.CORS != nil,
	}
	has, known := field[f.Type]
	switch {
	case !known:
		v.errf(p+".type", "%q is not a filter type (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, RequestRedirect, URLRewrite)", f.Type)
		return nil
	case !has:
		v.errf(p, "type %s needs its %s field", f.Type, lowerFirst(f.Type))
		return nil
	case f.Type == "ExtensionRef" || f.Type == "CORS":
		v.errf(p+".type", "%s filters are not supported", f.Type)
		return nil
	case onBackend && f.Type != "RequestHeaderModifier" && f.Type != "ResponseHeaderModifier":
		v.errf(p+".type", "%s is not supported on a backendRef: only header modifiers", f.Type)
		return nil
	}
	switch f.Type {
	case "RequestHeaderModifier":
		if hr.Headers == nil {
			hr.Headers = &Headers{}
		}
		hr.Headers.Request = v.gwHeaderOps(p+".requestHeaderModifier", f.RequestHeaderModifier)
	case "ResponseHeaderModifier":
		if hr.Headers == nil {
			hr.Headers = &Headers{}
		}
		hr.Headers.Response = v.gwHeaderOps(p+".responseHeaderModifier", f.ResponseHeaderModifier)
	case "RequestMirror":
		m := f.RequestMirror
		mp := p + ".requestMirror"
		d, ok := v.gwBackend(mp+".backendRef", ns, &m.BackendRef)
		if !ok {
			return nil
		}
		pct := 100.0
		switch {
		case m.Percent != nil && m.Fraction != nil:
			v.errf(mp, "percent and fraction are mutually exclusive")
		case m.Percent != nil:
			if *m.Percent < 0 || *m.Percent > 100 {
				v.errf(mp+".percent", "%d out of range, want 0..100", *m.Percent)
			}
			pct = float64(*m.Percent)
		case m.Fraction != nil:
			den := int32(100)
			if m.Fraction.Denominator != nil {
				den = *m.Fraction.Denominator
			}
			if den < 1 || m.Fraction.Numerator < 0 || m.Fraction.Numerator > den {
				v.errf(mp+".fraction", "want 0 <= numerator <= denominator, denominator >= 1")
				return nil
			}
			pct = float64(m.Fraction.Numerator) * 100 / float64(den)
		}
		hr.Mirrors = append(hr.Mirrors, HTTPMirrorPolicy{Destination: d, Percentage: &Percent{Value: pct}})
	case "RequestRedirect":
		return v.gwRedirect(p+".requestRedirect", f.RequestRedirect, hr)
	case "URLRewrite":
		u := f.URLRewrite
		rw := &HTTPRewrite{}
		if u.Hostname != nil {
			rw.Authority = *u.Hostname
		}
		hr.Rewrite = rw
		if u.Path != nil {
			full, prefix := v.gwPathModifier(p+".urlRewrite.path", u.Path)
			if full != nil {
				rw.URIRegexRewrite = &RegexRewrite{Match: "^/.*$", Rewrite: *full}
			}
			return prefix
		}
	}
	return nil
}

// gwRedirect converts a RequestRedirect (302 unless statusCode says otherwise).
func (v *validator) gwRedirect(p string, r *GatewayHTTPRequestRedirect, hr *HTTPRoute) *string {
	rd := &HTTPRedirect{RedirectCode: 302}
	if r.Scheme != nil {
		if *r.Scheme != "http" && *r.Scheme != "https" {
			v.errf(p+".scheme", "%q is not http or https", *r.Scheme)
		}
		rd.Scheme = *r.Scheme
		if r.Port == nil {
			rd.DerivePort = "FROM_PROTOCOL_DEFAULT" // the scheme's well-known port
		}
	}
	if r.Hostname != nil {
		rd.Authority = *r.Hostname
	}
	if r.Port != nil {
		v.port(p+".port", *r.Port, true)
		rd.Port = *r.Port
	}
	if r.StatusCode != nil {
		if !slices.Contains(redirectCodes, *r.StatusCode) {
			v.errf(p+".statusCode", "%d is not one of %v", *r.StatusCode, redirectCodes)
		}
		rd.RedirectCode = uint32(*r.StatusCode)
	}
	hr.Redirect = rd
	if r.Path != nil {
		full, prefix := v.gwPathModifier(p+".path", r.Path)
		if full != nil {
			rd.URI = *full
		}
		if prefix != nil {
			v.errf(p+".path.type", "ReplacePrefixMatch in a RequestRedirect is not supported yet; use ReplaceFullPath")
		}
	}
	return nil
}

// gwPathModifier returns a ReplaceFullPath or a ReplacePrefixMatch value.
func (v *validator) gwPathModifier(p string, m *GatewayHTTPPathModifier) (full, prefix *string) {
	switch m.Type {
	case "ReplaceFullPath":
		if m.ReplaceFullPath == nil {
			v.errf(p+".replaceFullPath", "required by type ReplaceFullPath")
			return nil, nil
		}
		if !strings.HasPrefix(*m.ReplaceFullPath, "/") {
			v.errf(p+".replaceFullPath", "%q must start with /", *m.ReplaceFullPath)
		}
		return m.ReplaceFullPath, nil
	case "ReplacePrefixMatch":
		if m.ReplacePrefixMatch == nil {
			v.errf(p+".replacePrefixMatch", "required by type ReplacePrefixMatch")
			return nil, nil
		}
		if r := *m.ReplacePrefixMatch; r != "" && !strings.HasPrefix(r, "/") {
			v.errf(p+".replacePrefixMatch", "%q must start with /", r)
		}
		return nil, m.ReplacePrefixMatch
	}
	v.errf(p+".type", "%q is not ReplaceFullPath or ReplacePrefixMatch", m.Type)
	return nil, nil
}

// gwHeaderOps converts a header modifier.
func (v *validator) gwHeaderOps(p string, f *GatewayHTTPHeaderFilter) *HeaderOperations {
	ops := &HeaderOperations{}
	for _, list := range []struct {
		name string
		hs   []GatewayHTTPHeader
		dst  *map[string]string
	}{{"set", f.Set, &ops.Set}, {"add", f.Add, &ops.Add}} {
		for i, h := range list.hs {
			if !headerNameRegex.MatchString(h.Name) {
				v.errf(fmt.Sprintf("%s.%s[%d].name", p, list.name, i), "%q is not an HTTP header name", h.Name)
				continue
			}
			if *list.dst == nil {
				*list.dst = map[string]string{}
			}
			(*list.dst)[strings.ToLower(h.Name)] = h.Value
		}
	}
	for i, h := range f.Remove {
		if !headerNameRegex.MatchString(h) {
			v.errf(fmt.Sprintf("%s.remove[%d]", p, i), "%q is not an HTTP header name", h)
			continue
		}
		ops.Remove = append(ops.Remove, strings.ToLower(h))
	}
	return ops
}

// gwTimeouts converts timeouts and retry. Without a retry stanza or a
// backendRequest timeout the mesh's default retries stay in force; with
// them, retries are on connection failures, refused streams, gRPC
// UNAVAILABLE and the listed codes (Istio's count, 2, unless attempts says),
// and backendRequest is the per-try timeout (the whole timeout without retries).
func (v *validator) gwTimeouts(p string, rule *GatewayHTTPRouteRule, hr *HTTPRoute) {
	var request, backend *Duration
	if t := rule.Timeouts; t != nil {
		request, backend = t.Request, t.BackendRequest
		v.gwDuration(p+".timeouts.request", request)
		v.gwDuration(p+".timeouts.backendRequest", backend)
		if request != nil && backend != nil && gatewayDuration.MatchString(string(*request)) && gatewayDuration.MatchString(string(*backend)) {
			rq, err1 := ParseDuration(*request)
			bk, err2 := ParseDuration(*backend)
			if err1 == nil && err2 == nil && rq != 0 && bk > rq {
				v.errf(p+".timeouts.backendRequest", "%s is longer than the request timeout %s", *backend, *request)
			}
		}
	}
	if request != nil {
		hr.Timeout = *request
	}
	r := rule.Retry
	if r == nil && backend == nil {
		return
	}
	// Gateway API: retry what the backend never processed (and the listed
	// codes), for any method.
	neverProcessed := []string{"connect-failure", "refused-stream", "unavailable"}
	retries := &HTTPRetry{Attempts: gatewayDefaultAttempts, RetryOn: strings.Join(neverProcessed, ",")}
	if r != nil {
		if r.Attempts != nil {
			if *r.Attempts < 0 {
				v.errf(p+".retry.attempts", "must not be negative")
			}
			retries.Attempts = *r.Attempts
		}
		on := slices.Clone(neverProcessed)
		for i, c := range r.Codes {
			if c < 400 || c > 599 {
				v.errf(fmt.Sprintf("%s.retry.codes[%d]", p, i), "%d out of range, want 400..599", c)
			}
			if i == 0 {
				on = append(on, "retriable-status-codes")
			}
			on = append(on, strconv.Itoa(int(c)))
		}
		retries.RetryOn = strings.Join(on, ",")
		if r.Backoff != nil {
			v.gwDuration(p+".retry.backoff", r.Backoff)
			retries.Backoff = *r.Backoff
		}
	}
	if backend != nil {
		if retries.Attempts == 0 {
			// One try: the backend request timeout bounds the whole request.
			if hr.Timeout == "" || hr.Timeout == "0s" || shorter(*backend, hr.Timeout) {
				hr.Timeout = *backend
			}
		} else {
			retries.PerTryTimeout = *backend
		}
	}
	hr.Retries = retries
}

func shorter(a, b Duration) bool {
	x, err1 := ParseDuration(a)
	y, err2 := ParseDuration(b)
	return err1 == nil && err2 == nil && x < y
}

// gwDuration checks a Gateway API duration (GEP-2257): "1h", "10s", "500ms", "1h30m".
func (v *validator) gwDuration(p string, d *Duration) {
	if d == nil {
		return
	}
	if !gatewayDuration.MatchString(string(*d)) {
		v.errf(p, "%q is not a Gateway API duration (e.g. \"10s\", \"500ms\", \"1h30m\")", string(*d))
	}
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	if s == "URLRewrite" {
		return "urlRewrite"
	}
	if s == "CORS" {
		return "cors"
	}
	return strings.ToLower(s[:1]) + s[1:]
}
