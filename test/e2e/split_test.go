package e2e

import (
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const vsReviewsWeights = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: %s}
      weight: %d
    - destination: {host: reviews, subset: %s}
      weight: %d
`

func testSplit(t *testing.T, m *mesh) {
	out, _ := applyYAML(t, m, "reviews-90-10.yaml", mustRead(t, "examples/bookinfo/reviews-90-10.yaml"))
	if !strings.Contains(out, "VirtualService default/reviews") {
		t.Errorf("apply output %q does not name the VirtualService", out)
	}
	defer deleteConfig(t, m, "virtualservice", "reviews")
	reviews := "http://" + m.workload("productpage-v1").Upstreams["reviews"] + "/whoami"

	// Wait for the split to reach productpage's sidecar: v3 never answers under it.
	eventually(t, 5*time.Second, "90/10 applied", func() error {
		for range 50 {
			if w, err := getWhoami(reviews); err != nil || w.Version == "v3" {
				return errString("v3 still answers")
			}
		}
		return nil
	})

	const n = 1000
	counts := map[string]int{}
	for range n {
		w, err := getWhoami(reviews)
		if err != nil {
			t.Fatal(err)
		}
		counts[w.Version]++
	}
	// Binomial(n=1000, p=0.1): sd ≈ 9.5; ±45 is more than 4.7 sd, so a
	// correct split fails this about once in a million runs.
	if counts["v3"] != 0 || math.Abs(float64(counts["v2"])-100) > 45 || counts["v1"]+counts["v2"] != n {
		t.Fatalf("over %d requests: %v, want about 900 v1 / 100 v2", n, counts)
	}
	t.Logf("90/10 split over %d requests: %v", n, counts)

	// Change it under load: every request must succeed, and v3 must take all
	// traffic within 2 s of the apply returning.
	var failures, total atomic.Int64
	var lastNonV3 atomic.Int64 // unix nanos of the last answer not from v3
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				w, err := getWhoami(reviews)
				if err != nil {
					failures.Add(1)
					continue
				}
				if w.Version != "v3" {
					lastNonV3.Store(time.Now().UnixNano())
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	applyYAML(t, m, "reviews-v3.yaml", sprintf(vsReviewsWeights, "v3", 100, "v1", 0))
	applied := time.Now()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	took := time.Duration(lastNonV3.Load() - applied.UnixNano())
	if took > 2*time.Second {
		t.Errorf("v3 took %v to receive all traffic, want under 2s", took)
	}
	if failures.Load() != 0 {
		t.Errorf("%d of %d requests failed during the change", failures.Load(), total.Load())
	}
	t.Logf("change took effect within %v; %d requests, %d failures", max(took, 0), total.Load(), failures.Load())
}
