package proxy

import (
	"fmt"
	"slices"
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

// defaultMaxDirectResponseBody is Envoy's max_direct_response_body_size_bytes.
const defaultMaxDirectResponseBody = 4096

// translateRouteConfig turns an RDS RouteConfiguration into a routeTable.
func translateRouteConfig(rc *routev3.RouteConfiguration) (*routeTable, error) {
	return translateRouteConfigIn(rc, "rds:"+rc.GetName())
}

// routeScope is what the routes of one virtual host inherit.
type routeScope struct {
	scope        string // identity of the virtual host (rate limit buckets)
	reqLevels    []mutationLevel
	respLevels   []mutationLevel // virtual host then route configuration
	specificWins bool            // most_specific_header_mutations_wins
	vhFilters    []filterConfig
	maxBody      uint32
}

// translateRouteConfigIn translates a RouteConfiguration; scope identifies
// it (an RDS name, or the listener of an inline one). Only one virtual
// host, matching every authority ("*"), is supported.
func translateRouteConfigIn(rc *routev3.RouteConfiguration, scope string) (*routeTable, error) {
	vhs := rc.GetVirtualHosts()
	if len(vhs) != 1 {
		return nil, fmt.Errorf("virtual_hosts: %d virtual hosts, want exactly 1", len(vhs))
	}
	vh := vhs[0]
	if !slices.Contains(vh.GetDomains(), "*") {
		return nil, fmt.Errorf("virtual_hosts[0].domains: must contain \"*\"")
	}
	if vh.GetRequireTls() != routev3.VirtualHost_NONE || vh.GetRetryPolicy() != nil {
		return nil, fmt.Errorf("virtual_hosts[0]: require_tls/retry_policy not supported")
	}
	if len(vh.GetRequestMirrorPolicies()) > 0 {
		return nil, fmt.Errorf("virtual_hosts[0].request_mirror_policies: not supported (set them on routes)")
	}
	if len(rc.GetTypedPerFilterConfig()) > 0 {
		return nil, fmt.Errorf("typed_per_filter_config: not supported (set it on the virtual host or routes)")
	}
	cfgReq, err := translateHeaderLevel("request_headers_to_add", "request_headers_to_remove",
		headerConfig{add: rc.GetRequestHeadersToAdd(), remove: rc.GetRequestHeadersToRemove()})
	if err != nil {
		return nil, err
	}
	cfgResp, err := translateHeaderLevel("response_headers_to_add", "response_headers_to_remove",
		headerConfig{add: rc.GetResponseHeadersToAdd(), remove: rc.GetResponseHeadersToRemove()})
	if err != nil {
		return nil, err
	}
	vhReq, err := translateHeaderLevel("request_headers_to_add", "request_headers_to_remove",
		headerConfig{add: vh.GetRequestHeadersToAdd(), remove: vh.GetRequestHeadersToRemove()})
	if err != nil {
		return nil, fmt.Errorf("virtual_hosts[0].%w", err)
	}
	vhResp, err := translateHeaderLevel("response_headers_to_add", "response_headers_to_remove",
		headerConfig{add: vh.GetResponseHeadersToAdd(), remove: vh.GetResponseHeadersToRemove()})
	if err != nil {
		return nil, fmt.Errorf("virtual_hosts[0].%w", err)
	}
	rs := &routeScope{
		scope:        scope + "/" + vh.GetName(),
		reqLevels:    []mutationLevel{vhReq, cfgReq},
		respLevels:   []mutationLevel{vhResp, cfgResp},
		specificWins: rc.GetMostSpecificHeaderMutationsWins(),
		maxBody:      defaultMaxDirectResponseBody,
	}
	if v := rc.GetMaxDirectResponseBodySizeBytes(); v != nil {
		rs.maxBody = v.GetValue()
	}
	if rs.vhFilters, err = translatePerFilterConfigs(vh.GetTypedPerFilterConfig(), rs.scope); err != nil {
		return nil, fmt.Errorf("virtual_hosts[0].%w", err)
	}
	rt := &routeTable{name: rc.GetName()}
	for i, r := range vh.GetRoutes() {
		tr, err := translateRoute(r, rs, i)
		if err != nil {
			return nil, fmt.Errorf("virtual_hosts[0].routes[%d].%w", i, err)
		}
		rt.routes = append(rt.routes, tr)
	}
	return rt, nil
}

// mutation joins a route's level (after the weighted cluster's, if any)
// with the virtual host's and the route configuration's, in Envoy's order.
func (rs *routeScope) mutation(inherited []mutationLevel, wc *mutationLevel, own mutationLevel) *headerMutation {
	levels := make([]mutationLevel, 0, 4)
	if wc != nil {
		levels = append(levels, *wc) // always first, as Envoy's weighted cluster entry does
	}
	levels = append(levels, own)
	levels = append(levels, inherited...)
	if rs.specificWins {
		slices.Reverse(levels[len(levels)-len(inherited)-1:]) // configuration, vhost, route
	}
	return buildMutation(levels...)
}

func translateRoute(r *routev3.Route, rs *routeScope, index int) (*route, error) {
	m, err := translateMatch(r.GetMatch())
	if err != nil {
		return nil, fmt.Errorf("match.%w", err)
	}
	out := &route{match: m}
	out.name = r.GetName()
	id := out.name
	if id == "" {
		id = "#" + strconv.Itoa(index)
	}
	filters, err := translatePerFilterConfigs(r.GetTypedPerFilterConfig(), rs.scope+"/"+id)
	if err != nil {
		return nil, err
	}
	out.filters = append(filters, rs.vhFilters...)
	req, err := translateHeaderLevel("request_headers_to_add", "request_headers_to_remove",
		headerConfig{add: r.GetRequestHeadersToAdd(), remove: r.GetRequestHeadersToRemove()})
	if err != nil {
		return nil, err
	}
	resp, err := translateHeaderLevel("response_headers_to_add", "response_headers_to_remove",
		headerConfig{add: r.GetResponseHeadersToAdd(), remove: r.GetResponseHeadersToRemove()})
	if err != nil {
		return nil, err
	}
	out.reqHeaders = rs.mutation(rs.reqLevels, nil, req)
	out.respHeaders = rs.mutation(rs.respLevels, nil, resp)
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		if err := translateRouteAction(a.Route, out, rs, req, resp); err != nil {
			return nil, fmt.Errorf("route.%w", err)
		}
	case *routev3.Route_Redirect:
		l, err := translateRedirect(a.Redirect)
		if err != nil {
			return nil, fmt.Errorf("redirect.%w", err)
		}
		out.local = l
	case *routev3.Route_DirectResponse:
		l, err := translateDirectResponse(a.DirectResponse, rs.maxBody)
		if err != nil {
			return nil, fmt.Errorf("direct_response.%w", err)
		}
		out.local = l
	default:
		return nil, fmt.Errorf("action: %T not supported, want route, redirect or direct_response", r.GetAction())
	}
	return out, nil
}

