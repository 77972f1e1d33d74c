package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/examples/demoapp"
)

// TestTraffic applies each example of examples/traffic/ unchanged to a mesh of
// a client and three httpbin instances (v1a, v1b: subset v1; v2: subset v2)
// and shows its effect with real requests through the client's sidecar.
func TestTraffic(t *testing.T) {
	m := startMesh(t, "examples/traffic/mesh.yaml")
	defer m.up.stop(10 * time.Second)
	defer m.control.stop(5 * time.Second)
	tm := &trafficMesh{mesh: m, base: "http://" + m.workload("client-v1").Upstreams["httpbin"]}
	for _, name := range []string{"httpbin-v1a", "httpbin-v1b", "httpbin-v2"} {
		tm.apps = append(tm.apps, httpbinApp{name: name, url: "http://" + m.workload(name).App})
	}

	steps := []struct {
		name string
		run  func(*testing.T, *trafficMesh)
	}{
		{"canary", testCanary},
		{"content-routing", testContentRouting},
		{"retries", testRetries},
		{"default-retries", testDefaultRetries},
		{"fault-injection", testFaultInjection},
		{"circuit-breaker", testCircuitBreaker},
		{"outlier-detection", testOutlierDetection},
		{"session-affinity", testSessionAffinity},
		{"least-request", testLeastRequest},
		{"mirroring", testMirroring},
		{"rate-limit", testRateLimit},
		{"rate-limit-envoyfilter", testRateLimitEnvoyFilter},
		{"service-profile", testServiceProfile},
		{"httproute", testHTTPRoute},
		{"traffic-split", testTrafficSplit},
	}
	for _, s := range steps {
		tm.reset(t)
		if !t.Run(s.name, func(t *testing.T) { s.run(t, tm) }) {
			t.Logf("sidecar logs of the failed step:\n%s", tail(m.up.out.String(), 60))
		}
	}
}

type trafficMesh struct {
	*mesh
	base string // client's outbound URL for httpbin
	apps []httpbinApp
}

type httpbinApp struct{ name, url string }

// reset removes every traffic config the examples create and puts the apps back to normal.
func (tm *trafficMesh) reset(t *testing.T) {
	t.Helper()
	for _, kc := range [][2]string{{"virtualservice", "httpbin"}, {"ratelimit", "httpbin"}, {"envoyfilter", "httpbin-ratelimit"},
		{"serviceprofile", "httpbin.default.svc.cluster.local"}, {"httproute", "httpbin"},
		{"trafficsplit", "website"}} {
		_, _, _ = tm.cli("delete", kc[0], kc[1]) // absent is fine
	}
	// The DestinationRule of mesh.yaml (the document after the Mesh), as `trellis up` applied it.
	mesh := mustRead(t, "examples/traffic/mesh.yaml")
	applyYAML(t, tm.mesh, "httpbin-dr.yaml", mesh[strings.Index(mesh, "\n---\n")+5:])
	for _, a := range tm.apps {
		a.control(t, "reset", "")
	}
	tm.waitSynced(t)
}

// apply applies examples/traffic/<example> unchanged and waits for every sidecar to have it.
func (tm *trafficMesh) apply(t *testing.T, example string) { tm.applyExample(t, "traffic/"+example) }

func (tm *trafficMesh) applyDoc(t *testing.T, name, doc string) {
	t.Helper()
	applyYAML(t, tm.mesh, name, doc)
	tm.waitSynced(t)
}

// clientStats returns the client sidecar's stats lines for httpbin that contain any of words.
func (tm *trafficMesh) clientStats(t *testing.T, words ...string) string {
	t.Helper()
	_, _, body, err := httpGet("http://" + tm.workload("client-v1").Admin + "/stats")
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if !strings.Contains(line, "httpbin") {
			continue
		}
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func (a httpbinApp) control(t *testing.T, verb, query string) {
	t.Helper()
	method := http.MethodPost
	req, _ := http.NewRequest(method, a.url+"/control/"+verb+query, nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s control %s: %v", a.name, verb, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("%s control %s%s: %d", a.name, verb, query, resp.StatusCode)
	}
}

func (a httpbinApp) stats(t *testing.T) demoapp.HttpbinStats {
	t.Helper()
	_, _, body, err := httpGet(a.url + "/control/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st demoapp.HttpbinStats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%s stats: %v: %s", a.name, err, body)
	}
	return st
}

