package compile

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// hashPolicy is the route hash policy for traffic to a cluster (service
// port, subset) whose DestinationRule policy in force (clusterPolicy, the
// one the cluster itself is built from) has loadBalancer.consistentHash:
// as Istio's consistentHashToHashPolicy, httpHeaderName → header,
// httpCookie → cookie (name, path, ttl: a cookie with a ttl is generated
// when the request has none), useSourceIp → connection_properties.source_ip,
// httpQueryParameterName → query_parameter. Nil otherwise.
func (ix *Index) hashPolicy(t target, subset string) *routev3.RouteAction_HashPolicy {
	lb := ix.clusterPolicy(t.svc, subset, t.port).LoadBalancer
	if lb == nil || lb.ConsistentHash == nil {
		return nil
	}
	ch := lb.ConsistentHash
	switch {
	case ch.HTTPHeaderName != "":
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: ch.HTTPHeaderName},
		}}
	case ch.HTTPCookie != nil:
		c := &routev3.RouteAction_HashPolicy_Cookie{Name: ch.HTTPCookie.Name, Path: ch.HTTPCookie.Path}
		if d, ok := parseDuration(ch.HTTPCookie.TTL); ok {
			c.Ttl = duration(d)
		}
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: c}}
	case ch.UseSourceIP:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
		}}
	case ch.HTTPQueryParameterName != "":
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: ch.HTTPQueryParameterName},
		}}
	}
	return nil
}

// appendHashPolicy adds hp to a route's hash policies unless it is nil or
// already there: Istio appends one per weighted destination, and
// destinations sharing a rule would repeat it.
func appendHashPolicy(list []*routev3.RouteAction_HashPolicy, hp *routev3.RouteAction_HashPolicy) []*routev3.RouteAction_HashPolicy {
	if hp == nil {
		return list
	}
	for _, h := range list {
		if proto.Equal(h, hp) {
			return list
		}
	}
	return append(list, hp)
}
