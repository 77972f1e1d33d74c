package proxy

import (
	"fmt"
	"net/textproto"
	"regexp"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// translateRouteConfig turns a RouteConfiguration into a routeTable. Only one
// virtual host, matching every authority ("*"), is supported.
func translateRouteConfig(rc *routev3.RouteConfiguration) (*routeTable, error) {
	vhs := rc.GetVirtualHosts()
	if len(vhs) != 1 {
		return nil, fmt.Errorf("virtual_hosts: %d virtual hosts, want exactly 1", len(vhs))
	}
	vh := vhs[0]
	if !slices.Contains(vh.GetDomains(), "*") {
		return nil, fmt.Errorf("virtual_hosts[0].domains: must contain \"*\"")
	}
	if vh.GetRequireTls() != routev3.VirtualHost_NONE || len(vh.GetRequestHeadersToAdd()) > 0 ||
		len(vh.GetResponseHeadersToAdd()) > 0 || vh.GetRetryPolicy() != nil || len(vh.GetTypedPerFilterConfig()) > 0 {
		return nil, fmt.Errorf("virtual_hosts[0]: require_tls/headers_to_add/retry_policy/typed_per_filter_config not supported")
	}
	if len(rc.GetRequestHeadersToAdd()) > 0 || len(rc.GetResponseHeadersToAdd()) > 0 {
		return nil, fmt.Errorf("request_headers_to_add/response_headers_to_add: not supported")
	}
	rt := &routeTable{name: rc.GetName()}
	for i, r := range vh.GetRoutes() {
		tr, err := translateRoute(r)
		if err != nil {
			return nil, fmt.Errorf("virtual_hosts[0].routes[%d].%w", i, err)
		}
		rt.routes = append(rt.routes, tr)
	}
	return rt, nil
}

func translateRoute(r *routev3.Route) (*route, error) {
	m, err := translateMatch(r.GetMatch())
	if err != nil {
		return nil, fmt.Errorf("match.%w", err)
	}
	if len(r.GetRequestHeadersToAdd()) > 0 || len(r.GetRequestHeadersToRemove()) > 0 ||
		len(r.GetResponseHeadersToAdd()) > 0 || len(r.GetResponseHeadersToRemove()) > 0 || len(r.GetTypedPerFilterConfig()) > 0 {
		return nil, fmt.Errorf("headers_to_add/remove, typed_per_filter_config: not supported")
	}
	ra, ok := r.GetAction().(*routev3.Route_Route)
	if !ok {
		return nil, fmt.Errorf("action: %T not supported, want route", r.GetAction())
	}
	a := ra.Route
	if a.GetPrefixRewrite() != "" || a.GetRegexRewrite() != nil || a.GetRetryPolicy() != nil ||
		len(a.GetRequestMirrorPolicies()) > 0 || len(a.GetHashPolicy()) > 0 || a.GetHostRewriteSpecifier() != nil {
		return nil, fmt.Errorf("route: prefix_rewrite/regex_rewrite/retry_policy/request_mirror_policies/hash_policy/host_rewrite not supported")
	}
	out := &route{match: m}
	if d := a.GetTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return nil, fmt.Errorf("route.timeout: invalid duration")
		}
		out.timeout = d.AsDuration()
	}
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return nil, fmt.Errorf("route.cluster: empty")
		}
		out.cluster = cs.Cluster
	case *routev3.RouteAction_WeightedClusters:
		wc, err := translateWeighted(cs.WeightedClusters)
		if err != nil {
			return nil, fmt.Errorf("route.weighted_clusters.%w", err)
		}
		out.weighted = wc
	default:
		return nil, fmt.Errorf("route.cluster_specifier: %T not supported, want cluster or weighted_clusters", cs)
	}
	return out, nil
}

func translateWeighted(w *routev3.WeightedCluster) (*weightedClusters, error) {
	if len(w.GetClusters()) == 0 {
		return nil, fmt.Errorf("clusters: empty")
	}
	wc := &weightedClusters{}
	var sum uint64
	for i, c := range w.GetClusters() {
		if c.GetName() == "" {
			return nil, fmt.Errorf("clusters[%d].name: empty", i)
		}
		if len(c.GetRequestHeadersToAdd()) > 0 || len(c.GetResponseHeadersToAdd()) > 0 || len(c.GetTypedPerFilterConfig()) > 0 {
			return nil, fmt.Errorf("clusters[%d]: headers_to_add/typed_per_filter_config not supported", i)
		}
		sum += uint64(c.GetWeight().GetValue())
		if sum > 1<<31 {
			return nil, fmt.Errorf("clusters[%d].weight: weights sum overflows", i)
		}
		wc.names = append(wc.names, c.GetName())
		wc.cumulative = append(wc.cumulative, uint32(sum))
	}
	if sum == 0 {
		return nil, fmt.Errorf("clusters: weights sum to 0, want > 0")
	}
	//nolint:staticcheck // total_weight is deprecated but still honoured when set.
	if tw := w.GetTotalWeight(); tw != nil && uint64(tw.GetValue()) != sum {
		return nil, fmt.Errorf("total_weight: %d, but weights sum to %d", tw.GetValue(), sum)
	}
	wc.total = uint32(sum)
	return wc, nil
}