func (tm *trafficMesh) totalRequests(t *testing.T) (sum int64, each map[string]int64) {
	each = map[string]int64{}
	for _, a := range tm.apps {
		n := a.stats(t).Requests
		each[a.name] = n
		sum += n
	}
	return sum, each
}

// do sends one request through the client's sidecar.
func (tm *trafficMesh) do(method, path string, header ...string) (*http.Response, string, error) {
	req, err := http.NewRequest(method, tm.base+path, nil)
	if err != nil {
		return nil, "", err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// servedBy sends n requests and counts who served them (by X-Served-By, or
// "status NNN" for other answers).
func (tm *trafficMesh) servedBy(t *testing.T, n int, method, path string, header ...string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		resp, body, err := tm.do(method, path, header...)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			counts[fmt.Sprintf("status %d %s", resp.StatusCode, resp.Header.Get("X-Trellis-Reason"))]++
			_ = body
			continue
		}
		counts[resp.Header.Get(demoapp.HeaderServedBy)]++
	}
	return counts
}

func v2Count(c map[string]int) int { return c["httpbin-v2"] }
func v1Count(c map[string]int) int { return c["httpbin-v1a"] + c["httpbin-v1b"] }

func testCanary(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "canary.yaml")
	if c := tm.servedBy(t, 100, "GET", "/get", "end-user", "jason"); v2Count(c) != 100 {
		t.Fatalf("end-user: jason: %v, want all 100 on v2", c)
	}
	const n = 1000
	c := tm.servedBy(t, n, "GET", "/get")
	// Binomial(1000, 0.1): sd ≈ 9.5, ±45 is 4.7 sd.
	if v1Count(c)+v2Count(c) != n || math.Abs(float64(v2Count(c))-100) > 45 {
		t.Fatalf("90/10 over %d requests: %v", n, c)
	}
	t.Logf("canary 90/10 over %d requests: %v", n, c)

	// trellis explain reads the client sidecar's own config and says the same.
	type explained struct {
		Config struct{ Source string } `json:"config"`
		Routes []struct {
			Matched bool `json:"matched"`
		} `json:"routes"`
		Clusters []struct {
			Subset      string  `json:"subset"`
			Probability float64 `json:"probability"`
		} `json:"clusters"`
	}
	explain := func(args ...string) explained {
		t.Helper()
		out, errOut, err := tm.cli(append([]string{"explain", "--from", "client-v1", "-o", "json"}, args...)...)
		if err != nil {
			t.Fatalf("trellis explain %v: %v\n%s%s", args, err, out, errOut)
		}
		var e explained
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Fatalf("trellis explain -o json: %v\n%s", err, out)
		}
		return e
	}
	e := explain("GET", "http://httpbin:8000/get", "-H", "end-user: jason")
	if e.Config.Source != "sidecar" || len(e.Routes) == 0 || !e.Routes[0].Matched || len(e.Clusters) != 1 || e.Clusters[0].Subset != "v2" {
		t.Errorf("explain with end-user: jason: %+v, want the first route and subset v2 from the sidecar's config", e)
	}
	e = explain("GET", "httpbin/get")
	if len(e.Clusters) != 2 || e.Clusters[0].Probability != 0.9 || e.Clusters[1].Probability != 0.1 {
		t.Errorf("explain without the header: %+v, want v1 0.9 and v2 0.1", e.Clusters)
	}
}

func testContentRouting(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "content-routing.yaml")
	cases := []struct {
		name, path string
		header     []string
		v2         bool
	}{
		{"cookie user=jason", "/get", []string{"Cookie", "user=jason"}, true},
		// The regex is Istio's documented one: user=jason must come first or
		// right after a ';' without a space, as in Envoy.
		{"cookie before others", "/get", []string{"Cookie", "user=jason; theme=dark"}, true},
		{"cookie after another without space", "/get", []string{"Cookie", "theme=dark;user=jason"}, true},
		{"cookie of another user", "/get", []string{"Cookie", "user=jasonx"}, false},
		{"query version=v2", "/get?version=v2", nil, true},
		{"query version=v1", "/get?version=v1", nil, false},
		{"path /v2/ rewritten", "/v2/get", nil, true},
		{"plain", "/get", nil, false},
	}
	for _, tc := range cases {
		c := tm.servedBy(t, 20, "GET", tc.path, tc.header...)
		if tc.v2 && v2Count(c) != 20 || !tc.v2 && v1Count(c) != 20 {
			t.Errorf("%s: %v, want all on %s", tc.name, c, map[bool]string{true: "v2", false: "v1"}[tc.v2])
		}
	}
	// The app sees the rewritten path.
	resp, body, err := tm.do("GET", "/v2/anything/x")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v2/anything/x: %v %v", err, resp)
	}
	var e demoapp.HttpbinEcho
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Path != "/anything/x" {
		t.Errorf("app saw path %q (err %v), want /anything/x", e.Path, err)
	}
}

