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

func response(t *testing.T, typeURL string, msgs ...proto.Message) *discoveryv3.DiscoveryResponse {
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

func rdsListener(t *testing.T, name, route string) *listenerv3.Listener {
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
	a.commit(resp.GetTypeUrl(), resp.GetVersionInfo(), next)
}

func TestCandidateMergesAndFollowsReferences(t *testing.T) {
	a := newAccepted()
	accept(t, a, response(t, resources.ClusterType, edsCluster("a", ""), edsCluster("b", "b-svc"),
		&clusterv3.Cluster{Name: "static", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}))
	accept(t, a, response(t, resources.ListenerType, rdsListener(t, "l1", "r1"), rdsListener(t, "l2", "r2")))
	if diff := cmp.Diff([]string{"a", "b-svc"}, endpointNames(a.set.Clusters)); diff != "" {
		t.Errorf("endpoint names (-want +got):\n%s", diff)
	}
	names, err := routeNames(a.set.Listeners)
	if err != nil || !cmp.Equal([]string{"r1", "r2"}, names) {
		t.Errorf("routeNames = %v, %v", names, err)
	}
	if a.synced() {
		t.Error("synced before EDS and RDS arrived")
	}
	// EDS and RDS responses update by name.
	accept(t, a, response(t, resources.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "a"}))
	accept(t, a, response(t, resources.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "b-svc"}))
	accept(t, a, response(t, resources.RouteType, &routev3.RouteConfiguration{Name: "r1"}, &routev3.RouteConfiguration{Name: "r2"}))
	if len(a.set.Endpoints) != 2 || !a.synced() {
		t.Fatalf("endpoints %v, synced %v", resources.SortedKeys(a.set.Endpoints), a.synced())
	}
	// Dropping cluster a and listener l2 drops what only they referenced.
	accept(t, a, response(t, resources.ClusterType, edsCluster("b", "b-svc")))
	accept(t, a, response(t, resources.ListenerType, rdsListener(t, "l1", "r1")))
	if got := resources.SortedKeys(a.set.Endpoints); !cmp.Equal([]string{"b-svc"}, got) {
		t.Errorf("endpoints after CDS change = %v", got)
	}
	if got := resources.SortedKeys(a.set.Routes); !cmp.Equal([]string{"r1"}, got) {
		t.Errorf("routes after LDS change = %v", got)
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
	if err != nil || next.Clusters["a"] == nil {
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
