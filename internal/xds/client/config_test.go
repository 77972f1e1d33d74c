package client

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func response(t testing.TB, typeURL string, msgs ...proto.Message) *discoveryv3.DiscoveryResponse {
	t.Helper()
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: "v1", Nonce: "1"}
	for _, m := range msgs {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp
}

func rdsListener(t testing.TB, name, route string) *listenerv3.Listener {
	t.Helper()
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{
		Rds: &hcmv3.Rds{RouteConfigName: route},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Listener{Name: name, FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
	}}}}}
}

func edsCluster(name, service string) *clusterv3.Cluster {
	c := &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}
	if service != "" {
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{ServiceName: service}
	}
	return c
}

func accept(t *testing.T, a *accepted, resp *discoveryv3.DiscoveryResponse) {
	t.Helper()
	next, err := a.candidate(resp)
	if err != nil {
		t.Fatalf("candidate(%s): %v", resp.GetTypeUrl(), err)
	}
	a.commit(next, resp.GetVersionInfo(), true)
}

// acceptedSet decodes the accepted state as the handler would get it.
func acceptedSet(t *testing.T, a *accepted) *resources.Set {
	t.Helper()
	set, err := (&candidate{res: a.res}).set()
	if err != nil {
		t.Fatalf("decode accepted set: %v", err)
	}
	return set
}

func TestCandidateMergesAndFollowsReferences(t *testing.T) {
	a := newAccepted()
	accept(t, a, response(t, resources.ClusterType, edsCluster("a", ""), edsCluster("b", "b-svc"),
		&clusterv3.Cluster{Name: "static", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}))
	accept(t, a, response(t, resources.ListenerType, rdsListener(t, "l1", "r1"), rdsListener(t, "l2", "r2")))
	if diff := cmp.Diff([]string{"a", "b-svc"}, allRefs(a.res[resources.ClusterType])); diff != "" {
		t.Errorf("endpoint names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"r1", "r2"}, allRefs(a.res[resources.ListenerType])); diff != "" {
		t.Errorf("route names (-want +got):\n%s", diff)
	}
	if a.synced() {
		t.Error("synced before EDS and RDS arrived")
	}
	// EDS and RDS responses update by name.
	accept(t, a, response(t, resources.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "a"}))
	accept(t, a, response(t, resources.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "b-svc"}))
	accept(t, a, response(t, resources.RouteType, &routev3.RouteConfiguration{Name: "r1"}, &routev3.RouteConfiguration{Name: "r2"}))
	if set := acceptedSet(t, a); len(set.Endpoints) != 2 || len(set.Routes) != 2 || len(set.Clusters) != 3 || len(set.Listeners) != 2 || !a.synced() {
		t.Fatalf("endpoints %v, routes %v, synced %v", resources.SortedKeys(set.Endpoints), resources.SortedKeys(set.Routes), a.synced())
	}
	// Dropping cluster a and listener l2 drops what only they referenced.
	accept(t, a, response(t, resources.ClusterType, edsCluster("b", "b-svc")))
	accept(t, a, response(t, resources.ListenerType, rdsListener(t, "l1", "r1")))
	set := acceptedSet(t, a)
	if got := resources.SortedKeys(set.Endpoints); !cmp.Equal([]string{"b-svc"}, got) {
		t.Errorf("endpoints after CDS change = %v", got)
	}
	if got := resources.SortedKeys(set.Routes); !cmp.Equal([]string{"r1"}, got) {
		t.Errorf("routes after LDS change = %v", got)
	}
}

func TestRouteNamesOfListener(t *testing.T) {
	hcm := func(route string) *listenerv3.Filter {
		return rdsListener(t, "x", route).GetFilterChains()[0].GetFilters()[0]
	}
	l := &listenerv3.Listener{
		Name: "l",
		FilterChains: []*listenerv3.FilterChain{
			{Filters: []*listenerv3.Filter{hcm("r2"), {Name: "tcp"}}},
			{Filters: []*listenerv3.Filter{hcm("r1"), hcm("r2")}},
		},
		DefaultFilterChain: &listenerv3.FilterChain{Filters: []*listenerv3.Filter{hcm("r3")}},
	}
	got, err := routeNames(l)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"r1", "r2", "r3"}, got); diff != "" {
		t.Errorf("routeNames (-want +got):\n%s", diff)
	}
}

