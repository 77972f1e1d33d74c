package compile

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// ruleRoute builds what every route of an http[] rule shares (all but the
// name and the match), as Istio's translateRoute does: the rule's header
// operations, its action (redirect, directResponse, or forwarding to its
// destinations) and its fault. It also returns the service ports the
// action sends to. It returns a nil route for an action Validate rejects.
func (c *compiler) ruleRoute(vs *model.VirtualService, svc model.ServiceRef, port uint32, rule *model.HTTPRoute) (*routev3.Route, []target, error) {
	ops := translateHeaders(rule.Headers)
	r := &routev3.Route{
		RequestHeadersToAdd:     ops.requestAdd,
		RequestHeadersToRemove:  ops.requestRemove,
		ResponseHeadersToAdd:    ops.responseAdd,
		ResponseHeadersToRemove: ops.responseRemove,
	}
	var reached []target
	switch {
	case rule.Redirect != nil:
		ra := redirectAction(rule.Redirect, port)
		if ra == nil {
			return nil, nil, nil
		}
		r.Action = &routev3.Route_Redirect{Redirect: ra}
	case rule.DirectResponse != nil:
		dr := directResponseAction(rule.DirectResponse)
		if dr == nil {
			return nil, nil, nil
		}
		r.Action = &routev3.Route_DirectResponse{DirectResponse: dr}
	case len(rule.Route) > 0:
		action, targets, err := c.forwardAction(vs, svc, port, rule, r, ops.authority)
		if err != nil {
			return nil, nil, err
		}
		r.Action = &routev3.Route_Route{Route: action}
		reached = targets
	default:
		return nil, nil, nil
	}
	if f := httpFault(rule.Fault); f != nil {
		a, err := toAny(f)
		if err != nil {
			return nil, nil, err
		}
		r.TypedPerFilterConfig = map[string]*anypb.Any{faultFilter: a}
	}
	return r, reached, nil
}

// dest is one destination of a rule, resolved to its cluster.
type dest struct {
	target  target
	subset  string
	cluster string
	weight  uint32
	headers *model.Headers
}

// resolve names the cluster of a destination. Without a port it is the
// listener's port for the service itself, the target's first port for
// another service.
func (c *compiler) resolve(vs *model.VirtualService, svc model.ServiceRef, port uint32, d *model.Destination) dest {
	t := model.ResolveHost(d.Host, vs.NamespaceOrDefault())
	p := port
	switch {
	case d.Port != nil && d.Port.Number != 0:
		p = d.Port.Number
	case t != svc:
		p = c.ix.firstPort(t)
	}
	return dest{target: target{svc: t, port: p}, subset: d.Subset, cluster: ClusterName(p, d.Subset, t.Name)}
}

// liveDests drops destinations of weight 0; when none has a weight, the
// first destination alone is live (a single destination needs none).
func liveDests(ds []dest) []dest {
	var live []dest
	for _, d := range ds {
		if d.weight > 0 {
			live = append(live, d)
		}
	}
	if len(live) == 0 && len(ds) > 0 {
		live = ds[:1]
	}
	return live
}

