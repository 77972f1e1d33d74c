package main

import (
	"encoding/json"
	"fmt"
	"os"
)

// ghzResult is the part of ghz's JSON report (-O json) the report uses.
type ghzResult struct {
	Count               int64
	RPS                 float64 `json:"rps"`
	LatencyDistribution []struct {
		Percentage float64
		Latency    float64 // nanoseconds
	}
	StatusCodeDistribution map[string]int64
}

// ghz prints "p50 p99 rps ok errors" (µs, rps, counts) from ghz's JSON report.
// Calls "Canceled" are not errors: ghz cancels those in flight when -z ends.
func ghz(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read ghz result: %w", err)
	}
	var r ghzResult
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("decode ghz result %s: %w", file, err)
	}
	pct := map[float64]float64{}
	for _, p := range r.LatencyDistribution {
		pct[p.Percentage] = p.Latency / 1e3
	}
	for _, want := range []float64{50, 99} {
		if _, ok := pct[want]; !ok {
			return fmt.Errorf("%s: no p%g in ghz's latencyDistribution", file, want)
		}
	}
	ok := r.StatusCodeDistribution["OK"]
	errs := r.Count - ok - r.StatusCodeDistribution["Canceled"]
	fmt.Printf("%.0f %.0f %.1f %d %d\n", pct[50], pct[99], r.RPS, ok, errs)
	return nil
}