func translateRouteAction(a *routev3.RouteAction, out *route, rs *routeScope, req, resp mutationLevel) error {
	var err error
	if out.retry, err = retry.Translate(a.GetRetryPolicy()); err != nil {
		return fmt.Errorf("retry_policy.%w", err)
	}
	if a.GetRetryPolicyTypedConfig() != nil {
		return fmt.Errorf("retry_policy_typed_config: not supported")
	}
	if out.hash, err = lb.TranslateHashPolicy(a.GetHashPolicy()); err != nil {
		return err
	}
	if a.GetPathRewritePolicy() != nil || a.GetPathRewrite() != "" {
		return fmt.Errorf("path_rewrite_policy/path_rewrite: not supported")
	}
	if d := a.GetTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return fmt.Errorf("timeout: invalid duration")
		}
		out.timeout = d.AsDuration()
	}
	rw, err := translatePathRewrite(a.GetPrefixRewrite(), a.GetRegexRewrite())
	if err != nil {
		return err
	}
	out.rewrite = rw
	switch h := a.GetHostRewriteSpecifier().(type) {
	case nil:
	case *routev3.RouteAction_HostRewriteLiteral:
		if out.hostRewrite, err = hostLine(h.HostRewriteLiteral); err != nil {
			return fmt.Errorf("host_rewrite_literal: %w", err)
		}
	default:
		return fmt.Errorf("host_rewrite_specifier: %T not supported, want host_rewrite_literal", h)
	}
	for i, mp := range a.GetRequestMirrorPolicies() {
		p, err := translateMirrorPolicy(mp)
		if err != nil {
			return fmt.Errorf("request_mirror_policies[%d].%w", i, err)
		}
		out.mirrors = append(out.mirrors, p)
	}
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return fmt.Errorf("cluster: empty")
		}
		out.cluster = cs.Cluster
	case *routev3.RouteAction_WeightedClusters:
		wc, err := translateWeighted(cs.WeightedClusters)
		if err != nil {
			return fmt.Errorf("weighted_clusters.%w", err)
		}
		out.weighted = wc
		if err := translateWeightedHeaders(cs.WeightedClusters, out, rs, req, resp); err != nil {
			return fmt.Errorf("weighted_clusters.%w", err)
		}
	default:
		return fmt.Errorf("cluster_specifier: %T not supported, want cluster or weighted_clusters", cs)
	}
	return nil
}

