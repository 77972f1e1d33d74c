package compile

import (
	"fmt"
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// routeConfig builds the RouteConfiguration of an outbound HTTP listener and
// returns the other service ports its routes reach. Without a
// VirtualService everything goes to the whole service; with one, its http[]
// rules apply in order and a request no rule matches gets a 404.
func (c *compiler) routeConfig(name string, svc model.ServiceRef, port uint32) (*routev3.RouteConfiguration, []target) {
	vh := &routev3.VirtualHost{Name: name, Domains: []string{"*"}}
	rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}
	vs := c.ix.virtualService(svc)
	if vs == nil {
		vh.Routes = []*routev3.Route{prefixRoute(ClusterName(port, "", svc.Name))}
		return rc, nil
	}
	var reached []target
	for i, rule := range vs.Spec.HTTP {
		if len(rule.Route) == 0 {
			continue // redirect, directResponse, delegate: not implemented yet (Validate warns)
		}
		action, targets := c.routeAction(vs, svc, port, rule)
		reached = append(reached, targets...)
		matches := rule.Match
		if len(matches) == 0 {
			matches = []model.HTTPMatchRequest{{}}
		}
		for j := range matches {
			vh.Routes = append(vh.Routes, &routev3.Route{
				Name:   routeName(vs, i, j, rule.Name, matches[j].Name),
				Match:  routeMatch(&matches[j]),
				Action: &routev3.Route_Route{Route: action},
			})
		}
	}
	return rc, reached
}

// routeName names a generated route after its rule and match.
func routeName(vs *model.VirtualService, i, j int, rule, match string) string {
	n := fmt.Sprintf("%s.http[%d].match[%d]", vs.Key().Name, i, j)
	if rule != "" {
		n += " " + rule
	}
	if match != "" {
		n += " " + match
	}
	return n
}

// routeAction turns a rule's destinations into a cluster or weighted clusters.
func (c *compiler) routeAction(vs *model.VirtualService, svc model.ServiceRef, port uint32, rule model.HTTPRoute) (*routev3.RouteAction, []target) {
	type weighted struct {
		cluster string
		weight  uint32
	}
	var dests []weighted
	var reached []target
	for _, d := range rule.Route {
		t := model.ResolveHost(d.Destination.Host, vs.NamespaceOrDefault())
		p := port
		switch {
		case d.Destination.Port != nil && d.Destination.Port.Number != 0:
			p = d.Destination.Port.Number
		case t != svc:
			p = c.ix.firstPort(t)
		}
		if t != svc || p != port {
			reached = append(reached, target{svc: t, port: p})
		}
		w := uint32(0)
		if d.Weight > 0 {
			w = uint32(d.Weight)
		}
		dests = append(dests, weighted{cluster: ClusterName(p, d.Destination.Subset, t.Name), weight: w})
	}
	action := &routev3.RouteAction{}
	if rule.Timeout != "" {
		if d, err := model.ParseDuration(rule.Timeout); err == nil {
			action.Timeout = duration(d)
		}
	}
	var live []weighted
	for _, d := range dests {
		if d.weight > 0 {
			live = append(live, d)
		}
	}
	if len(live) <= 1 {
		pick := dests[0]
		if len(live) == 1 {
			pick = live[0]
		}
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: pick.cluster}
		return action, reached
	}
	wc := &routev3.WeightedCluster{}
	for _, d := range live {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: d.cluster, Weight: wrapperspb.UInt32(d.weight)})
	}
	action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	return action, reached
}

// routeMatch turns one HTTPMatchRequest into an Envoy match: uri → path,
// prefix or safe_regex; headers → header matchers; ignoreUriCase →
// case_sensitive false.
func routeMatch(m *model.HTTPMatchRequest) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if u := m.URI; u != nil {
		switch {
		case u.Exact != "":
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
		case u.Prefix != "":
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
		case u.Regex != "":
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
		}
	}
	if m.IgnoreURICase {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	names := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.Headers[k]))
	}
	return rm
}

func headerMatcher(name string, sm model.StringMatch) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: name}
	var s *matcherv3.StringMatcher
	switch {
	case sm.Exact != "":
		s = exactMatcher(sm.Exact)
	case sm.Prefix != "":
		s = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: sm.Prefix}}
	case sm.Regex != "":
		s = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: sm.Regex}}}
	}
	if s == nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	} else {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: s}
	}
	return hm
}

func exactMatcher(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}
