package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/examples/demoapp"
)

// testServiceProfile: a Linkerd ServiceProfile's retryable route retries on
// another endpoint, its other routes do not, and its timeout holds.
func testServiceProfile(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "service-profile.yaml")
	v1a := tm.apps[0]
	v1a.control(t, "fail", "?status=503")
	if c := tm.servedBy(t, 30, "GET", "/status/200"); c["httpbin-v1a"] != 0 || v1Count(c)+v2Count(c) != 30 {
		t.Errorf("retryable route with v1a failing: %v, want all 30 answered by the others", c)
	}
	// Not retryable: the catch-all route gives v1a's 503 to the caller.
	if c := tm.servedBy(t, 30, "GET", "/get"); c["status 503 "] == 0 {
		t.Errorf("route without isRetryable with v1a failing: %v, want some 503 from v1a", c)
	}
	v1a.control(t, "reset", "")
	for _, a := range tm.apps {
		a.control(t, "delay", "?d=2s")
	}
	start := time.Now()
	resp, _, err := tm.do("POST", "/anything")
	if el := time.Since(start); err != nil || resp.StatusCode != http.StatusGatewayTimeout || el > 1500*time.Millisecond {
		t.Errorf("POST /anything with 2s answers: %v %v after %v, want 504 after the profile's 300ms", err, resp, el)
	}
}

// testHTTPRoute: a Gateway API HTTPRoute attached to the Service matches
// path and header, adds a request header, and its timeout holds.
func testHTTPRoute(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "httproute.yaml")
	echo := func(header ...string) (int, demoapp.HttpbinEcho) {
		t.Helper()
		resp, body, err := tm.do("GET", "/anything/x", header...)
		if err != nil {
			t.Fatal(err)
		}
		var e demoapp.HttpbinEcho
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
		}
		return resp.StatusCode, e
	}
	if code, e := echo("x-canary", "true"); code != 200 || len(e.Headers["X-Route"]) != 1 || e.Headers["X-Route"][0] != "canary" {
		t.Errorf("x-canary: true: %d, app saw X-Route %v, want canary", code, e.Headers["X-Route"])
	}
	if code, e := echo(); code != 200 || len(e.Headers["X-Route"]) != 0 {
		t.Errorf("without x-canary: %d, app saw X-Route %v, want none", code, e.Headers["X-Route"])
	}
	for _, a := range tm.apps {
		a.control(t, "delay", "?d=2s")
	}
	start := time.Now()
	code, _ := echo("x-canary", "true")
	if el := time.Since(start); code != http.StatusGatewayTimeout || el > 1500*time.Millisecond {
		t.Errorf("x-canary with 2s answers: %d after %v, want 504 after the rule's 500ms", code, el)
	}
}

// testTrafficSplit: an SMI TrafficSplit sends the root service's requests to
// its backend services by weight; without it the root service's own
// workload serves them.
func testTrafficSplit(t *testing.T, tm *trafficMesh) {
	website := "http://" + tm.workload("client-v1").Upstreams["website"]
	get := func() (int, string) {
		t.Helper()
		code, hdr, _, err := httpGet(website + "/get")
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusOK {
			return code, hdr.Get("X-Trellis-Reason")
		}
		return code, hdr.Get(demoapp.HeaderServedBy)
	}
	if code, who := get(); code != http.StatusOK || who != "website" {
		t.Fatalf("website without a split: %d %s, want 200 from the root's own workload", code, who)
	}
	tm.apply(t, "traffic-split.yaml")
	// 1,000 requests at 75/25: the count of website-v1 is binomial with
	// sigma = sqrt(1000*0.75*0.25) = 13.7; 4 sigma is +-55.
	const n = 1000
	counts := map[string]int{}
	for range n {
		code, who := get()
		if code != http.StatusOK {
			t.Fatalf("website with the split: %d %s", code, who)
		}
		counts[who]++
	}
	if v1 := counts["website-v1"]; v1 < 750-55 || v1 > 750+55 || counts["website-v1"]+counts["website-v2"] != n {
		t.Errorf("75/25 split over %d requests: %v, want website-v1 in 695..805 and nothing else", n, counts)
	}
	t.Logf("75/25 split over %d requests: %v", n, counts)
	deleteConfig(t, tm.mesh, "trafficsplit", "website")
	tm.waitSynced(t)
	if code, who := get(); code != http.StatusOK || who != "website" {
		t.Errorf("website after deleting the split: %d %s, want 200 from the root's own workload again", code, who)
	}
}