// translateWeightedHeaders gives each weighted cluster entry its own
// mutation when any entry has headers or a host rewrite.
func translateWeightedHeaders(w *routev3.WeightedCluster, out *route, rs *routeScope, req, resp mutationLevel) error {
	used := false
	wcs := make([]wcMutation, len(w.GetClusters()))
	for i, c := range w.GetClusters() {
		creq, err := translateHeaderLevel("request_headers_to_add", "request_headers_to_remove",
			headerConfig{add: c.GetRequestHeadersToAdd(), remove: c.GetRequestHeadersToRemove()})
		if err != nil {
			return fmt.Errorf("clusters[%d].%w", i, err)
		}
		cresp, err := translateHeaderLevel("response_headers_to_add", "response_headers_to_remove",
			headerConfig{add: c.GetResponseHeadersToAdd(), remove: c.GetResponseHeadersToRemove()})
		if err != nil {
			return fmt.Errorf("clusters[%d].%w", i, err)
		}
		var host *headerAdd
		if lit := c.GetHostRewriteLiteral(); lit != "" {
			if host, err = hostLine(lit); err != nil {
				return fmt.Errorf("clusters[%d].host_rewrite_literal: %w", i, err)
			}
		}
		if len(creq.add)+len(creq.remove)+len(cresp.add)+len(cresp.remove) > 0 || host != nil {
			used = true
		}
		wcs[i] = wcMutation{req: rs.mutation(rs.reqLevels, &creq, req), resp: rs.mutation(rs.respLevels, &cresp, resp), host: host}
	}
	if used {
		out.wcHeaders = wcs
	}
	return nil
}

func translateWeighted(w *routev3.WeightedCluster) (*weightedClusters, error) {
	if len(w.GetClusters()) == 0 {
		return nil, fmt.Errorf("clusters: empty")
	}
	if w.GetHeaderName() != "" || w.GetRandomValueSpecifier() != nil {
		return nil, fmt.Errorf("header_name/random_value_specifier: not supported")
	}
	wc := &weightedClusters{}
	var sum uint64
	for i, c := range w.GetClusters() {
		if c.GetName() == "" {
			return nil, fmt.Errorf("clusters[%d].name: empty", i)
		}
		if len(c.GetTypedPerFilterConfig()) > 0 || c.GetClusterHeader() != "" {
			return nil, fmt.Errorf("clusters[%d]: typed_per_filter_config/cluster_header not supported", i)
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

// hostLine validates a literal authority and returns it as a Host line.
func hostLine(host string) (*headerAdd, error) {
	if host == "" {
		return nil, fmt.Errorf("empty")
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c == 0x7f || c == '/' || c == '?' || c == '#' || c == '@' {
			return nil, fmt.Errorf("%q is not a valid authority", host)
		}
	}
	return &headerAdd{name: "Host", value: host, line: []byte("Host: " + host + "\r\n"), action: overwriteIfExistsOrAdd}, nil
}
