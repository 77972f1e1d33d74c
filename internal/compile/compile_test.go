package compile

import (
	"strconv"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

func compileCase(t *testing.T, workload string, files ...string) *resources.Set {
	t.Helper()
	set, err := Proxy(loadInput(t, files...), workload)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func addr(a *corev3.Address) string {
	s := a.GetSocketAddress()
	return s.GetAddress() + ":" + itoa(s.GetPortValue())
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func TestResourceNamesAndAddresses(t *testing.T) {
	set := compileCase(t, "productpage-v1", "bookinfo.yaml", "split.yaml")
	gotListeners := map[string]string{}
	for name, l := range set.Listeners {
		gotListeners[name] = addr(l.GetAddress())
	}
	wantListeners := map[string]string{
		"inbound|9080":          "127.0.0.1:21001",
		"outbound|9080|details": "127.0.0.1:22001",
		"outbound|9080|reviews": "127.0.0.1:22002",
	}
	if diff := cmp.Diff(wantListeners, gotListeners); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
	wantClusters := []string{
		"inbound|9080", "outbound|9080|v1|reviews", "outbound|9080|v2|reviews", "outbound|9080|v3|reviews",
		"outbound|9080||details", "outbound|9080||reviews",
	}
	if diff := cmp.Diff(wantClusters, resources.SortedKeys(set.Clusters)); diff != "" {
		t.Errorf("clusters (-want +got):\n%s", diff)
	}
	wantEndpoints := wantClusters[1:]
	if diff := cmp.Diff(wantEndpoints, resources.SortedKeys(set.Endpoints)); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	// Only what productpage talks to: ratings is not there.
	if _, ok := set.Clusters["outbound|9080||ratings"]; ok {
		t.Error("productpage got the ratings cluster it never calls")
	}
}

func TestWeightedSplit(t *testing.T) {
	set := compileCase(t, "productpage-v1", "bookinfo.yaml", "split.yaml")
	routes := set.Routes["outbound|9080|reviews"].GetVirtualHosts()[0].GetRoutes()
	if len(routes) != 1 {
		t.Fatalf("got %d routes, want 1", len(routes))
	}
	var got []string
	for _, c := range routes[0].GetRoute().GetWeightedClusters().GetClusters() {
		got = append(got, c.GetName()+"="+itoa(c.GetWeight().GetValue()))
	}
	want := []string{"outbound|9080|v1|reviews=90", "outbound|9080|v2|reviews=10"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("weighted clusters (-want +got):\n%s", diff)
	}
}

func upstreamSANs(t *testing.T, c *clusterv3.Cluster) []string {
	t.Helper()
	var ctx tlsv3.UpstreamTlsContext
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&ctx); err != nil {
		t.Fatal(err)
	}
	var sans []string
	vc := ctx.GetCommonTlsContext().GetCombinedValidationContext()
	for _, m := range vc.GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI {
			t.Errorf("SAN type %v, want URI", m.GetSanType())
		}
		sans = append(sans, m.GetMatcher().GetExact())
	}
	if vc.GetValidationContextSdsSecretConfig().GetName() != "ROOTCA" {
		t.Errorf("validation SDS %q, want ROOTCA", vc.GetValidationContextSdsSecretConfig().GetName())
	}
	return sans
}

func TestSecureNamingSANs(t *testing.T) {
	set := compileCase(t, "productpage-v1", "bookinfo.yaml", "cross-service.yaml")
	want := []string{"spiffe://cluster.local/ns/default/sa/bookinfo-reviews", "spiffe://cluster.local/ns/default/sa/reviews"}
	if diff := cmp.Diff(want, upstreamSANs(t, set.Clusters["outbound|9080||reviews"])); diff != "" {
		t.Errorf("reviews SANs (-want +got):\n%s", diff)
	}
	// The subset cluster "canary" is not defined by any DestinationRule: no cluster.
	if _, ok := set.Clusters["outbound|9080|canary|details-next"]; ok {
		t.Error("cluster emitted for a subset no DestinationRule defines")
	}
	// A service nobody serves yet gets its default identity.
	in := loadInput(t, "bookinfo.yaml")
	in.Workloads = in.Workloads[:1] // productpage only
	set, err := Proxy(in, "productpage-v1")
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"spiffe://cluster.local/ns/default/sa/details"}
	if diff := cmp.Diff(want, upstreamSANs(t, set.Clusters["outbound|80||details"])); diff != "" {
		t.Errorf("details SANs (-want +got):\n%s", diff)
	}
}

func TestTCPAndGRPC(t *testing.T) {
	set := compileCase(t, "inventory-v1", "tcp.yaml")
	l := set.Listeners["outbound|27017|mongodb"]
	var tp tcpv3.TcpProxy
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&tp); err != nil {
		t.Fatal(err)
	}
	if tp.GetCluster() != "outbound|27017||mongodb" {
		t.Errorf("tcp_proxy cluster %q", tp.GetCluster())
	}
	if len(set.Routes) != 0 {
		t.Errorf("TCP upstream got routes: %v", resources.SortedKeys(set.Routes))
	}

	set = compileCase(t, "frontend-v1", "grpc.yaml")
	c := set.Clusters["outbound|9090||stars"]
	if _, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOpts]; !ok {
		t.Error("gRPC cluster lacks HTTP/2 protocol options")
	}
	var hcm hcmv3.HttpConnectionManager
	if err := set.Listeners["outbound|9090|stars"].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	if hcm.GetRds().GetRouteConfigName() != "outbound|9090|stars" {
		t.Errorf("rds name %q", hcm.GetRds().GetRouteConfigName())
	}
}

func TestNoMatchMeansNoDefaultRoute(t *testing.T) {
	in := loadInput(t, "bookinfo.yaml", "split.yaml")
	in.VirtualServices[0].Spec.HTTP[0].Match = []model.HTTPMatchRequest{{URI: &model.StringMatch{Exact: "/only"}}}
	set, err := Proxy(in, "productpage-v1")
	if err != nil {
		t.Fatal(err)
	}
	routes := set.Routes["outbound|9080|reviews"].GetVirtualHosts()[0].GetRoutes()
	if len(routes) != 1 || routes[0].GetMatch().GetPath() != "/only" {
		t.Errorf("routes = %v, want only the /only route", routes)
	}
}

func TestUnknownWorkload(t *testing.T) {
	if _, err := Proxy(loadInput(t, "bookinfo.yaml"), "nope"); err == nil {
		t.Error("want error for an unregistered workload")
	}
	if _, err := Proxy(nil, "x"); err == nil {
		t.Error("want error for nil input")
	}
}