// TestChanged: a response is delivered only when it changes the set, by
// content: a different encoding of the same resources is no change.
func TestChanged(t *testing.T) {
	base := func() *accepted {
		a := newAccepted()
		accept(t, a, response(t, resources.ClusterType, edsCluster("a", ""), edsCluster("b", "")))
		accept(t, a, response(t, resources.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "a"}))
		return a
	}
	// The same cluster, encoded with its fields in another order: protobuf
	// decoders accept any order, so the bytes differ and the content does not.
	reordered := func(t *testing.T) *discoveryv3.DiscoveryResponse {
		resp := response(t, resources.ClusterType, edsCluster("a", ""), edsCluster("b", ""))
		c := edsCluster("b", "")
		c.Name = ""
		rest, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		name, err := proto.Marshal(&clusterv3.Cluster{Name: "b"})
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources[1].Value = append(rest, name...)
		return resp
	}
	cases := map[string]struct {
		resp func(t *testing.T) *discoveryv3.DiscoveryResponse
		want bool
	}{
		"same bytes": {func(t *testing.T) *discoveryv3.DiscoveryResponse {
			return response(t, resources.ClusterType, edsCluster("a", ""), edsCluster("b", ""))
		}, false},
		"same content, other bytes": {reordered, false},
		"field changed": {func(t *testing.T) *discoveryv3.DiscoveryResponse {
			return response(t, resources.ClusterType, edsCluster("a", ""), edsCluster("b", "b-svc"))
		}, true},
		"cluster removed": {func(t *testing.T) *discoveryv3.DiscoveryResponse {
			return response(t, resources.ClusterType, edsCluster("a", ""))
		}, true},
		"cluster renamed": {func(t *testing.T) *discoveryv3.DiscoveryResponse {
			return response(t, resources.ClusterType, edsCluster("a", ""), edsCluster("c", ""))
		}, true},
		"endpoints unchanged": {func(t *testing.T) *discoveryv3.DiscoveryResponse {
			return response(t, resources.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "a"})
		}, false},
		"endpoints of another cluster": {func(t *testing.T) *discoveryv3.DiscoveryResponse {
			return response(t, resources.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "b"})
		}, true},
		"endpoints nobody references": {func(t *testing.T) *discoveryv3.DiscoveryResponse {
			return response(t, resources.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "zz"})
		}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a := base()
			next, err := a.candidate(tc.resp(t))
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.changed(next)
			if err != nil || got != tc.want {
				t.Errorf("changed = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestSetIsDecodedPerUpdate: each set is the handler's own, decoded from
// the kept bytes (the response's resources used as decoded), so a handler
// that keeps or modifies one does not touch the client's state.
func TestSetIsDecodedPerUpdate(t *testing.T) {
	a := newAccepted()
	accept(t, a, response(t, resources.ClusterType, edsCluster("a", "")))
	resp := response(t, resources.ListenerType, rdsListener(t, "l1", "r1"))
	next, err := a.candidate(resp)
	if err != nil {
		t.Fatal(err)
	}
	first, err := next.set()
	if err != nil {
		t.Fatal(err)
	}
	if first.Listeners["l1"] != next.fresh["l1"] {
		t.Error("the response's listener was decoded twice")
	}
	first.Clusters["a"].Name = "modified"
	delete(first.Listeners, "l1")
	a.commit(next, "v1", true)
	second := acceptedSet(t, a)
	if second.Clusters["a"].GetName() != "a" || second.Listeners["l1"] == nil {
		t.Errorf("a handler's changes reached the accepted state: %v", second)
	}
	if !proto.Equal(second.Clusters["a"], edsCluster("a", "")) {
		t.Errorf("cluster a decoded as %v", second.Clusters["a"])
	}
	if len(second.Routes) != 0 || len(second.Endpoints) != 0 {
		t.Errorf("unsubscribed types are not empty: %v", second)
	}
}

func TestCandidateRejects(t *testing.T) {
	badHCM := &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: &anypb.Any{
			TypeUrl: hcmTypeURL, Value: []byte{0xff, 0xff},
		}},
	}}}}}
	mixed := response(t, resources.ClusterType, edsCluster("a", ""))
	mixed.Resources = append(mixed.Resources, response(t, resources.ListenerType, rdsListener(t, "l", "r")).Resources...)
	cases := map[string]struct {
		resp *discoveryv3.DiscoveryResponse
		want string
	}{
		"bad HCM":        {response(t, resources.ListenerType, badHCM), `listener "l"`},
		"duplicate name": {response(t, resources.ClusterType, edsCluster("a", ""), edsCluster("a", "")), "duplicate"},
		"wrong type":     {mixed, "in a"},
		"no name":        {response(t, resources.ClusterType, &clusterv3.Cluster{}), "no name"},
		"unknown type":   {&discoveryv3.DiscoveryResponse{TypeUrl: "type.googleapis.com/x.Y"}, "unexpected type"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a := newAccepted()
			if _, err := a.candidate(tc.resp); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("candidate error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestCandidateUnwrapsResource(t *testing.T) {
	inner, err := anypb.New(edsCluster("a", ""))
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := anypb.New(&discoveryv3.Resource{Name: "a", Resource: inner})
	if err != nil {
		t.Fatal(err)
	}
	next, err := newAccepted().candidate(&discoveryv3.DiscoveryResponse{
		TypeUrl: resources.ClusterType, Resources: []*anypb.Any{wrapped},
	})
	if err != nil || next.res[resources.ClusterType]["a"].raw == nil || next.fresh["a"] == nil {
		t.Errorf("candidate = %v, %v", next, err)
	}
}

func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{backoffStart, time.Second, backoffCap} {
		for range 100 {
			if got := jitter(d); got < d/2 || got > d {
				t.Fatalf("jitter(%v) = %v", d, got)
			}
		}
	}
}
