package model

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

var (
	// gatewayDuration is a Gateway API duration (GEP-2257).
	gatewayDuration = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)
	headerNameRegex = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")
	gatewayMethods  = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
	redirectCodes   = []int32{301, 302, 303, 307, 308}
)

// Istio's default retry count, used when a route asks for retries without a count.
const gatewayDefaultAttempts = 2

// gwParent is a Service a route attaches to, and the port when the
// parentRef names one.
type gwParent struct {
	svc  ServiceRef
	port uint32
}

// gwRank orders matches by Gateway API precedence: an Exact path, then the
// longest PathPrefix (RegularExpression after prefixes, by length, as in
// Istio: the spec leaves it to implementations), then a method, then the
// most headers, then the most query parameters.
type gwRank struct {
	pathType, pathLen, method, headers, query int
}

func (a gwRank) before(b gwRank) (before, tie bool) {
	for _, d := range [][2]int{{a.pathType, b.pathType}, {a.pathLen, b.pathLen}, {a.method, b.method}, {a.headers, b.headers}, {a.query, b.query}} {
		if d[0] != d[1] {
			return d[0] > d[1], false
		}
	}
	return false, true
}

// gwEntry is one match of one rule on one parent, as VirtualService rules
// (two for a PathPrefix other than "/": its exact path and its subtree).
type gwEntry struct {
	parent gwParent
	route  string // namespace/name, the tie-breaker after precedence
	rule   int
	match  int
	rank   gwRank
	rules  []HTTPRoute
}

// GatewayVirtualServices merges the HTTPRoutes attached to each Service
// into one VirtualService for it. Its rules are the routes' matches ordered
// by Gateway API precedence; ties go to the route first by namespace/name
// (Trellis keeps no creation time), then to rule and match order. A request
// no rule matches gets a 404, as Gateway API requires. Invalid routes are
// skipped. Hosts in skip (already routed with higher precedence) are left out.
func GatewayVirtualServices(routes []*GatewayHTTPRoute, skip func(ServiceRef) bool) []*VirtualService {
	var entries []gwEntry
	for _, r := range routes {
		v := &validator{doc: r.Key().String()}
		es := v.gatewayHTTPRoute(r)
		if len(v.errs) == 0 {
			entries = append(entries, es...)
		}
	}
	sort.SliceStable(entries, func(i, j int) bool {
		a, b := &entries[i], &entries[j]
		if before, tie := a.rank.before(b.rank); !tie {
			return before
		}
		if a.route != b.route {
			return a.route < b.route
		}
		if a.rule != b.rule {
			return a.rule < b.rule
		}
		return a.match < b.match
	})
	bySvc := map[ServiceRef]*VirtualService{}
	var out []*VirtualService
	for _, e := range entries {
		if skip != nil && skip(e.parent.svc) {
			continue
		}
		vs := bySvc[e.parent.svc]
		if vs == nil {
			vs = &VirtualService{
				TypeMeta: TypeMeta{APIVersion: IstioNetworkingVersions[len(IstioNetworkingVersions)-1], Kind: KindVirtualService},
				ObjectMeta: ObjectMeta{
					Name:        "httproute:" + e.parent.svc.Name,
					Namespace:   e.parent.svc.Namespace,
					Annotations: map[string]string{},
				},
				Spec: VirtualServiceSpec{Hosts: []string{e.parent.svc.Name + "." + e.parent.svc.Namespace}},
			}
			bySvc[e.parent.svc] = vs
			out = append(out, vs)
		}
		from := KindGatewayHTTPRoute + " " + e.route
		if cur := vs.Annotations[AnnotationConvertedFrom]; cur == "" {
			vs.Annotations[AnnotationConvertedFrom] = from
		} else if !slices.Contains(strings.Split(cur, ", "), from) {
			vs.Annotations[AnnotationConvertedFrom] = cur + ", " + from
		}
		vs.Spec.HTTP = append(vs.Spec.HTTP, e.rules...)
	}
	return out
}

// Parents returns the services the route attaches to (valid parentRefs only).
func (r *GatewayHTTPRoute) Parents() []ServiceRef {
	v := &validator{doc: r.Key().String()}
	var out []ServiceRef
	for _, p := range v.gwParents(r) {
		if !slices.Contains(out, p.svc) {
			out = append(out, p.svc)
		}
	}
	return out
}

