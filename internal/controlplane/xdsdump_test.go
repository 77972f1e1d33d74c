package controlplane

import (
	"context"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
)

// TestXDSDump: GET /v1/xds/{ns}/{name} serves what the control plane
// published for a connected sidecar, as an Envoy /config_dump.
func TestXDSDump(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := newMeshSim(t, ctx, 3, 2)
	m.start(t, ctx, 2) // workload 0 of services 0 and 1 connect
	m.settle(t)
	admin := api.NewClient(m.cp.AdminURL(), "")

	name := workloadName(0, 0)
	data, err := admin.ConfigDump(ctx, model.DefaultNamespace, name)
	if err != nil {
		t.Fatal(err)
	}
	var dump adminv3.ConfigDump
	if err := protojson.Unmarshal(data, &dump); err != nil {
		t.Fatalf("not a config dump: %v", err)
	}
	var ls adminv3.ListenersConfigDump
	if len(dump.GetConfigs()) != 4 || dump.GetConfigs()[0].UnmarshalTo(&ls) != nil {
		t.Fatalf("config sections %v", dump.GetConfigs())
	}
	want := map[string]bool{}
	for _, u := range m.upstreams(0) {
		want["outbound|80|"+svcName(u)] = true
	}
	got := 0
	for _, l := range ls.GetDynamicListeners() {
		if want[l.GetName()] {
			got++
		}
	}
	if got != len(want) || got == 0 {
		t.Errorf("listeners %v, want the outbound ones of %v", ls.GetDynamicListeners(), want)
	}

	for _, tc := range []struct{ ns, name string }{
		{model.DefaultNamespace, "nobody"},           // not registered
		{model.DefaultNamespace, workloadName(2, 0)}, // registered, never connected
		{"other", name},
	} {
		if _, err := admin.ConfigDump(ctx, tc.ns, tc.name); !api.IsNotFound(err) {
			t.Errorf("%s/%s: %v, want 404", tc.ns, tc.name, err)
		}
	}
}
