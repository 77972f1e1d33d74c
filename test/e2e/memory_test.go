package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// releasedRE finds a sidecar's "released start-up memory" log line
// (internal/sidecar, releaseStartupMemory) and its figure.
var releasedRE = regexp.MustCompile(`released start-up memory.*executable_bytes_unmapped=(\d+)`)

// testStartupMemoryReleased checks that a sidecar of `trellis up`, once
// ready, unmapped the pages of the binary its start-up touched: it logs how
// much, and its file-backed resident memory afterwards is a fraction of that
// (what it touches again since). The caller's other steps then run on it.
func testStartupMemoryReleased(t *testing.T, m *mesh, workload string) {
	var unmapped int64
	eventually(t, 20*time.Second, workload+" logged its start-up memory release", func() error {
		for _, line := range strings.Split(m.up.out.String(), "\n") {
			if !strings.Contains(line, "workload="+workload) {
				continue
			}
			if sub := releasedRE.FindStringSubmatch(line); sub != nil {
				unmapped, _ = strconv.ParseInt(sub[1], 10, 64)
				return nil
			}
		}
		return fmt.Errorf("no line with %q in trellis up's output", "released start-up memory")
	})
	pid := sidecarPID(t, workload)
	rss, anon := smapsRollup(t, pid)
	file := rss - anon
	t.Logf("%s: unmapped %.1f MiB of the binary; now RSS %.1f MiB, anonymous %.1f, file-backed %.1f",
		workload, mib(unmapped), mib(rss), mib(anon), mib(file))
	// A started sidecar has ~20 MiB of the binary resident (docs/perf.md);
	// 8 MiB is far below that and far above what a no-op would report.
	if unmapped < 8<<20 {
		t.Errorf("unmapped only %d bytes of the executable", unmapped)
	}
	if file >= unmapped {
		t.Errorf("file-backed RSS %d bytes after unmapping %d: the pages are still mapped", file, unmapped)
	}
}

// smapsRollup returns a process's Rss and Anonymous, in bytes.
func smapsRollup(t testing.TB, pid int) (rss, anon int64) {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatalf("smaps_rollup of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "Rss" && key != "Anonymous") {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if key == "Rss" {
			rss = kb << 10
		} else {
			anon = kb << 10
		}
	}
	if rss == 0 {
		t.Fatalf("smaps_rollup of %d: no Rss in %q", pid, raw)
	}
	return rss, anon
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
