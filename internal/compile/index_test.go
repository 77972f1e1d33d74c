package compile

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/trellis-mesh/trellis/internal/model"
)

// TestIndexDependencies checks the services a proxy is said to depend on:
// its upstreams and what their routes reach, nothing else.
func TestIndexDependencies(t *testing.T) {
	ref := func(name string) model.ServiceRef { return model.ServiceRef{Namespace: "default", Name: name} }
	cases := []struct {
		workload string
		files    []string
		want     []model.ServiceRef
	}{
		{"productpage-v1", []string{"bookinfo.yaml"}, []model.ServiceRef{ref("details"), ref("reviews")}},
		{"productpage-v1", []string{"bookinfo.yaml", "cross-service.yaml"}, []model.ServiceRef{ref("details"), ref("details-next"), ref("reviews")}},
		{"reviews-v2", []string{"bookinfo.yaml"}, []model.ServiceRef{ref("ratings")}},
		{"ratings-v1", []string{"bookinfo.yaml"}, []model.ServiceRef{}},
	}
	for _, tc := range cases {
		ix := NewIndex(loadInput(t, tc.files...))
		_, deps, err := ix.Compile(tc.workload)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, deps); diff != "" {
			t.Errorf("%s %v: dependencies (-want +got):\n%s", tc.workload, tc.files, diff)
		}
	}
}

// TestIndexMatchesProxy checks that compiling many proxies from one Index
// gives what Proxy gives for each alone, and that proxies reaching the same
// service share its cluster and endpoints.
func TestIndexMatchesProxy(t *testing.T) {
	in := loadInput(t, "bookinfo.yaml", "split.yaml")
	ix := NewIndex(in)
	first := map[string]any{}
	for _, w := range in.Workloads {
		got, _, err := ix.Compile(w.Name)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Proxy(in, w.Name)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s: Index.Compile differs from Proxy (-want +got):\n%s", w.Name, diff)
		}
		for name, cla := range got.Endpoints {
			if prev, ok := first[name]; ok && prev != any(cla) {
				t.Errorf("%s: endpoints %s not shared between proxies", w.Name, name)
			}
			first[name] = cla
		}
	}
}
