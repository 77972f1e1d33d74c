package memtrim

import (
	"os"
	"testing"
)

// exeResident is the resident size of this test binary's releasable
// mappings, read the way Release reads them.
func exeResident(t *testing.T) int64 {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	maps, err := parseSmaps(f)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, m := range maps {
		if m.releasable(exe) {
			n += m.rss
		}
	}
	return n
}

// TestReleaseUnmapsExecutablePages runs Release in this process: the test
// binary's text and read-only data go from resident to (almost) not, and
// the program keeps running, re-faulting what it uses.
func TestReleaseUnmapsExecutablePages(t *testing.T) {
	before := exeResident(t)
	if before < 1<<20 {
		t.Fatalf("only %d bytes of the test binary resident before: the measurement is wrong", before)
	}
	res, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := exeResident(t)
	t.Logf("executable resident %d KiB → %d KiB; result %+v", before>>10, after>>10, res)
	if res.Mappings < 2 {
		t.Errorf("advised %d mappings, want at least text and read-only data", res.Mappings)
	}
	if res.FileResident < before/2 {
		t.Errorf("released %d bytes of %d resident", res.FileResident, before)
	}
	// What runs after Release (this test, the parser, the runtime) faults
	// pages back, 64 KiB around each fault: in a binary this small that is
	// about half of it (in the 40 MB trellis binary, a third of what start-up
	// touched). Without the madvise nothing would go.
	if after > before*3/4 {
		t.Errorf("executable resident %d bytes after Release, %d before: pages were not unmapped", after, before)
	}
	// Still working, and a second call is harmless.
	if _, err := Release(); err != nil {
		t.Fatal(err)
	}
}
