package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// benchOutput is BenchmarkControlPlaneScale's output as `go test` prints it
// (log lines follow the result line).
const benchOutput = `goos: linux
goarch: amd64
pkg: github.com/trellis-mesh/trellis/internal/controlplane
cpu: Intel(R) Xeon(R) Processor
BenchmarkControlPlaneScale-2   	       1	58373101842 ns/op	       254.0 cp-peak-rss-MB	       251.0 cp-rss-MB	         1.291 initial-sync-s	         3.000 flip-pushed/round	        98.00 flip-p99-ms	         3.000 register-pushed/round	        91.00 register-p99-ms	       999.0 vs-edit-pushed/round	      1084 vs-edit-p99-ms
--- BENCH: BenchmarkControlPlaneScale-2
    scale_test.go:54: mesh: 1000 services × 10 workloads = 10000 endpoints, 1000 connected proxies
    scale_test.go:55: initial sync (control plane start, full compile, 1000 clients connected and synced): 1.291032544s
    scale_test.go:78: endpoint flips: workload s0500-w1; 3 connected proxies call s0500
    scale_test.go:67: flip: 5 rounds, 15 arrivals: p50 66.172ms p99 98.3ms max 98.3ms; clients pushed per round 3.0; never arrived 0
    scale_test.go:67: register: 5 rounds, 15 arrivals: p50 67.9ms p99 91.2ms max 91.2ms; clients pushed per round 3.0; never arrived 0
    scale_test.go:67: vs-edit: 5 rounds, 4995 arrivals: p50 301.5ms p99 1.0838s max 1.2s; clients pushed per round 999.0; never arrived 0
    scale_test.go:124: memory (trellis control process alone): VmRSS 251 MB, peak VmHWM 254 MB
PASS
ok  	github.com/trellis-mesh/trellis/internal/controlplane	62.123s
`

func TestParseCPScale(t *testing.T) {
	s, err := parseCPScale(strings.NewReader(benchOutput))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	s.shell(&got)
	want := `CP_SERVICES=1000
CP_PER_SERVICE=10
CP_ENDPOINTS=10000
CP_PROXIES=1000
CP_SYNC_MS=1291
CP_FLIP_AFFECTED=3
CP_FLIP_ROUNDS=5
CP_FLIP_P50_MS=66
CP_FLIP_P99_MS=98
CP_FLIP_MAX_MS=98
CP_FLIP_PUSHED=3.0
CP_FLIP_NEVER=0
CP_REG_ROUNDS=5
CP_REG_P50_MS=68
CP_REG_P99_MS=91
CP_REG_MAX_MS=91
CP_REG_PUSHED=3.0
CP_REG_NEVER=0
CP_VS_ROUNDS=5
CP_VS_P50_MS=302
CP_VS_P99_MS=1084
CP_VS_MAX_MS=1200
CP_VS_PUSHED=999.0
CP_VS_NEVER=0
CP_RSS_MB=251
CP_PEAK_MB=254
`
	if diff := cmp.Diff(want, got.String()); diff != "" {
		t.Errorf("shell assignments (-want +got):\n%s", diff)
	}
}

// go test keeps only the first lines of a benchmark's log: figures whose
// lines were cut come from the metrics, and what only a log line carries is
// left empty rather than guessed.
func TestParseCPScaleTruncatedLog(t *testing.T) {
	var cut []string
	for _, l := range strings.Split(benchOutput, "\n") {
		if strings.Contains(l, "vs-edit:") || strings.Contains(l, "memory (") {
			continue
		}
		cut = append(cut, l)
	}
	s, err := parseCPScale(strings.NewReader(strings.Join(cut, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	vs := s.Kinds["vs-edit"]
	if vs.P99 != 1084*time.Millisecond || vs.PushedPerRound != 999 || vs.P50 != -1 || vs.NeverArrived != -1 {
		t.Errorf("vs-edit from metrics = %+v", vs)
	}
	if s.RSSMB != 251 || s.PeakRSSMB != 254 {
		t.Errorf("RSS from metrics = %v / %v, want 251 / 254", s.RSSMB, s.PeakRSSMB)
	}
	var out bytes.Buffer
	s.shell(&out)
	for _, want := range []string{"CP_VS_P50_MS=\n", "CP_VS_NEVER=\n", "CP_VS_P99_MS=1084\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("shell output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseCPScaleErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":           "",
		"build failure":   "# github.com/trellis-mesh/trellis/internal/proxy\ninternal/proxy/x.go:1: undefined: y\nFAIL\n",
		"failed at start": "--- FAIL: BenchmarkControlPlaneScale\n    scale_test.go:54: mesh: 1000 services × 10 workloads = 10000 endpoints, 0 connected proxies\n",
		"bad duration":    "    mesh: 10 services × 1 workloads = 10 endpoints, 10 connected proxies\n    initial sync (x): soon\n",
	} {
		if _, err := parseCPScale(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestConfigVerdict(t *testing.T) {
	row := func(services, upstreams, bytes int) configSize {
		return configSize{Services: services, Upstreams: upstreams, Bytes: bytes}
	}
	tests := []struct {
		name string
		all  []configSize
		want bool
	}{
		{"flat", []configSize{row(100, 1, 2000), row(100, 4, 8000), row(100, 16, 32000),
			row(1000, 1, 2001), row(1000, 4, 8010), row(1000, 16, 32100)}, true},
		{"grows with the mesh", []configSize{row(100, 1, 2000), row(100, 4, 8000), row(100, 16, 32000),
			row(1000, 1, 2000), row(1000, 4, 8000), row(1000, 16, 64000)}, false},
		{"empty config", []configSize{row(100, 1, 0), row(100, 4, 0), row(100, 16, 0),
			row(1000, 1, 0), row(1000, 4, 0), row(1000, 16, 0)}, false},
		{"nothing", nil, false},
	}
	for _, tt := range tests {
		if got, why := configVerdict(tt.all); got != tt.want {
			t.Errorf("%s: verdict %t (%s), want %t", tt.name, got, why, tt.want)
		}
	}
}