func translateMatch(m *routev3.RouteMatch) (routeMatch, error) {
	rm := routeMatch{caseSensitive: true}
	if cs := m.GetCaseSensitive(); cs != nil {
		rm.caseSensitive = cs.GetValue()
	}
	if len(m.GetQueryParameters()) > 0 || m.GetGrpc() != nil || m.GetTlsContext() != nil ||
		len(m.GetDynamicMetadata()) > 0 || m.GetRuntimeFraction() != nil || len(m.GetFilterState()) > 0 || len(m.GetCookies()) > 0 {
		return rm, fmt.Errorf("query_parameters/grpc/tls_context/dynamic_metadata/runtime_fraction/filter_state/cookies: not supported")
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		rm.kind, rm.value = pathPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		rm.kind, rm.value = pathExact, ps.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileRegex(ps.SafeRegex, !rm.caseSensitive)
		if err != nil {
			return rm, fmt.Errorf("safe_regex.regex: %w", err)
		}
		rm.kind, rm.regex = pathRegex, re
	default:
		return rm, fmt.Errorf("path_specifier: %T not supported, want prefix, path or safe_regex", ps)
	}
	if !rm.caseSensitive {
		rm.value = strings.ToLower(rm.value)
	}
	for i, h := range m.GetHeaders() {
		hm, err := translateHeaderMatcher(h)
		if err != nil {
			return rm, fmt.Errorf("headers[%d].%w", i, err)
		}
		rm.headers = append(rm.headers, hm)
	}
	return rm, nil
}

// compileRegex compiles an RE2 regex that must match the whole input, as
// Envoy's safe_regex does.
func compileRegex(r *matcherv3.RegexMatcher, ignoreCase bool) (*regexp.Regexp, error) {
	expr := r.GetRegex()
	if expr == "" {
		return nil, fmt.Errorf("empty regex")
	}
	prefix := ""
	if ignoreCase {
		prefix = "(?i)"
	}
	re, err := regexp.Compile(prefix + "^(?:" + expr + ")$")
	if err != nil {
		return nil, fmt.Errorf("invalid RE2 %q: %w", expr, err)
	}
	return re, nil
}

func translateHeaderMatcher(h *routev3.HeaderMatcher) (headerMatcher, error) {
	hm := headerMatcher{invert: h.GetInvertMatch()}
	name := h.GetName()
	if name == "" {
		return hm, fmt.Errorf("name: empty")
	}
	if strings.HasPrefix(name, ":") {
		return hm, fmt.Errorf("name: pseudo-header %q not supported", name)
	}
	hm.name = textproto.CanonicalMIMEHeaderKey(name)
	if h.GetTreatMissingHeaderAsEmpty() {
		return hm, fmt.Errorf("treat_missing_header_as_empty: not supported")
	}
	// The deprecated specifiers are the string_match forms under other
	// names: translate them to a StringMatcher and handle one shape.
	var sm *matcherv3.StringMatcher
	field := "string_match"
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		sm, field = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s.ExactMatch}}, "exact_match"
	case *routev3.HeaderMatcher_PrefixMatch:
		sm, field = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s.PrefixMatch}}, "prefix_match"
	case *routev3.HeaderMatcher_SafeRegexMatch:
		sm, field = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: s.SafeRegexMatch}}, "safe_regex_match"
	case *routev3.HeaderMatcher_StringMatch:
		sm = s.StringMatch
	case *routev3.HeaderMatcher_PresentMatch:
		hm.kind = headerPresent
		if !s.PresentMatch {
			hm.invert = !hm.invert
		}
		return hm, nil
	default:
		return hm, fmt.Errorf("header_match_specifier: %T not supported", s)
	}
	if sm.GetIgnoreCase() {
		return hm, fmt.Errorf("%s.ignore_case: not supported", field)
	}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		hm.kind, hm.value = headerExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		hm.kind, hm.value = headerPrefix, p.Prefix
	case *matcherv3.StringMatcher_SafeRegex:
		hm.kind = headerRegex
		var err error
		if hm.regex, err = compileRegex(p.SafeRegex, false); err != nil {
			return hm, fmt.Errorf("%s.regex: %w", field, err)
		}
	default:
		return hm, fmt.Errorf("%s: %T not supported", field, p)
	}
	return hm, nil
}
