package xds

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// listenerWithMap packs an HCM whose inline route has a map, with plain
// (non-deterministic) proto.Marshal, as a compiler would.
func listenerWithMap(t *testing.T) *listenerv3.Listener {
	t.Helper()
	fields := map[string]any{}
	for i := range 32 {
		fields[fmt.Sprintf("k%02d", i)] = i
	}
	meta, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	perFilter := map[string]*anypb.Any{}
	for i := range 8 {
		a, err := anypb.New(meta)
		if err != nil {
			t.Fatal(err)
		}
		perFilter[fmt.Sprintf("f%d", i)] = a
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: "in",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:         "inbound|9080",
			VirtualHosts: []*routev3.VirtualHost{{Name: "in", Domains: []string{"*"}, TypedPerFilterConfig: perFilter}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Listener{Name: "inbound|9080", FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
	}}}
}

func TestVersionIsContentHash(t *testing.T) {
	versions := map[string]bool{}
	for range 20 {
		set := resources.NewSet()
		set.Listeners["inbound|9080"] = listenerWithMap(t)
		snap, err := buildSnapshot(set)
		if err != nil {
			t.Fatal(err)
		}
		versions[snap.GetVersion(resources.ListenerType)] = true
		if v := snap.GetVersion(resources.ClusterType); v == "" {
			t.Error("empty type has no version")
		}
	}
	if len(versions) != 1 {
		t.Errorf("equal listeners got %d versions", len(versions))
	}

	set := resources.NewSet()
	l := listenerWithMap(t)
	l.StatPrefix = "changed"
	set.Listeners[l.Name] = l
	snap, err := buildSnapshot(set)
	if err != nil {
		t.Fatal(err)
	}
	if versions[snap.GetVersion(resources.ListenerType)] {
		t.Error("a changed listener kept its version")
	}
}

func TestCombinedVersion(t *testing.T) {
	got := combinedVersion(map[string]string{resources.ClusterType: "c1", resources.ListenerType: "l1"})
	if want := "lds=l1,cds=c1"; got != want {
		t.Errorf("combinedVersion = %q, want %q", got, want)
	}
}

// TestMemoMatchesCanonical checks that the Any memo gives the same bytes as
// the plain canonical encoding, for the same resource and for another one
// of equal content.
func TestMemoMatchesCanonical(t *testing.T) {
	memo := newAnyMemo()
	want, err := canonicalBytes(listenerWithMap(t))
	if err != nil {
		t.Fatal(err)
	}
	l := listenerWithMap(t)
	for i := range 3 {
		for _, m := range []*listenerv3.Listener{l, listenerWithMap(t)} {
			got, err := memo.canonicalBytes(m)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatalf("memo pass %d: bytes differ from canonicalBytes", i)
			}
		}
	}
}

// TestMayHoldAny: the canonical walk descends only into types that can hold
// an Any; a wrong "false" would leave map-ordered Any bytes in the hash.
func TestMayHoldAny(t *testing.T) {
	tests := []struct {
		msg  proto.Message
		want bool
	}{
		{&anypb.Any{}, true},
		{&listenerv3.Listener{}, true},              // filter chains → filters → typed_config
		{&routev3.RouteConfiguration{}, true},       // typed_per_filter_config
		{&structpb.Struct{}, false},                 // recursive, and no Any anywhere
		{&durationpb.Duration{}, false},             // a leaf
		{&hcmv3.HttpConnectionManager{}, true},      // http_filters
		{&corev3.SocketAddress{}, false},            // an endpoint's address
		{&endpointv3.ClusterLoadAssignment{}, true}, // typed_filter_metadata
	}
	for _, memo := range []*anyMemo{nil, newAnyMemo()} {
		for range 2 { // the second pass reads what the memo remembered
			for _, tc := range tests {
				md := tc.msg.ProtoReflect().Descriptor()
				if got := memo.mayHoldAny(md); got != tc.want {
					t.Errorf("mayHoldAny(%s) = %v, want %v (memo %v)", md.FullName(), got, tc.want, memo != nil)
				}
			}
		}
	}
}