func testRetries(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "retries.yaml")
	v1a, v1b := tm.apps[0], tm.apps[1]

	// The steps share one retry budget window (10s): the cheap ones first.

	// Per-try timeout: v1a answers after 1.5s, beyond the 500ms per try; v1b is fast.
	v1a.control(t, "delay", "?d=1500ms")
	start := time.Now()
	if c := tm.servedBy(t, 10, "GET", "/get"); c["httpbin-v1b"] != 10 {
		t.Errorf("with v1a slow: %v, want all answered by v1b\n%s", c, tm.clientStats(t, "retries", "5xx"))
	}
	if el := time.Since(start); el > 8*time.Second {
		t.Errorf("10 requests took %v: the per-try timeout did not cut the slow attempts", el)
	}

	// Overall timeout: both slow → 504 after about 2s.
	v1b.control(t, "delay", "?d=5s")
	start = time.Now()
	resp, _, err := tm.do("GET", "/get")
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); resp.StatusCode != http.StatusGatewayTimeout || el < 1500*time.Millisecond || el > 4*time.Second {
		t.Errorf("both slow: %d after %v, want 504 after about 2s\n%s", resp.StatusCode, el, tm.clientStats(t, "retries", "5xx"))
	}
	v1a.control(t, "reset", "")
	v1b.control(t, "reset", "")

	// One of two endpoints fails every request: retries go to the other one.
	// (Round robin advances on retries too, so every first attempt lands on
	// v1a: one retry per request.)
	v1a.control(t, "fail", "?status=503")
	if c := tm.servedBy(t, 50, "GET", "/get"); c["httpbin-v1b"] != 50 {
		t.Fatalf("with v1a failing: %v, want every request answered by v1b", c)
	}
	// POST is retried too: the route asked for retries explicitly.
	if c := tm.servedBy(t, 10, "POST", "/anything"); c["httpbin-v1b"] != 10 {
		t.Errorf("POST with v1a failing: %v, want all 10 answered by v1b", c)
	}
	v1a.control(t, "reset", "")

	// Retry budget: every endpoint fails. Without a budget each request would
	// cost 4 upstream attempts; the budget allows 20% of requests plus 10/s.
	for _, a := range tm.apps {
		a.control(t, "fail", "?status=503")
	}
	const n = 300
	start = time.Now()
	c := tm.servedBy(t, n, "GET", "/get")
	elapsed := time.Since(start)
	total, each := tm.totalRequests(t)
	// The window (10s) also holds the ≤ 72 requests of the steps above.
	window := math.Max(elapsed.Seconds(), 10)
	allowed := int64(n + 0.2*(n+72) + 10*window + 10)
	t.Logf("budget: %d requests in %v cost %d upstream attempts %v (allowed ≤ %d; answers %v)", n, elapsed.Round(time.Millisecond), total, each, allowed, c)
	if c["status 503 "] != n && c["status 503"] != n {
		t.Logf("answers: %v", c)
	}
	if total > allowed {
		t.Errorf("upstream saw %d attempts for %d requests: more than the budget allows (%d)", total, n, allowed)
	}
	if total <= n {
		t.Errorf("upstream saw %d attempts for %d requests: no retries at all", total, n)
	}
}

// testDefaultRetries: without a VirtualService, Istio's default policy
// retries idempotent requests on 503, never a POST.
func testDefaultRetries(t *testing.T, tm *trafficMesh) {
	tm.apps[0].control(t, "fail", "?status=503")
	tm.apps[1].control(t, "fail", "?status=503")
	// GET: retried (twice) to another endpoint; v2 is healthy, so most succeed.
	c := tm.servedBy(t, 60, "GET", "/get")
	if v2Count(c) < 50 {
		t.Errorf("GET with both v1 failing, default retries: %v, want nearly all answered by v2", c)
	}
	before, _ := tm.totalRequests(t)
	c = tm.servedBy(t, 60, "POST", "/anything")
	after, _ := tm.totalRequests(t)
	if after-before != 60 {
		t.Errorf("60 POSTs cost %d upstream requests: a POST was retried without being asked (%v)", after-before, c)
	}
}

