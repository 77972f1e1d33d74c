package sidecar

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the sidecar's GOGC: Go's own default, on purpose.
// Lower values were measured (docs/perf.md, "Sidecar memory"): on the
// HTTP/1.1 fast path, which allocates almost nothing per request, GOGC=25
// costs no CPU and keeps 1–2 MiB idle and up to ~5 MiB under load out of the
// resident set; but HTTP/2 and gRPC still go through net/http (~12 KiB
// allocated per request), where GOGC=50 already costs 20–30% more CPU per
// request and GOGC=25 about 50%. Operators of HTTP/1.1-only workloads can
// set --gc-percent 25.
const DefaultGCPercent = 100

// Memory is the Go runtime's garbage-collector setting for a sidecar
// process: the GC percent (GOGC) and a soft memory limit (GOMEMLIMIT).
//
//	flag given ──► flag value
//	else env set (GOGC, GOMEMLIMIT) ──► left to the runtime, which read it at start
//	else ──► DefaultGCPercent, no limit
type Memory struct {
	GCPercent   int   // GOGC; negative turns the collector off (only with a Limit)
	Limit       int64 // soft memory limit in bytes; math.MaxInt64 = none
	GCSource    string
	LimitSource string // where each came from, for the log: "flag", "environment", "default"
}

// MemoryFlags are the `trellis proxy` flags as given: Set* tell whether the
// user set each flag at all.
type MemoryFlags struct {
	GCPercent    int
	SetGCPercent bool
	Limit        string // GOMEMLIMIT syntax: 64MiB, 1GiB, 50000000, "off"
	SetLimit     bool
}

// ResolveMemory chooses the settings: a flag wins, then the environment
// (getenv, normally os.Getenv), then the defaults. With env set and no flag
// the runtime's own value is kept, so apply reports it unchanged.
func ResolveMemory(f MemoryFlags, getenv func(string) string) (Memory, error) {
	m := Memory{GCPercent: DefaultGCPercent, Limit: math.MaxInt64, GCSource: "default", LimitSource: "default"}
	envGC, envLimit := getenv("GOGC"), getenv("GOMEMLIMIT")
	switch {
	case f.SetGCPercent:
		if f.GCPercent < -1 || f.GCPercent == 0 {
			return Memory{}, fmt.Errorf("--gc-percent: %d: want a positive percent, or -1 (off, only with --memory-limit)", f.GCPercent)
		}
		m.GCPercent, m.GCSource = f.GCPercent, "flag"
	case envGC != "":
		if envGC == "off" {
			m.GCPercent = -1
		} else {
			n, err := strconv.Atoi(envGC)
			if err != nil {
				return Memory{}, fmt.Errorf("GOGC=%q: want a percent or \"off\"", envGC)
			}
			m.GCPercent = n
		}
		m.GCSource = "environment"
	}
	switch {
	case f.SetLimit:
		n, err := ParseByteSize(f.Limit)
		if err != nil {
			return Memory{}, fmt.Errorf("--memory-limit: %w", err)
		}
		m.Limit, m.LimitSource = n, "flag"
	case envLimit != "":
		n, err := ParseByteSize(envLimit)
		if err != nil {
			return Memory{}, fmt.Errorf("GOMEMLIMIT: %w", err)
		}
		m.Limit, m.LimitSource = n, "environment"
	}
	if m.GCPercent < 0 && m.Limit == math.MaxInt64 {
		return Memory{}, fmt.Errorf("garbage collector off (--gc-percent -1 or GOGC=off) without a memory limit: the heap would grow without bound; set --memory-limit")
	}
	return m, nil
}

// Apply sets the runtime's GC percent and memory limit to m. It is process
// wide: only `trellis proxy` calls it, once, before the sidecar starts.
func (m Memory) Apply() {
	debug.SetGCPercent(m.GCPercent)
	debug.SetMemoryLimit(m.Limit)
}

// LimitString is the limit for logs: "off" or a byte size.
func (m Memory) LimitString() string {
	if m.Limit == math.MaxInt64 {
		return "off"
	}
	return FormatByteSize(m.Limit)
}

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

// ParseByteSize parses a size in GOMEMLIMIT's syntax: a non-negative
// integer with an optional unit B, KiB, MiB, GiB or TiB; "off" means no
// limit (math.MaxInt64).
func ParseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "off" {
		return math.MaxInt64, nil
	}
	num, shift := s, uint(0)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: want a byte count like 64MiB, 1GiB or 50000000, or \"off\"", s)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return n << shift, nil
}

// FormatByteSize is the inverse of ParseByteSize for exact multiples of a
// unit: 64MiB, 1536KiB, 1000B.
func FormatByteSize(n int64) string {
	for _, u := range byteUnits {
		if u.shift > 0 && n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