// forwardAction is the RouteAction of a rule with destinations, as Istio's
// applyHTTPRouteDestination makes it: timeout (none unless set), rewrites,
// mirrors, the cluster or weighted clusters with their destinations' header
// operations, the destinations' hash policies, and the retry policy. A
// single destination's header operations go on the route r, after the
// rule's; its authority rewrite applies unless the rule already rewrites it.
func (c *compiler) forwardAction(vs *model.VirtualService, svc model.ServiceRef, port uint32, rule *model.HTTPRoute, r *routev3.Route, authority string) (*routev3.RouteAction, []target, error) {
	action := &routev3.RouteAction{Timeout: duration(0)}
	if d, ok := parseDuration(rule.Timeout); ok {
		action.Timeout = duration(d)
	}
	if rw := rule.Rewrite; rw != nil {
		switch {
		case rw.URIRegexRewrite != nil:
			action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
				Pattern:      &matcherv3.RegexMatcher{Regex: rw.URIRegexRewrite.Match},
				Substitution: rw.URIRegexRewrite.Rewrite,
			}
		case rw.URI != "":
			action.PrefixRewrite = rw.URI
		}
		if rw.Authority != "" {
			authority = rw.Authority
		}
	}
	if authority != "" {
		action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: authority}
	}
	mirrors, reached := c.mirrorPolicies(vs, svc, port, rule)
	action.RequestMirrorPolicies = mirrors

	dests := make([]dest, len(rule.Route))
	for i := range rule.Route {
		rd := &rule.Route[i]
		dests[i] = c.resolve(vs, svc, port, &rd.Destination)
		dests[i].headers = rd.Headers
		if rd.Weight > 0 {
			dests[i].weight = uint32(rd.Weight)
		}
		reached = append(reached, dests[i].target)
	}
	live := liveDests(dests)
	consistentHash := false
	if len(live) == 1 {
		d := live[0]
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: d.cluster}
		ops := translateHeaders(d.headers)
		r.RequestHeadersToAdd = append(r.RequestHeadersToAdd, ops.requestAdd...)
		r.RequestHeadersToRemove = append(r.RequestHeadersToRemove, ops.requestRemove...)
		r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, ops.responseAdd...)
		r.ResponseHeadersToRemove = append(r.ResponseHeadersToRemove, ops.responseRemove...)
		if ops.authority != "" && action.HostRewriteSpecifier == nil {
			action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: ops.authority}
		}
		hp := c.ix.hashPolicy(d.target, d.subset)
		action.HashPolicy = appendHashPolicy(nil, hp)
		consistentHash = hp != nil
	} else {
		wc := &routev3.WeightedCluster{}
		for _, d := range live {
			ops := translateHeaders(d.headers)
			cw := &routev3.WeightedCluster_ClusterWeight{
				Name:                    d.cluster,
				Weight:                  wrapperspb.UInt32(d.weight),
				RequestHeadersToAdd:     ops.requestAdd,
				RequestHeadersToRemove:  ops.requestRemove,
				ResponseHeadersToAdd:    ops.responseAdd,
				ResponseHeadersToRemove: ops.responseRemove,
			}
			if ops.authority != "" {
				cw.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: ops.authority}
			}
			wc.Clusters = append(wc.Clusters, cw)
			action.HashPolicy = appendHashPolicy(action.HashPolicy, c.ix.hashPolicy(d.target, d.subset))
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	rp, err := retryPolicy(rule.Retries, consistentHash)
	if err != nil {
		return nil, nil, err
	}
	action.RetryPolicy = rp
	return action, reached, nil
}

// mirrorPolicies translates mirror (with mirrorPercentage, or the
// deprecated mirrorPercent) and mirrors[] into request mirror policies, as
// Istio does: 100% unless a percentage is given, none for 0%.
func (c *compiler) mirrorPolicies(vs *model.VirtualService, svc model.ServiceRef, port uint32, rule *model.HTTPRoute) ([]*routev3.RouteAction_RequestMirrorPolicy, []target) {
	var out []*routev3.RouteAction_RequestMirrorPolicy
	var reached []target
	add := func(d *model.Destination, fraction *typev3.FractionalPercent) {
		if fraction == nil {
			return
		}
		rd := c.resolve(vs, svc, port, d)
		out = append(out, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster:         rd.cluster,
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: fraction},
		})
		reached = append(reached, rd.target)
	}
	if rule.Mirror != nil {
		add(rule.Mirror, mirrorFraction(rule.MirrorPercentage, rule.MirrorPercent))
	}
	for i := range rule.Mirrors {
		add(&rule.Mirrors[i].Destination, mirrorFraction(rule.Mirrors[i].Percentage, nil))
	}
	return out, reached
}

// mirrorFraction is the share of requests mirrored: the percentage, else
// the deprecated integer percent, else 100%; nil for 0%.
func mirrorFraction(p *model.Percent, deprecated *uint32) *typev3.FractionalPercent {
	percent := 100.0
	switch {
	case p != nil:
		percent = p.Value
	case deprecated != nil:
		percent = float64(*deprecated)
	}
	if percent <= 0 {
		return nil
	}
	return perMillion(percent)
}
