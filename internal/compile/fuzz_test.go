package compile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/model"
)

// FuzzProxy compiles every workload of any set of objects Decode accepts
// (every kind compile reads, security policies included):
// the compiler must never panic on validated input, and must be deterministic.
func FuzzProxy(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	mesh, err := os.ReadFile("testdata/sec-mesh.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		if strings.HasPrefix(filepath.Base(name), "sec-") { // security policies need the workloads
			f.Add(append(append(append([]byte{}, mesh...), "\n---\n"...), data...))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, _ := model.Decode(data, "fuzz.yaml")
		in := &Input{}
		for _, o := range objs {
			in.Add(o)
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
