package controlplane

import (
	"fmt"
)

// DefaultGCPercent is the Go GC percent (GOGC) of a process running a
// control plane, unless GOGC is set in its environment or Config.GCPercent
// says otherwise.
//
// The resident set of `trellis control` is its live heap (compiled
// snapshots, the mesh model, the ADS streams' state), its goroutine stacks
// (five goroutines per connected proxy), and the heap's headroom before the
// next collection: at Go's default of 100 the heap may grow to twice the
// live heap plus the stacks. Measured with the scale benchmark at 1,000
// proxies (scale_test.go, 2026-11-22): peak VmRSS 246 MiB at GOGC=100,
// 208–213 MiB at 50, for about 0.8 s more CPU over the whole benchmark
// (+25%: the garbage of 1,000 compiles collected twice as often) and no
// change in push latencies beyond run-to-run noise. The control plane is
// idle between rebuilds, so that is the better trade here; a sidecar, which
// allocates on its request path, keeps Go's default.
const DefaultGCPercent = 50

// gcPercent resolves the GC percent Run applies: ok is false when the
// runtime's own setting must stay (GOGC set in the environment, and no
// Config.GCPercent).
func gcPercent(configured int, getenv func(string) string) (percent int, ok bool, err error) {
	switch {
	case configured < 0:
		return 0, false, fmt.Errorf("GC percent %d: want a positive percent, or 0 for the default (%d, or GOGC from the environment)", configured, DefaultGCPercent)
	case configured > 0:
		return configured, true, nil
	case getenv("GOGC") != "":
		return 0, false, nil
	}
	return DefaultGCPercent, true, nil
}