func testFaultInjection(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "fault-injection.yaml")
	start := time.Now()
	resp, _, err := tm.do("GET", "/get", "end-user", "jason")
	if el := time.Since(start); err != nil || resp.StatusCode != 200 || el < time.Second {
		t.Errorf("jason: %v %v after %v, want 200 after ≥ 1s", err, resp, el)
	}
	start = time.Now()
	if resp, _, err := tm.do("GET", "/get"); err != nil || resp.StatusCode != 200 || time.Since(start) > 500*time.Millisecond {
		t.Errorf("others: %v %v after %v, want 200 at once", err, resp, time.Since(start))
	}

	before, _ := tm.totalRequests(t)
	const n = 400
	c := tm.servedBy(t, n, "GET", "/status/200")
	after, _ := tm.totalRequests(t)
	aborted := c["status 503 fault_abort"]
	// Binomial(400, 0.5): sd = 10; ±50 is 5 sd.
	if math.Abs(float64(aborted)-n/2) > 50 || aborted+v1Count(c) != n {
		t.Errorf("abort 50%% over %d: %v", n, c)
	}
	if got := after - before; got != int64(n-aborted) {
		t.Errorf("the app saw %d requests, want the %d not aborted", got, n-aborted)
	}
	t.Logf("fault abort 50%% over %d requests: %v", n, c)
}

// concurrent runs workers goroutines sending GET path until each sent per requests.
func (tm *trafficMesh) concurrent(t *testing.T, workers, per int, path string) (map[string]int, []time.Duration) {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var overflowLatency []time.Duration
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				start := time.Now()
				resp, _, err := tm.do("GET", path)
				el := time.Since(start)
				mu.Lock()
				switch {
				case err != nil:
					counts["error"]++
				case resp.StatusCode == 200:
					counts[resp.Header.Get(demoapp.HeaderServedBy)]++
				default:
					reason := resp.Header.Get("X-Trellis-Reason")
					counts[fmt.Sprintf("status %d %s", resp.StatusCode, reason)]++
					if reason == "upstream_overflow" {
						overflowLatency = append(overflowLatency, el)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return counts, overflowLatency
}

func testCircuitBreaker(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "circuit-breaker.yaml")
	// 20 concurrent callers against 100ms answers: one connection and one
	// pending request per endpoint's pool, the rest fails fast.
	c, lat := tm.concurrent(t, 20, 10, "/delay/0.1")
	overflow := c["status 503 upstream_overflow"]
	if overflow == 0 || v1Count(c)+v2Count(c) == 0 {
		t.Fatalf("20 concurrent callers: %v, want some answered and some 503 upstream_overflow", c)
	}
	slow := 0
	for _, d := range lat {
		if d > 50*time.Millisecond {
			slow++
		}
	}
	if slow > len(lat)/10 {
		t.Errorf("%d of %d overflow answers took > 50ms: not failing fast", slow, len(lat))
	}
	t.Logf("circuit breaker, 20 callers × 10 requests: %v", c)
}

func testOutlierDetection(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "outlier-detection.yaml")
	v1a := tm.apps[0]
	v1a.control(t, "fail", "?status=503")
	// 3 consecutive 5xx eject v1a: after a warm-up, it sees no traffic.
	tm.servedBy(t, 30, "GET", "/get")
	before := v1a.stats(t).Requests
	c := tm.servedBy(t, 60, "GET", "/get")
	if got := v1a.stats(t).Requests - before; got != 0 {
		t.Errorf("v1a still got %d requests after failing: not ejected (%v)", got, c)
	}
	// maxEjectionPercent 50: with every endpoint failing, no more than one of three is ejected.
	for _, a := range tm.apps[1:] {
		a.control(t, "fail", "?status=503")
	}
	tm.servedBy(t, 60, "GET", "/get")
	_, each1 := tm.totalRequests(t)
	tm.servedBy(t, 30, "GET", "/get")
	_, each2 := tm.totalRequests(t)
	receiving := 0
	for name := range each2 {
		if each2[name] > each1[name] {
			receiving++
		}
	}
	if receiving < 2 {
		t.Errorf("with all failing, only %d endpoints receive traffic: more than 50%% ejected (%v → %v)", receiving, each1, each2)
	}
	// Back after baseEjectionTime (10s) once it stops failing.
	for _, a := range tm.apps {
		a.control(t, "reset", "")
	}
	eventually(t, 25*time.Second, "v1a back in rotation", func() error {
		tm.servedBy(t, 10, "GET", "/get")
		if v1a.stats(t).Requests == 0 {
			return errString("v1a gets nothing")
		}
		return nil
	})
}

