package xds

import (
	"fmt"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
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

// TestMemoMatchesCanonical checks that the memo (by Any content and by
// resource identity) gives the same bytes as the plain canonical encoding,
// and that a resource given twice is hashed to the same version.
func TestMemoMatchesCanonical(t *testing.T) {
	memo := newAnyMemo()
	l := listenerWithMap(t)
	want, err := canonicalBytes(l)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		got, err := memo.resourceBytes(l)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("memo pass %d: bytes differ from canonicalBytes", i)
		}
		other := listenerWithMap(t) // equal content, another identity
		got, err = memo.canonicalBytes(other)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("memo pass %d: equal content, different bytes", i)
		}
	}
}
