package compile

import (
	"fmt"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

const (
	// meshGateway is the gateway name that binds a VirtualService (or one
	// of its matches) to sidecars.
	meshGateway = "mesh"
	// defaultRouteName names the route of a service without VirtualService, as Istio does.
	defaultRouteName = "default"
)

// httpRoutes is the RouteConfiguration of an outbound HTTP listener and
// what the listener needs to know about it.
type httpRoutes struct {
	config  *routev3.RouteConfiguration
	reached []target // service ports its routes and mirrors send to
	fault   bool     // some route configures the fault filter
}

// routeConfig builds the RouteConfiguration of an outbound HTTP listener,
// as Istio builds a sidecar's. Without a VirtualService (or when none of its
// http[] rules applies to this proxy and port) everything goes to the whole
// service on the default route; with one, its rules apply in order, one
// route per match, and a request no route matches gets a 404. A rule's
// match applies only when its port (if set) is this port, and its
// sourceLabels and sourceNamespace (or, when it names gateways, "mesh")
// select this proxy.
func (c *compiler) routeConfig(name string, svc model.ServiceRef, port uint32) (httpRoutes, error) {
	vh := &routev3.VirtualHost{Name: name, Domains: []string{"*"}}
	out := httpRoutes{config: &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}}
	if vs := c.ix.virtualService(svc); vs != nil && appliesToSidecars(vs.Spec.Gateways) {
		if err := c.virtualServiceRoutes(&out, vh, vs, svc, port); err != nil {
			return out, fmt.Errorf("VirtualService %s: %w", vs.Key(), err)
		}
	}
	if len(vh.Routes) == 0 {
		r, err := c.defaultRoute(svc, port)
		if err != nil {
			return out, err
		}
		vh.Routes = []*routev3.Route{r}
	}
	for _, r := range vh.Routes {
		if dr := r.GetDirectResponse(); dr != nil && directResponseBodySize(dr) > envoyDirectResponseBodyLimit {
			out.config.MaxDirectResponseBodySizeBytes = wrapperspb.UInt32(maxDirectResponseBody)
		}
	}
	return out, nil
}

// virtualServiceRoutes adds the routes of vs's http[] rules that apply to
// this proxy and port.
func (c *compiler) virtualServiceRoutes(out *httpRoutes, vh *routev3.VirtualHost, vs *model.VirtualService, svc model.ServiceRef, port uint32) error {
	for i := range vs.Spec.HTTP {
		rule := &vs.Spec.HTTP[i]
		if rule.Delegate != nil {
			continue // not implemented (Validate warns)
		}
		matches := c.applicableMatches(rule.Match, port)
		if len(matches) == 0 {
			continue
		}
		tmpl, reached, err := c.ruleRoute(vs, svc, port, rule)
		if err != nil {
			return fmt.Errorf("http[%d]: %w", i, err)
		}
		if tmpl == nil {
			continue // an action Validate rejects
		}
		out.reached = append(out.reached, reached...)
		if _, ok := tmpl.TypedPerFilterConfig[faultFilter]; ok {
			out.fault = true
		}
		for _, j := range matches {
			var m *model.HTTPMatchRequest
			if j >= 0 {
				m = &rule.Match[j]
			}
			vh.Routes = append(vh.Routes, &routev3.Route{
				Name:                    routeName(vs, i, j, rule.Name, m),
				Match:                   routeMatch(m),
				Action:                  tmpl.Action,
				RequestHeadersToAdd:     tmpl.RequestHeadersToAdd,
				RequestHeadersToRemove:  tmpl.RequestHeadersToRemove,
				ResponseHeadersToAdd:    tmpl.ResponseHeadersToAdd,
				ResponseHeadersToRemove: tmpl.ResponseHeadersToRemove,
				TypedPerFilterConfig:    tmpl.TypedPerFilterConfig,
			})
		}
	}
	return nil
}

// applicableMatches returns the indexes of the matches that apply to this
// proxy and port; [-1] for a rule without matches (it matches everything).
func (c *compiler) applicableMatches(matches []model.HTTPMatchRequest, port uint32) []int {
	if len(matches) == 0 {
		return []int{-1}
	}
	var out []int
	for j := range matches {
		if c.httpMatchApplies(&matches[j], port) {
			out = append(out, j)
		}
	}
	return out
}

// httpMatchApplies decides the compile-time part of a match as Istio's
// translateRoute and sourceMatchHTTP do: the port, then either the gateways
// (when set, only "mesh" selects sidecars) or the source labels and namespace.
func (c *compiler) httpMatchApplies(m *model.HTTPMatchRequest, port uint32) bool {
	if m.Port != 0 && m.Port != port {
		return false
	}
	if len(m.Gateways) > 0 {
		return slices.Contains(m.Gateways, meshGateway)
	}
	return c.fromSource(m.SourceLabels, m.SourceNamespace)
}

// fromSource reports whether this proxy's workload carries the labels and
// is in the namespace (when set).
func (c *compiler) fromSource(labels map[string]string, namespace string) bool {
	return hasLabels(c.self.Spec.Labels, labels) && (namespace == "" || namespace == c.self.NamespaceOrDefault())
}

// appliesToSidecars reports whether a VirtualService bound to gateways
// applies to sidecars: with no gateways, or with "mesh" among them.
func appliesToSidecars(gateways []string) bool {
	return len(gateways) == 0 || slices.Contains(gateways, meshGateway)
}

// routeName names a generated route after its rule and match; j is -1 for
// a rule without matches.
func routeName(vs *model.VirtualService, i, j int, rule string, m *model.HTTPMatchRequest) string {
	n := fmt.Sprintf("%s.http[%d]", vs.Key().Name, i)
	if j >= 0 {
		n += fmt.Sprintf(".match[%d]", j)
	}
	if rule != "" {
		n += " " + rule
	}
	if m != nil && m.Name != "" {
		n += " " + m.Name
	}
	return n
}

// defaultRoute sends everything to the whole service, with Istio's default
// retry policy, no timeout, and the hash policy of the service's
// DestinationRule, as Istio's BuildDefaultHTTPOutboundRoute does.
func (c *compiler) defaultRoute(svc model.ServiceRef, port uint32) (*routev3.Route, error) {
	rp, err := retryPolicy(nil, false)
	if err != nil {
		return nil, err
	}
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(port, "", svc.Name)},
		Timeout:          duration(0),
		RetryPolicy:      rp,
		HashPolicy:       appendHashPolicy(nil, c.ix.hashPolicy(target{svc: svc, port: port}, "")),
	}
	return &routev3.Route{Name: defaultRouteName, Match: routeMatch(nil), Action: &routev3.Route_Route{Route: action}}, nil
}
