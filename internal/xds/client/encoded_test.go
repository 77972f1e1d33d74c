package client

import (
	"fmt"
	"slices"
	"testing"
	"unsafe"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/proxy"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// The sidecar's proxy shares the client's encodings (one copy of the wire
// form in the process): its UpdateEncoded must keep matching.
var _ EncodedHandler = (*proxy.Proxy)(nil)

type plainHandler struct{ sets []*resources.Set }

func (h *plainHandler) Update(set *resources.Set) error { h.sets = append(h.sets, set); return nil }

type encodedHandler struct {
	plainHandler
	enc []map[string]map[string][]byte
}

func (h *encodedHandler) UpdateEncoded(set *resources.Set, enc map[string]map[string][]byte) error {
	h.enc = append(h.enc, enc)
	return h.Update(set)
}

// TestDeliverTo: an EncodedHandler gets the encodings the client keeps, one
// per resource of the set; a plain Handler gets the set.
func TestDeliverTo(t *testing.T) {
	a := newAccepted()
	accept(t, a, response(t, resources.ClusterType, edsCluster("a", ""), edsCluster("b", "")))
	next, err := a.candidate(response(t, resources.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "a"}))
	if err != nil {
		t.Fatal(err)
	}
	var plain plainHandler
	if err := deliverTo(&plain, next); err != nil || len(plain.sets) != 1 || len(plain.sets[0].Clusters) != 2 {
		t.Fatalf("plain handler: %v, %d sets", err, len(plain.sets))
	}
	var h encodedHandler
	if err := deliverTo(&h, next); err != nil || len(h.enc) != 1 {
		t.Fatalf("encoded handler: %v, %d calls", err, len(h.enc))
	}
	set, enc := h.sets[0], h.enc[0]
	for name, m := range set.Clusters {
		b := enc[resources.ClusterType][name]
		if &b[0] != &next.res[resources.ClusterType][name].raw[0] {
			t.Errorf("cluster %q: the encoding passed is not the one kept", name)
		}
		got := &clusterv3.Cluster{}
		if err := proto.Unmarshal(b, got); err != nil || !proto.Equal(got, m) {
			t.Errorf("cluster %q: encoding decodes to %v (%v), set has %v", name, got, err, m)
		}
	}
	if len(enc[resources.EndpointType]) != 1 || len(enc[resources.ListenerType]) != 0 || len(enc[resources.RouteType]) != 0 {
		t.Errorf("encodings by type: %v", enc)
	}
}

// TestCommitUnchangedKeepsEncodings: a response that changes nothing leaves
// the kept encodings (which a handler may share) as they were, and still
// records its version.
func TestCommitUnchangedKeepsEncodings(t *testing.T) {
	a := newAccepted()
	accept(t, a, response(t, resources.ClusterType, edsCluster("a", "")))
	before := a.res[resources.ClusterType]["a"].raw
	next, err := a.candidate(response(t, resources.ClusterType, edsCluster("a", "")))
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := a.changed(next); changed || err != nil {
		t.Fatalf("changed = %v, %v", changed, err)
	}
	a.commit(next, "v2", false)
	if got := a.res[resources.ClusterType]["a"].raw; &got[0] != &before[0] {
		t.Error("an unchanged response replaced the kept encoding")
	}
	if a.versions[resources.ClusterType] != "v2" {
		t.Errorf("version = %q, want v2", a.versions[resources.ClusterType])
	}
}

// TestPackOneBlock: a type's encodings lie end to end in one allocation,
// each capped at its length, with the bytes unchanged.
func TestPackOneBlock(t *testing.T) {
	want := map[string]string{"x": "first", "y": "second", "z": "3"}
	m := typeMap{}
	for name, v := range want {
		m[name] = resource{raw: []byte(v)}
	}
	pack(m)
	type span struct{ at, end uintptr }
	var spans []span
	for name, v := range want {
		r := m[name].raw
		if string(r) != v || cap(r) != len(r) {
			t.Errorf("%s = %q (cap %d), want %q", name, r, cap(r), v)
		}
		at := uintptr(unsafe.Pointer(unsafe.SliceData(r)))
		spans = append(spans, span{at, at + uintptr(len(r))})
	}
	slices.SortFunc(spans, func(a, b span) int { return int(a.at) - int(b.at) })
	for i := 1; i < len(spans); i++ {
		if spans[i].at != spans[i-1].end {
			t.Fatalf("encodings are not end to end in one block: %v", spans)
		}
	}
}

// configN is the responses of a sidecar configuration with n services:
// LDS, CDS, RDS and EDS, one resource of each per service.
func configN(t testing.TB, n int) []*discoveryv3.DiscoveryResponse {
	t.Helper()
	var ls, cs, rs, es []proto.Message
	for i := range n {
		name := fmt.Sprintf("outbound|8080||svc-%03d.default.svc.cluster.local", i)
		l := rdsListener(t, fmt.Sprintf("svc-%03d", i), name)
		ls = append(ls, l)
		cs = append(cs, edsCluster(name, ""))
		rs = append(rs, &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
			Name: name, Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}},
			}},
		}}})
		es = append(es, &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(20000 + i)},
				}}},
			}}}},
		}}})
	}
	return []*discoveryv3.DiscoveryResponse{
		response(t, resources.ClusterType, cs...), response(t, resources.ListenerType, ls...),
		response(t, resources.RouteType, rs...), response(t, resources.EndpointType, es...),
	}
}

// BenchmarkEDSResponse100 is the client's work for one EDS response of a
// 100-service sidecar: merge, compare with what was delivered, decode the
// set for the handler.
func BenchmarkEDSResponse100(b *testing.B) {
	resps := configN(b, 100)
	a := newAccepted()
	for _, r := range resps {
		next, err := a.candidate(r)
		if err != nil {
			b.Fatal(err)
		}
		a.commit(next, "v1", true)
	}
	eds := resps[3]
	// One endpoint changed: the response is delivered.
	eds.Resources[0] = response(b, resources.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "outbound|8080||svc-000.default.svc.cluster.local"}).Resources[0]
	b.ReportAllocs()
	for b.Loop() {
		next, err := a.candidate(eds)
		if err != nil {
			b.Fatal(err)
		}
		if changed, err := a.changed(next); err != nil || !changed {
			b.Fatal("not changed", err)
		}
		if _, err := next.set(); err != nil {
			b.Fatal(err)
		}
	}
}