// gatewayHTTPRoute checks a route and converts it into entries.
func (v *validator) gatewayHTTPRoute(r *GatewayHTTPRoute) []gwEntry {
	parents := v.gwParents(r)
	if len(r.Spec.Hostnames) > 0 {
		v.warnf("spec.hostnames", "ignored: a route attached to a Service matches the requests addressed to that Service")
	}
	if len(r.Spec.Rules) == 0 {
		v.errf("spec.rules", "required")
	}
	ns := r.NamespaceOrDefault()
	var out []gwEntry
	for i := range r.Spec.Rules {
		rule := &r.Spec.Rules[i]
		p := fmt.Sprintf("spec.rules[%d]", i)
		tmpl, prefixRewrite := v.gwRuleAction(p, ns, rule)
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []GatewayHTTPRouteMatch{{}}
		}
		if prefixRewrite != nil && (len(rule.Matches) != 1 || rule.Matches[0].Path == nil || pathType(rule.Matches[0].Path) != "PathPrefix") {
			v.errf(p+".matches", "a replacePrefixMatch rewrite needs exactly one PathPrefix match")
		}
		for j := range matches {
			mp := fmt.Sprintf("%s.matches[%d]", p, j)
			variants, rank := v.gwMatch(mp, &matches[j])
			name := rule.Name
			if name == "" {
				name = fmt.Sprintf("rules[%d]", i)
			}
			name = fmt.Sprintf("%s/%s %s.matches[%d]", ns, r.Name, name, j)
			for _, parent := range parents {
				e := gwEntry{parent: parent, route: ns + "/" + r.Name, rule: i, match: j, rank: rank}
				for _, vr := range variants {
					hr := tmpl
					hr.Name = name
					m := vr.match
					m.Port = parent.port
					hr.Match = []HTTPMatchRequest{m}
					if prefixRewrite != nil {
						hr.Rewrite = rewriteWithPrefix(hr.Rewrite, *prefixRewrite, vr.exact)
					}
					e.rules = append(e.rules, hr)
				}
				out = append(out, e)
			}
		}
	}
	return out
}

// rewriteWithPrefix sets the rewrite that replaces a PathPrefix's matched
// elements with repl: the exact path becomes repl itself ("/" when empty),
// the subtree keeps the rest after one "/" (Gateway API's table: "/foo/bar"
// with prefix "/foo" and "/xyz" gives "/xyz/bar", with "" gives "/bar").
func rewriteWithPrefix(rw *HTTPRewrite, repl string, exact bool) *HTTPRewrite {
	out := &HTTPRewrite{}
	if rw != nil {
		*out = *rw
	}
	base := strings.TrimRight(repl, "/")
	if exact {
		if base == "" {
			base = "/"
		}
		out.URI = base
	} else {
		out.URI = base + "/"
	}
	return out
}

func pathType(p *GatewayHTTPPathMatch) string {
	if p == nil || p.Type == "" {
		return "PathPrefix"
	}
	return p.Type
}

// gwParents checks parentRefs: Services of the route's namespace (GAMMA
// producer routes). Gateways and other namespaces are rejected.
func (v *validator) gwParents(r *GatewayHTTPRoute) []gwParent {
	if len(r.Spec.ParentRefs) == 0 {
		v.errf("spec.parentRefs", "required: attach the route to a Service (group \"\", kind Service)")
	}
	ns := r.NamespaceOrDefault()
	var out []gwParent
	for i, pr := range r.Spec.ParentRefs {
		p := fmt.Sprintf("spec.parentRefs[%d]", i)
		group, kind := "gateway.networking.k8s.io", "Gateway"
		if pr.Group != nil {
			group = *pr.Group
		}
		if pr.Kind != nil {
			kind = *pr.Kind
		}
		switch {
		case kind == "Gateway" && group == "gateway.networking.k8s.io":
			v.errf(p, "attached to Gateway %q: Trellis has no ingress gateway yet; attach the route to a Service (group \"\", kind Service)", pr.Name)
			continue
		case kind != "Service" || (group != "" && group != "core"):
			v.errf(p, "kind %q of group %q is not supported: attach the route to a Service (group \"\", kind Service)", kind, group)
			continue
		}
		v.label(p+".name", pr.Name)
		if pr.Namespace != "" && pr.Namespace != ns {
			v.errf(p+".namespace", "%q: a route for a Service of another namespace (a GAMMA consumer route) is not supported; put the route in namespace %q", pr.Namespace, pr.Namespace)
			continue
		}
		if pr.SectionName != "" {
			v.errf(p+".sectionName", "not supported: select the Service port with port")
		}
		v.port(p+".port", pr.Port, false)
		out = append(out, gwParent{svc: ServiceRef{Namespace: ns, Name: pr.Name}, port: pr.Port})
	}
	return out
}

