package xds_test

import (
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestResourcesAndConfigDump(t *testing.T) {
	srv := newServer()
	if _, ok := srv.Resources("nobody"); ok {
		t.Error("Resources of a node never set: ok")
	}
	set := testSet(t, 18080)
	if err := srv.SetResources("client-1", set); err != nil {
		t.Fatal(err)
	}
	got, ok := srv.Resources("client-1")
	if !ok {
		t.Fatal("Resources: nothing after SetResources")
	}
	if !proto.Equal(got.Listeners[svcName], set.Listeners[svcName]) || !proto.Equal(got.Routes[svcName], set.Routes[svcName]) ||
		!proto.Equal(got.Clusters[cluName], set.Clusters[cluName]) || !proto.Equal(got.Endpoints[cluName], set.Endpoints[cluName]) ||
		len(got.Listeners)+len(got.Routes)+len(got.Clusters)+len(got.Endpoints) != 4 {
		t.Errorf("Resources returned %+v, want the set given", got)
	}
	data, err := resources.ConfigDump(got)
	if err != nil {
		t.Fatal(err)
	}
	var dump adminv3.ConfigDump
	if err := protojson.Unmarshal(data, &dump); err != nil {
		t.Fatalf("dump does not decode: %v", err)
	}
	if n := len(dump.GetConfigs()); n != 4 {
		t.Fatalf("%d config sections, want listeners, routes, clusters, endpoints", n)
	}
	var ls adminv3.ListenersConfigDump
	if err := dump.GetConfigs()[0].UnmarshalTo(&ls); err != nil || len(ls.GetDynamicListeners()) != 1 || ls.GetDynamicListeners()[0].GetName() != svcName {
		t.Errorf("listeners section: %v %v", err, ls.GetDynamicListeners())
	}
	srv.ClearNode("client-1")
	if _, ok := srv.Resources("client-1"); ok {
		t.Error("Resources after ClearNode: ok")
	}
}