func testSessionAffinity(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "session-affinity.yaml")
	for _, user := range []string{"alice", "bob", "carol", "dave"} {
		c := tm.servedBy(t, 20, "GET", "/get", "Cookie", "user="+user)
		if len(c) != 1 {
			t.Errorf("user=%s: %v, want one endpoint", user, c)
		}
	}
	resp, _, err := tm.do("GET", "/get")
	if err != nil {
		t.Fatal(err)
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "user" {
			cookie = ck
		}
	}
	if cookie == nil {
		t.Fatalf("no user cookie set on a request without one: %v", resp.Header["Set-Cookie"])
	}
	if c := tm.servedBy(t, 20, "GET", "/get", "Cookie", "user="+cookie.Value); len(c) != 1 {
		t.Errorf("with the generated cookie: %v, want one endpoint", c)
	}
}

func testLeastRequest(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "least-request.yaml")
	// v1a answers in 300ms, the others at once: with 6 concurrent callers,
	// least request sends most requests elsewhere (round robin would give v1a a third).
	tm.apps[0].control(t, "delay", "?d=300ms")
	c, _ := tm.concurrent(t, 6, 25, "/get")
	total := v1Count(c) + v2Count(c)
	if total != 150 || float64(c["httpbin-v1a"]) > 0.20*float64(total) {
		t.Errorf("least request with v1a slow: %v, want v1a ≤ 20%% of 150 (round robin: 33%%)", c)
	}
	t.Logf("least request with v1a slow: %v", c)
}

func testMirroring(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "mirroring.yaml")
	v2 := tm.apps[2]
	v2.control(t, "delay", "?d=1s") // a slow mirror must not slow the caller
	const n = 20
	start := time.Now()
	c := tm.servedBy(t, n, "GET", "/anything/m")
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("%d requests took %v with a 1s mirror: the mirror delays callers", n, el)
	}
	if v1Count(c) != n {
		t.Errorf("answers %v, want all from v1", c)
	}
	eventually(t, 10*time.Second, "mirror copies reach v2", func() error {
		if got := v2.stats(t).ByPath["/anything/m"]; got < n*9/10 {
			return fmt.Errorf("v2 got %d of %d copies", got, n)
		}
		return nil
	})
}

func testRateLimit(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "rate-limit.yaml")
	// 3 instances × 10 tokens; a quick burst of 90 gets about 30 through.
	var ok, limited atomic.Int64
	var hint atomic.Value
	for range 90 {
		resp, _, err := tm.do("GET", "/get")
		if err != nil {
			t.Fatal(err)
		}
		switch resp.StatusCode {
		case 200:
			ok.Add(1)
		case http.StatusTooManyRequests:
			limited.Add(1)
			hint.Store(resp.Header.Get("X-Ratelimit-Limit") + " " + resp.Header.Get("X-Trellis-Reason"))
		}
	}
	t.Logf("rate limit burst of 90: %d ok, %d limited (hint %v)", ok.Load(), limited.Load(), hint.Load())
	if limited.Load() == 0 || ok.Load() < 25 || ok.Load() > 60 {
		t.Errorf("burst of 90 against 3×10 tokens/s: %d ok, %d limited", ok.Load(), limited.Load())
	}
	if h, _ := hint.Load().(string); !strings.Contains(h, "rate_limited") || strings.HasPrefix(h, " ") {
		t.Errorf("429 answers carry %q, want x-ratelimit-limit and x-trellis-reason rate_limited", h)
	}
}

func testRateLimitEnvoyFilter(t *testing.T, tm *trafficMesh) {
	tm.apply(t, "rate-limit-envoyfilter.yaml")
	// v2 only, 4 per minute: route everything to v2 with the canary's jason rule.
	tm.apply(t, "canary.yaml")
	c := tm.servedBy(t, 10, "GET", "/get", "end-user", "jason")
	if v2Count(c) != 4 || c["status 429 rate_limited"] != 6 {
		t.Errorf("10 requests to v2 with 4 tokens per minute: %v, want 4 answered and 6 × 429", c)
	}
	// The filter's response_headers_to_add mark limited answers.
	resp, _, err := tm.do("GET", "/get", "end-user", "jason")
	if err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Local-Rate-Limit") != "true" {
		t.Errorf("limited answer: %v %v, want 429 with x-local-rate-limit: true", err, resp)
	}
}
