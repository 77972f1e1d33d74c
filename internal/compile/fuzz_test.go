package compile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/trellis-mesh/trellis/internal/model"
)

// FuzzProxy compiles every workload of any set of objects Decode accepts:
// the compiler must never panic on validated input, and must be deterministic.
func FuzzProxy(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, _ := model.Decode(data, "fuzz.yaml")
		in := &Input{}
		for _, o := range objs {
			switch o := o.(type) {
			case *model.Workload:
				in.Workloads = append(in.Workloads, o)
			case *model.VirtualService:
				in.VirtualServices = append(in.VirtualServices, o)
			case *model.DestinationRule:
				in.DestinationRules = append(in.DestinationRules, o)
			}
		}
		for _, w := range in.Workloads {
			a, errA := Proxy(in, w.Name)
			b, errB := Proxy(in, w.Name)
			if (errA == nil) != (errB == nil) {
				t.Fatalf("non-deterministic error: %v / %v", errA, errB)
			}
			if errA != nil {
				continue
			}
			ra, err := renderSet(a)
			if err != nil {
				t.Fatal(err)
			}
			rb, _ := renderSet(b)
			if string(ra) != string(rb) {
				t.Fatal("non-deterministic output")
			}
		}
	})
}
