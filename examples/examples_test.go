// Package examples_test checks that every example file decodes and
// validates with the model the control plane uses, and that the meshes only
// name demo apps that exist and services that some workload serves.
package examples_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/trellis-mesh/trellis/examples/demoapp"
	"github.com/trellis-mesh/trellis/internal/model"
)

// exampleFiles are the YAML files the examples README tells users to run or
// apply, plus the benchmark's mesh.
var exampleFiles = []string{
	"bookinfo/mesh.yaml",
	"bookinfo/reviews-90-10.yaml",
	"bookinfo/reviews-jason.yaml",
	"protocols/mesh.yaml",
	"security/allow-sleep.yaml",
	"security/buffer-limit.yaml",
	"security/deny-admin.yaml",
	"security/deny-header.yaml",
	"security/jwt.yaml",
	"security/mesh.yaml",
	"security/peer-disable-port.yaml",
	"security/peer-namespace-permissive.yaml",
	"security/peer-permissive.yaml",
	"security/peer-strict.yaml",
	"security/peer-workload-strict.yaml",
	"traffic/canary.yaml",
	"traffic/circuit-breaker.yaml",
	"traffic/content-routing.yaml",
	"traffic/fault-injection.yaml",
	"traffic/httproute.yaml",
	"traffic/least-request.yaml",
	"traffic/mesh.yaml",
	"traffic/mirroring.yaml",
	"traffic/outlier-detection.yaml",
	"traffic/rate-limit-envoyfilter.yaml",
	"traffic/rate-limit.yaml",
	"traffic/retries.yaml",
	"traffic/service-profile.yaml",
	"traffic/session-affinity.yaml",
	"traffic/traffic-split.yaml",
	"../bench/mesh.yaml",
	"../bench/mesh-h2.yaml",
}

func decodeFile(t *testing.T, path string) []model.Object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := model.Decode(data, path)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return objs
}

func TestExamplesDecode(t *testing.T) {
	found, err := filepath.Glob("*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		if !slices.Contains(exampleFiles, f) {
			t.Errorf("%s is not listed in exampleFiles: add it so it is checked", f)
		}
	}
	for _, f := range exampleFiles {
		t.Run(f, func(t *testing.T) {
			if len(decodeFile(t, f)) == 0 {
				t.Fatalf("%s holds no objects", f)
			}
		})
	}
}

func TestMeshesAreConsistent(t *testing.T) {
	for _, f := range exampleFiles {
		for _, obj := range decodeFile(t, f) {
			mesh, ok := obj.(*model.Mesh)
			if !ok {
				continue
			}
			t.Run(f, func(t *testing.T) { checkMesh(t, mesh) })
		}
	}
}

func checkMesh(t *testing.T, mesh *model.Mesh) {
	services := map[string]bool{}
	workloads := map[string]bool{}
	for _, w := range mesh.Spec.Workloads {
		services[w.Service] = true
		workloads[w.Name] = true
		if w.Demo != "" && !slices.Contains(demoapp.Names(), w.Demo) {
			t.Errorf("workload %s: demo %q is not a demo app (have %v)", w.Name, w.Demo, demoapp.Names())
		}
	}
	for _, w := range mesh.Spec.Workloads {
		for _, u := range w.Upstreams {
			if !services[u] {
				t.Errorf("workload %s: upstream %q is served by no workload", w.Name, u)
			}
		}
	}
	if e := mesh.Spec.Entry; e != nil && !workloads[e.Workload] {
		t.Errorf("entry workload %q is not in the mesh", e.Workload)
	}
}

// TestBookinfoRoutes checks the subsets the VirtualService examples route
// to are those the DestinationRule in bookinfo/mesh.yaml defines.
func TestBookinfoRoutes(t *testing.T) {
	subsets := map[string]bool{}
	for _, obj := range decodeFile(t, "bookinfo/mesh.yaml") {
		if dr, ok := obj.(*model.DestinationRule); ok && dr.Spec.Host == "reviews" {
			for _, s := range dr.Spec.Subsets {
				subsets[s.Name] = true
			}
		}
	}
	if len(subsets) != 3 {
		t.Fatalf("reviews subsets = %v, want v1 v2 v3", subsets)
	}
	for _, f := range []string{"bookinfo/reviews-90-10.yaml", "bookinfo/reviews-jason.yaml"} {
		for _, obj := range decodeFile(t, f) {
			vs, ok := obj.(*model.VirtualService)
			if !ok {
				t.Fatalf("%s: %s, want a VirtualService", f, obj.Key())
			}
			for i, r := range vs.Spec.HTTP {
				var total int32
				for _, d := range r.Route {
					if !subsets[d.Destination.Subset] {
						t.Errorf("%s: http[%d]: subset %q not defined", f, i, d.Destination.Subset)
					}
					total += d.Weight
				}
				if len(r.Route) > 1 && total != 100 {
					t.Errorf("%s: http[%d]: weights sum to %d, want 100", f, i, total)
				}
			}
		}
	}
}
