package e2e

import (
	"debug/elf"
	"os"
	"testing"
)

// TestBinaryIsStatic holds the promise of a single static binary: the trellis
// that `make build` ships (CGO_ENABLED=0, as TestMain builds it without the
// race detector) needs no dynamic loader and no shared library. A dependency
// that pulls cgo in fails here. Each sidecar also maps ~1.3 MiB less (libc
// and ld.so; docs/perf.md).
func TestBinaryIsStatic(t *testing.T) {
	if os.Getenv("E2E_RACE") != "" {
		t.Skip("E2E_RACE: the race detector needs cgo, so this build links dynamically")
	}
	f, err := elf.Open(trellisBin)
	if err != nil {
		t.Fatalf("open %s: %v", trellisBin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter (PT_INTERP): it is dynamically linked; build with CGO_ENABLED=0", trellisBin)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatalf("read imported libraries: %v", err)
	}
	if len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v; build with CGO_ENABLED=0", trellisBin, libs)
	}
}