// gwVariant is one VirtualService match of a Gateway API match.
type gwVariant struct {
	match HTTPMatchRequest
	exact bool // the exact-path half of a PathPrefix
}

// gwMatch converts a match into VirtualService matches and its precedence.
func (v *validator) gwMatch(p string, m *GatewayHTTPRouteMatch) ([]gwVariant, gwRank) {
	var base HTTPMatchRequest
	var rank gwRank
	seen := map[string]bool{}
	for i, h := range m.Headers {
		hp := fmt.Sprintf("%s.headers[%d]", p, i)
		name := strings.ToLower(h.Name)
		if !headerNameRegex.MatchString(h.Name) {
			v.errf(hp+".name", "%q is not an HTTP header name", h.Name)
			continue
		}
		if seen[name] {
			v.warnf(hp, "header %q is matched by an earlier entry: ignored, as Gateway API requires", h.Name)
			continue
		}
		seen[name] = true
		if sm, ok := v.gwStringMatch(hp, h); ok {
			if base.Headers == nil {
				base.Headers = map[string]StringMatch{}
			}
			base.Headers[name] = sm
			rank.headers++
		}
	}
	seen = map[string]bool{}
	for i, q := range m.QueryParams {
		qp := fmt.Sprintf("%s.queryParams[%d]", p, i)
		if q.Name == "" {
			v.errf(qp+".name", "required")
			continue
		}
		if seen[q.Name] {
			v.warnf(qp, "query parameter %q is matched by an earlier entry: ignored, as Gateway API requires", q.Name)
			continue
		}
		seen[q.Name] = true
		if sm, ok := v.gwStringMatch(qp, q); ok {
			if base.QueryParams == nil {
				base.QueryParams = map[string]StringMatch{}
			}
			base.QueryParams[q.Name] = sm
			rank.query++
		}
	}
	if m.Method != "" {
		if !slices.Contains(gatewayMethods, m.Method) {
			v.errf(p+".method", "%q is not one of %v", m.Method, gatewayMethods)
		}
		base.Method = &StringMatch{Exact: m.Method}
		rank.method = 1
	}
	value := "/"
	if m.Path != nil && m.Path.Value != nil {
		value = *m.Path.Value
	}
	pp := p + ".path"
	typ := pathType(m.Path)
	if typ == "Exact" || typ == "PathPrefix" {
		switch {
		case !strings.HasPrefix(value, "/"):
			v.errf(pp+".value", "%q must start with /", value)
		case strings.Contains(value, "//"):
			v.errf(pp+".value", "%q must not contain //", value)
		}
	}
	rank.pathLen = len(value)
	one := func(sm StringMatch, exact bool) gwVariant {
		m := base
		m.URI = &sm
		return gwVariant{match: m, exact: exact}
	}
	switch typ {
	case "Exact":
		rank.pathType = 3
		return []gwVariant{one(StringMatch{Exact: value}, true)}, rank
	case "PathPrefix":
		rank.pathType = 2
		trimmed := strings.TrimRight(value, "/")
		rank.pathLen = len(trimmed)
		if trimmed == "" {
			return []gwVariant{one(StringMatch{Prefix: "/"}, false)}, rank
		}
		return []gwVariant{one(StringMatch{Exact: trimmed}, true), one(StringMatch{Prefix: trimmed + "/"}, false)}, rank
	case "RegularExpression":
		rank.pathType = 1
		v.regex(pp+".value", value)
		return []gwVariant{one(StringMatch{Regex: value}, false)}, rank
	}
	v.errf(pp+".type", "%q is not Exact, PathPrefix or RegularExpression", typ)
	return nil, rank
}

// gwStringMatch converts a header or query parameter match.
func (v *validator) gwStringMatch(p string, h GatewayHTTPHeaderMatch) (StringMatch, bool) {
	if h.Value == "" {
		v.errf(p+".value", "required")
		return StringMatch{}, false
	}
	switch h.Type {
	case "", "Exact":
		return StringMatch{Exact: h.Value}, true
	case "RegularExpression":
		v.regex(p+".value", h.Value)
		return StringMatch{Regex: h.Value}, true
	}
	v.errf(p+".type", "%q is not Exact or RegularExpression", h.Type)
	return StringMatch{}, false
}
