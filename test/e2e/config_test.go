package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func testBadInput(t *testing.T, m *mesh) {
	valid := sprintf(vsReviewsWeights, "v1", 50, "v2", 50)
	cases := []struct {
		name string
		doc  string
		want []string // every string must appear in the error
	}{
		{"malformed YAML", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews\n", []string{"bad.yaml"}},
		{"unknown kind", "apiVersion: networking.istio.io/v1\nkind: VirtualSrvice\nmetadata: {name: reviews}\nspec: {}\n", []string{"VirtualSrvice"}},
		{"unknown field", strings.Replace(valid, "  - route:", "  - rout:", 1), []string{"VirtualService default/reviews", "spec.http[0].rout", "unknown field"}},
		{"weights not 100", sprintf(vsReviewsWeights, "v1", 90, "v2", 20), []string{"VirtualService default/reviews", "spec.http[0].route", "weight", "110"}},
		{"one bad document spoils the apply", valid + "---\n" + sprintf(vsReviewsWeights, "v1", 90, "v2", 20), []string{"spec.http[0].route", "110"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "bad.yaml", tc.doc)
			_, verr, err := m.cli("validate", "-f", file)
			if err == nil {
				t.Errorf("trellis validate accepted it")
			}
			_, aerr, err := m.cli("apply", "-f", file)
			if err == nil {
				t.Errorf("trellis apply accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(verr, w) {
					t.Errorf("validate error %q does not mention %q", verr, w)
				}
				if !strings.Contains(aerr, w) {
					t.Errorf("apply error %q does not mention %q", aerr, w)
				}
			}
			if out, _, err := m.cli("get", "virtualservice", "reviews"); err == nil {
				t.Errorf("rejected apply stored something: %s", out)
			}
		})
	}
}

func testUndefinedSubset(t *testing.T, m *mesh) {
	_, stderr := applyYAML(t, m, "reviews-v9.yaml", sprintf(vsReviewsWeights, "v1", 50, "v9", 50))
	defer deleteConfig(t, m, "virtualservice", "reviews")
	if !strings.Contains(stderr, `subset "v9"`) || !strings.Contains(stderr, "spec.http[0].route[1].destination.subset") {
		t.Errorf("apply warning %q does not name subset v9 and its field", stderr)
	}
	reviews := "http://" + m.workload("productpage-v1").Upstreams["reviews"] + "/whoami"
	var sawV1 bool
	eventually(t, 5*time.Second, "a 503 for the undefined subset", func() error {
		start := time.Now()
		code, hdr, _, err := httpGet(reviews)
		if err != nil {
			return err
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("request took %v: a missing subset must fail fast", time.Since(start))
		}
		if code == http.StatusOK {
			sawV1 = true
			return errString("got 200 (v1 half)")
		}
		if code != http.StatusServiceUnavailable || hdr.Get("X-Trellis-Reason") != "cluster_not_found" {
			t.Fatalf("got %d reason %q, want 503 cluster_not_found", code, hdr.Get("X-Trellis-Reason"))
		}
		return nil
	})
	_ = sawV1
}

func testControlPlaneRestart(t *testing.T, m *mesh) {
	details := "http://" + m.workload("productpage-v1").Upstreams["details"] + "/whoami"
	if !m.control.stop(10 * time.Second) {
		t.Fatal("control plane did not stop on SIGTERM")
	}
	// Requests keep flowing on the last good config.
	for i := range 30 {
		if _, err := getWhoami(details); err != nil {
			t.Fatalf("request %d with the control plane down: %v", i, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.startControl()
	m.up = nil // `trellis up` already announced; only the control plane restarted
	m.waitReady(30 * time.Second)
	// New config applies after the restart.
	applyYAML(t, m, "reviews-v2.yaml", sprintf(vsReviewsWeights, "v2", 100, "v1", 0))
	defer deleteConfig(t, m, "virtualservice", "reviews")
	reviews := "http://" + m.workload("productpage-v1").Upstreams["reviews"] + "/whoami"
	eventually(t, 5*time.Second, "the post-restart VirtualService applies", func() error {
		return allAnsweredBy(reviews, "v2", 20)
	})
}

const drReviews = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
  - name: v3
    labels: {version: v3}
`

// testApplyOrder applies a VirtualService before the DestinationRule that
// defines its subset: it is accepted with a warning, fails with a clear 503
// meanwhile, and works as soon as the DestinationRule arrives.
func testApplyOrder(t *testing.T, m *mesh) {
	deleteConfig(t, m, "destinationrule", "reviews")
	defer applyYAML(t, m, "dr.yaml", drReviews) // leave the mesh as the file made it
	_, stderr := applyYAML(t, m, "reviews-v2.yaml", sprintf(vsReviewsWeights, "v2", 100, "v1", 0))
	defer deleteConfig(t, m, "virtualservice", "reviews")
	if !strings.Contains(stderr, `subset "v2"`) {
		t.Errorf("no warning for the undefined subset v2: %q", stderr)
	}
	reviews := "http://" + m.workload("productpage-v1").Upstreams["reviews"] + "/whoami"
	eventually(t, 5*time.Second, "503 cluster_not_found before the DestinationRule", func() error {
		code, hdr, _, err := httpGet(reviews)
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || hdr.Get("X-Trellis-Reason") != "cluster_not_found" {
			return errString(sprintf("got %d %q", code, hdr.Get("X-Trellis-Reason")))
		}
		return nil
	})
	_, stderr = applyYAML(t, m, "dr.yaml", drReviews)
	if strings.Contains(stderr, "Warning") {
		t.Errorf("warning after the DestinationRule completed the config: %q", stderr)
	}
	eventually(t, 5*time.Second, "v2 answers once the DestinationRule exists", func() error {
		return allAnsweredBy(reviews, "v2", 10)
	})
}
