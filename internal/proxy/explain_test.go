package proxy

import (
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

func golden(t *testing.T, name string) *resources.Set {
	t.Helper()
	return loadGoldenSet(t, filepath.Join("..", "compile", "testdata", name))
}

func explainHeaders(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// routeLine summarizes a verdict: "index name matched|reason".
func routeLines(ex *Explanation) []string {
	var out []string
	for _, v := range ex.Routes {
		s := v.Name + ": "
		if v.Matched {
			s += "matched"
		} else {
			s += v.Reason
		}
		out = append(out, s)
	}
	return out
}

type clusterLine struct {
	Name        string
	Probability float64
	Result      string
}

func clusterLines(ex *Explanation) []clusterLine {
	var out []clusterLine
	for _, c := range ex.Clusters {
		out = append(out, clusterLine{c.Name, c.Probability, c.Result})
	}
	return out
}

func TestExplainRouting(t *testing.T) {
	for _, tc := range []struct {
		name, golden string
		req          ExplainRequest
		wantOutcome  string
		wantRoutes   []string // each route tried: matched, or why not
		wantClusters []clusterLine
	}{
		{
			name: "header match wins", golden: "header-match.golden.json",
			req:          ExplainRequest{Destination: "reviews", Target: "/reviews/1", Headers: explainHeaders("End-User", "jason")},
			wantOutcome:  OutcomeForward,
			wantRoutes:   []string{"reviews.http[0].match[0] jason: matched"},
			wantClusters: []clusterLine{{"outbound|9080|v2|reviews", 1, ClusterOK}},
		},
		{
			name: "first match wins, earlier route fails on its header", golden: "header-match.golden.json",
			req:         ExplainRequest{Destination: "reviews.default.svc.cluster.local:9080", Target: "/", Headers: explainHeaders("Cookie", "a=1;user=jason")},
			wantOutcome: OutcomeForward,
			wantRoutes: []string{
				`reviews.http[0].match[0] jason: header end-user: got (absent), want exact "jason"`,
				"reviews.http[0].match[1] jason: matched",
			},
			wantClusters: []clusterLine{{"outbound|9080|v2|reviews", 1, ClusterOK}},
		},
		{
			name: "default route after every rule failed", golden: "header-match.golden.json",
			req:         ExplainRequest{Destination: "reviews", Target: "/reviews/7", Headers: explainHeaders("X-Canary", "no", "End-User", "bob")},
			wantOutcome: OutcomeForward,
			wantRoutes: []string{
				`reviews.http[0].match[0] jason: header end-user: got "bob", want exact "jason"`,
				`reviews.http[0].match[1] jason: header cookie: got (absent), want regex "^(.*?;)?(user=jason)(;.*)?$" (whole value)`,
				`reviews.http[1].match[0]: path: got "/reviews/7", want prefix "/api" (any case)`,
				`reviews.http[1].match[1]: path: got "/reviews/7", want exact "/health"`,
				`reviews.http[1].match[2]: header x-canary: got "no", want prefix "yes"`,
				"reviews.http[2]: matched",
			},
			wantClusters: []clusterLine{{"outbound|9080|v1|reviews", 1, ClusterOK}},
		},
		{
			name: "weighted split", golden: "split-90-10.golden.json",
			req:         ExplainRequest{Destination: "reviews", Target: "/reviews/1"},
			wantOutcome: OutcomeForward,
			wantRoutes:  []string{"reviews.http[0]: matched"},
			wantClusters: []clusterLine{
				{"outbound|9080|v1|reviews", 0.9, ClusterOK},
				{"outbound|9080|v2|reviews", 0.1, ClusterOK},
			},
		},
		{
			name: "direct response", golden: "vs-rewrite.golden.json",
			req:         ExplainRequest{Destination: "backend", Port: 8080, Target: "/gone"},
			wantOutcome: OutcomeDirectResponse,
			wantRoutes: []string{
				`backend.http[0].match[0] rewrite: path: got "/gone", want prefix "/old/"`,
				`backend.http[1].match[0] regex-rewrite: path: got "/gone", want regex "/users/([0-9]+)/profile" (whole value)`,
				`backend.http[2].match[0] moved: path: got "/gone", want exact "/legacy"`,
				`backend.http[3].match[0] to-https: path: got "/gone", want prefix "/secure"`,
				`backend.http[4].match[0] same-port: path: got "/gone", want prefix "/here"`,
				"backend.http[5].match[0] gone: matched",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := Explain(golden(t, tc.golden), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if ex.Outcome != tc.wantOutcome {
				t.Errorf("outcome %q, want %q", ex.Outcome, tc.wantOutcome)
			}
			if diff := cmp.Diff(tc.wantRoutes, routeLines(ex)); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantClusters, clusterLines(ex)); diff != "" {
				t.Errorf("clusters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExplainRouteFeatures(t *testing.T) {
	for _, tc := range []struct {
		name, golden string
		req          ExplainRequest
		check        func(t *testing.T, ex *Explanation)
	}{
		{
			name: "timeout and explicit retries", golden: "vs-retries.golden.json",
			req: ExplainRequest{Destination: "backend:8080", Method: "POST", Target: "/pay/now"},
			check: func(t *testing.T, ex *Explanation) {
				r := ex.Route
				if r.Timeout != "10s" {
					t.Errorf("timeout %q, want 10s", r.Timeout)
				}
				want := &RetryDetail{
					RetryOn:              []string{"gateway-error", "connect-failure", "retriable-status-codes"},
					RetriableStatusCodes: []int{503, 409}, NumRetries: 3, PerTryTimeout: "2s",
					BackOff:       "jittered exponential, 100ms base, 1s max",
					PreviousHosts: true, HostSelectionAttempts: 5, Applies: true,
				}
				if diff := cmp.Diff(want, r.Retry); diff != "" {
					t.Errorf("retry (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "default retries skip a POST", golden: "vs-retries.golden.json",
			req: ExplainRequest{Destination: "backend:8080", Method: "POST", Target: "/other"},
			check: func(t *testing.T, ex *Explanation) {
				r := ex.Route.Retry
				if r == nil || r.Applies || r.Reason != "the request matches none of retriable_request_headers" {
					t.Fatalf("retry %+v, want the default policy not applying to POST", r)
				}
				if diff := cmp.Diff([]string{`:method regex "GET|HEAD|OPTIONS|TRACE|PUT|DELETE" (whole value)`}, r.RetriableRequestHeaders); diff != "" {
					t.Errorf("retriable request headers (-want +got):\n%s", diff)
				}
				if ex.Route.Timeout != "none" {
					t.Errorf("timeout %q, want none", ex.Route.Timeout)
				}
			},
		},
		{
			name: "retries disabled", golden: "vs-retries.golden.json",
			req: ExplainRequest{Destination: "backend:8080", Target: "/once"},
			check: func(t *testing.T, ex *Explanation) {
				// attempts: 0 compiles to no retry_policy at all.
				if r := ex.Route.Retry; r != nil {
					t.Fatalf("retry %+v, want none", r)
				}
			},
		},
		{
			name: "fault delay for jason", golden: "vs-fault.golden.json",
			req: ExplainRequest{Destination: "backend", Port: 8080, Target: "/", Headers: explainHeaders("end-user", "jason")},
			check: func(t *testing.T, ex *Explanation) {
				want := []FilterDetail{{Filter: "envoy.filters.http.fault", Kind: "fault", Level: "route", Applies: true,
					Fault: &FaultDetail{Delay: "7s", DelayPercent: 100}}}
				if diff := cmp.Diff(want, ex.Route.Filters); diff != "" {
					t.Errorf("filters (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "fault abort and delay percentages", golden: "vs-fault.golden.json",
			req: ExplainRequest{Destination: "backend", Port: 8080, Target: "/flaky/x"},
			check: func(t *testing.T, ex *Explanation) {
				want := []FilterDetail{{Filter: "envoy.filters.http.fault", Kind: "fault", Level: "route", Applies: true,
					Fault: &FaultDetail{Delay: "250ms", DelayPercent: 10, AbortStatus: 500, AbortPercent: 33.33}}}
				if diff := cmp.Diff(want, ex.Route.Filters); diff != "" {
					t.Errorf("filters (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "no fault on the default route", golden: "vs-fault.golden.json",
			req: ExplainRequest{Destination: "backend", Port: 8080, Target: "/"},
			check: func(t *testing.T, ex *Explanation) {
				if f := ex.Route.Filters; len(f) != 1 || f[0].Applies || f[0].Reason != "not configured for this route" {
					t.Errorf("filters %+v, want the fault filter not configured", f)
				}
			},
		},
		{
			name: "redirect", golden: "vs-rewrite.golden.json",
			req: ExplainRequest{Destination: "backend:8080", Target: "/legacy?x=1"},
			check: func(t *testing.T, ex *Explanation) {
				want := &LocalReply{Status: 308, Location: "http://items.example.com/v1/items?x=1",
					ResponseHeaders: []HeaderOp{{Op: "OVERWRITE_IF_EXISTS_OR_ADD", Name: "X-Moved", Value: "true"}}}
				if ex.Outcome != OutcomeRedirect {
					t.Errorf("outcome %q, want redirect", ex.Outcome)
				}
				if diff := cmp.Diff(want, ex.Reply); diff != "" {
					t.Errorf("reply (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "direct response body", golden: "vs-rewrite.golden.json",
			req: ExplainRequest{Destination: "backend:8080", Target: "/gone"},
			check: func(t *testing.T, ex *Explanation) {
				if diff := cmp.Diff(&LocalReply{Status: 410, Body: "gone for good"}, ex.Reply); diff != "" {
					t.Errorf("reply (-want +got):\n%s", diff)
				}
				if len(ex.Clusters) != 0 {
					t.Errorf("clusters %v for a direct response", ex.Clusters)
				}
			},
		},
		{
			name: "prefix and host rewrite", golden: "vs-rewrite.golden.json",
			req: ExplainRequest{Destination: "backend:8080", Target: "/old/a?b=1"},
			check: func(t *testing.T, ex *Explanation) {
				up := ex.Clusters[0].Upstream
				if up.Target != "/new/a?b=1" || up.Authority != "backend.v2" {
					t.Errorf("upstream %s %s, want backend.v2 /new/a?b=1", up.Authority, up.Target)
				}
			},
		},
		{
			name: "regex rewrite", golden: "vs-rewrite.golden.json",
			req: ExplainRequest{Destination: "backend:8080", Target: "/users/42/profile"},
			check: func(t *testing.T, ex *Explanation) {
				if up := ex.Clusters[0].Upstream; up.Target != "/profiles/42" {
					t.Errorf("upstream target %s, want /profiles/42", up.Target)
				}
			},
		},
		{
			name: "mirror", golden: "vs-mirror.golden.json",
			req: ExplainRequest{Destination: "backend:8080", Target: "/orders/1"},
			check: func(t *testing.T, ex *Explanation) {
				want := []MirrorDetail{
					{Cluster: "outbound|7070||audit", Percent: 100, Authority: "backend-shadow:8080"},
					{Cluster: "outbound|8080|v2|backend", Percent: 50, Authority: "backend-shadow:8080"},
				}
				if diff := cmp.Diff(want, ex.Route.Mirrors); diff != "" {
					t.Errorf("mirrors (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "weighted clusters with their own headers", golden: "vs-headers.golden.json",
			req: ExplainRequest{Destination: "backend:8080", Target: "/"},
			check: func(t *testing.T, ex *Explanation) {
				if len(ex.Clusters) < 2 {
					t.Fatalf("clusters %v, want a split", clusterLines(ex))
				}
				for _, c := range ex.Clusters {
					if len(c.Upstream.RequestHeaders) == 0 {
						t.Errorf("cluster %s: no request header mutation shown", c.Name)
					}
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := Explain(golden(t, tc.golden), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if ex.Route == nil {
				t.Fatalf("no route matched: %v", routeLines(ex))
			}
			tc.check(t, ex)
		})
	}
}

func TestExplainRouteNotFound(t *testing.T) {
	set := golden(t, "header-match.golden.json")
	// Without the catch-all default route, a request no rule matches gets 404.
	rc := proto.Clone(set.Routes["outbound|9080|reviews"]).(*routev3.RouteConfiguration)
	vh := rc.GetVirtualHosts()[0]
	vh.Routes = vh.Routes[:len(vh.Routes)-1]
	set.Routes[rc.GetName()] = rc
	ex, err := Explain(set, ExplainRequest{Destination: "reviews", Target: "/ratings"})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Outcome != OutcomeRouteNotFound || ex.Route != nil || ex.Reply == nil || ex.Reply.Status != 404 || ex.Reply.Reason != "route_not_found" {
		t.Errorf("outcome %q reply %+v, want 404 route_not_found", ex.Outcome, ex.Reply)
	}
	if len(ex.Routes) != len(vh.Routes) {
		t.Errorf("%d routes explained, want all %d", len(ex.Routes), len(vh.Routes))
	}
	for _, v := range ex.Routes {
		if v.Matched || v.Reason == "" {
			t.Errorf("route %q: matched=%v reason %q", v.Name, v.Matched, v.Reason)
		}
	}
}

// TestExplainHashPickIsTheSidecars checks that the endpoint Explain names
// for a consistent-hash cluster is the one the runtime config a sidecar
// builds from the same set picks.
func TestExplainHashPickIsTheSidecars(t *testing.T) {
	set := golden(t, "vs-hash.golden.json")
	p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
	cfg, err := p.build(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cfg.stopClusters)
	const name = "outbound|8080||backend"
	c := cfg.clusters[name]
	seen := map[string]bool{}
	for _, user := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"} {
		req := ExplainRequest{Destination: "backend:8080", Target: "/", Headers: explainHeaders("X-User", user)}
		ex, err := Explain(set, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(ex.Clusters) != 1 || ex.Clusters[0].Name != name {
			t.Fatalf("clusters %v, want %s", clusterLines(ex), name)
		}
		got := ex.Clusters[0].Endpoint
		if diff := cmp.Diff([]HashDetail{{Kind: "header", Name: "x-user", Value: quote(user)}}, ex.Route.Hash); diff != "" {
			t.Errorf("hash policy (-want +got):\n%s", diff)
		}
		r, _ := req.httpRequest(cfg.listeners["outbound|8080|backend"])
		rt := cfg.routes["outbound|8080|backend"].matchRequest(r)
		key, _ := stdHashKey(rt, c, r)
		e, ok := c.state.pick(key, nil, nil)
		if !ok || e.addr != got {
			t.Errorf("x-user %s: explain picks %q, the sidecar's balancer %q", user, got, e.addr)
		}
		seen[got] = true
	}
	if len(seen) != 2 {
		t.Errorf("8 keys landed on %d endpoints, want both", len(seen))
	}
	// Without the header, the balancer picks at random.
	ex, err := Explain(set, ExplainRequest{Destination: "backend:8080", Target: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if c := ex.Clusters[0]; c.Endpoint != "" || !strings.Contains(c.Pick, "no value for the hash policy") {
		t.Errorf("no hash key: endpoint %q pick %q", c.Endpoint, c.Pick)
	}
}

func TestExplainClusterDetail(t *testing.T) {
	ex, err := Explain(golden(t, "header-match.golden.json"), ExplainRequest{Destination: "reviews", Target: "/health"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Clusters) != 1 {
		t.Fatalf("clusters %v", clusterLines(ex))
	}
	c := ex.Clusters[0]
	// v3's only endpoint is UNHEALTHY: the proxy answers 503 itself.
	if c.Name != "outbound|9080|v3|reviews" || c.Result != ClusterNoneHealthy || c.Service != "reviews" || c.Subset != "v3" || c.Port != 9080 {
		t.Errorf("cluster %+v", c)
	}
	wantEP := []EndpointInfo{{Address: "127.0.0.1:21005", Health: "UNHEALTHY", Workload: "reviews-v3",
		Identity: "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"}}
	if diff := cmp.Diff(wantEP, c.Endpoints); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	if c.LoadBalancer.Policy != "ROUND_ROBIN" || c.RetryBudget.RetryRatio != 0.2 || c.Breakers.MaxRetries != 3 || len(c.SecureNaming) == 0 {
		t.Errorf("policies: lb %+v budget %+v breakers %+v secure naming %v", c.LoadBalancer, c.RetryBudget, c.Breakers, c.SecureNaming)
	}
	if ex.Route.Timeout != "1.5s" {
		t.Errorf("timeout %q, want 1.5s", ex.Route.Timeout)
	}
}

func TestExplainTCP(t *testing.T) {
	ex, err := Explain(golden(t, "tcp.golden.json"), ExplainRequest{Destination: "mongodb"})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Outcome != OutcomeTCP || ex.Listener.Kind != "tcp" {
		t.Errorf("outcome %q listener %+v", ex.Outcome, ex.Listener)
	}
	if diff := cmp.Diff([]clusterLine{{"outbound|27017||mongodb", 1, ClusterOK}}, clusterLines(ex)); diff != "" {
		t.Errorf("clusters (-want +got):\n%s", diff)
	}
}

func TestExplainErrors(t *testing.T) {
	for _, tc := range []struct {
		golden string
		req    ExplainRequest
		want   string
	}{
		{"header-match.golden.json", ExplainRequest{Destination: "ratings"},
			`no upstream for "ratings": this proxy's upstreams are details:9080, reviews:9080`},
		{"header-match.golden.json", ExplainRequest{Destination: "reviews:9999"},
			`no upstream for "reviews:9999"`},
		{"vs-fault.golden.json", ExplainRequest{Destination: "backend"},
			`"backend" has outbound listeners on ports 8080, 8081: give the port`},
		{"header-match.golden.json", ExplainRequest{Destination: "reviews", Target: "no-slash"},
			`want a path starting with /`},
		{"header-match.golden.json", ExplainRequest{Destination: "reviews", Headers: explainHeaders("X-Bad", "a\r\nInjected: 1")},
			`header "X-Bad"`},
		{"header-match.golden.json", ExplainRequest{Destination: "127.0.0.1:21001"},
			`inbound (TLS) listener`},
		{"header-match.golden.json", ExplainRequest{},
			`destination: empty`},
	} {
		_, err := Explain(golden(t, tc.golden), tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %+v: error %v, want %q", tc.golden, tc.req, err, tc.want)
		}
	}
	set := golden(t, "header-match.golden.json")
	set.Clusters["outbound|9080|v1|reviews"].ConnectTimeout.Seconds = -1
	if _, err := Explain(set, ExplainRequest{Destination: "reviews"}); err == nil ||
		!strings.Contains(err.Error(), `the proxy rejects this config: cluster "outbound|9080|v1|reviews": connect_timeout`) {
		t.Errorf("a set the proxy NACKs: %v", err)
	}
}

// TestExplainChecksAgreeWithMatcher runs requests over every compiler
// golden set and checks that the per-field checks reproduce the
// matcher's decision for every route tried.
func TestExplainChecksAgreeWithMatcher(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "compile", "testdata", "*.golden.json"))
	requests := []ExplainRequest{
		{Target: "/"},
		{Target: "/API/v1?debug=1&flag&id=42", Method: "POST", Headers: explainHeaders("End-User", "jason", "X-Canary", "yes", "X-Debug", "")},
		{Target: "/reviews/12", Headers: explainHeaders("Cookie", "user=jason", "X-Canary", "yes-please", "X-Debug", "1")},
		{Target: "/static/a%2Fb", Headers: explainHeaders("X-Env", "prod", "X-User", "u")},
		{Target: "/pay", Method: "DELETE", Headers: explainHeaders("X-Skip", "1")},
	}
	n := 0
	for _, f := range files {
		set := loadGoldenSet(t, f)
		for _, name := range resources.SortedKeys(set.Listeners) {
			svc, port, ok := outboundName(name)
			if !ok {
				continue
			}
			for _, req := range requests {
				req.Destination, req.Port = svc, port
				ex, err := Explain(set, req)
				if err != nil {
					t.Fatalf("%s %s: %v", filepath.Base(f), name, err)
				}
				for _, v := range ex.Routes {
					n++
					held := true
					for _, c := range v.Checks {
						held = held && c.Held
					}
					if held != v.Matched {
						t.Errorf("%s %s %s: route %d %q: checks %+v disagree with the matcher (matched=%v)",
							filepath.Base(f), name, req.Target, v.Index, v.Name, v.Checks, v.Matched)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Skip("no routes in the golden sets")
	}
}

func TestParseConfigDumpRoundTrip(t *testing.T) {
	for _, name := range []string{"vs-fault.golden.json", "rl-ratelimit.golden.json", "tcp.golden.json"} {
		set := golden(t, name)
		p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
		applied, err := encodeSet(set)
		if err != nil {
			t.Fatal(err)
		}
		p.cfg.Store(&runtimeConfig{applied: applied})
		dump, err := p.ConfigDump()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseConfigDump(dump)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, pair := range []struct {
			kind      string
			want, got map[string]proto.Message
		}{
			{"listeners", msgs(set.Listeners), msgs(got.Listeners)},
			{"routes", msgs(set.Routes), msgs(got.Routes)},
			{"clusters", msgs(set.Clusters), msgs(got.Clusters)},
			{"endpoints", msgs(set.Endpoints), msgs(got.Endpoints)},
		} {
			if len(pair.want) != len(pair.got) {
				t.Errorf("%s: %d %s, want %d", name, len(pair.got), pair.kind, len(pair.want))
			}
			for k, m := range pair.want {
				if !proto.Equal(m, pair.got[k]) {
					t.Errorf("%s: %s %q differs after the round trip", name, pair.kind, k)
				}
			}
		}
	}
	if _, err := ParseConfigDump([]byte(`{"configs": [{"@type": "type.googleapis.com/nope.Nope"}]}`)); err == nil {
		t.Error("a dump with an unknown type: no error")
	}
}

func msgs[M proto.Message](m map[string]M) map[string]proto.Message {
	out := make(map[string]proto.Message, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestExplainInboundRateLimit(t *testing.T) {
	client, server := golden(t, "reviews-v2-ratings.golden.json"), golden(t, "rl-ratelimit.golden.json")
	for _, tc := range []struct {
		method, target string
		wantRoute      string
		wantLevel      string
		wantLimit      RateLimitInfo
	}{
		{"POST", "/ratings/1", "ratelimit.routes[0].match[0] writes", "route",
			RateLimitInfo{MaxTokens: 2, TokensPerFill: 1, FillInterval: "500ms", Enabled: true, Enforced: true, Status: 429}},
		{"GET", "/ratings/1", "#2", "virtual host", // the service-wide bucket
			RateLimitInfo{MaxTokens: 10, TokensPerFill: 10, FillInterval: "1s", Enabled: true, Enforced: true, Status: 429}},
	} {
		ex, err := Explain(client, ExplainRequest{Destination: "ratings", Method: tc.method, Target: tc.target})
		if err != nil {
			t.Fatal(err)
		}
		c := ex.Clusters[0]
		if len(c.Endpoints) != 1 || c.Endpoints[0].Workload != "ratings-v1" {
			t.Fatalf("endpoints %+v, want ratings-v1's", c.Endpoints)
		}
		in, err := ExplainInbound(server, c.Endpoints[0].Address, ex.Request.Method, "", c.Upstream)
		if err != nil {
			t.Fatal(err)
		}
		if in.Listener != "inbound|9080" || in.Route != tc.wantRoute || in.Cluster != "inbound|9080" {
			t.Errorf("%s %s: inbound %+v, want route %q", tc.method, tc.target, in, tc.wantRoute)
		}
		if len(in.Filters) != 1 || in.Filters[0].Limit == nil || !in.Filters[0].Applies || in.Filters[0].Level != tc.wantLevel {
			t.Fatalf("%s %s: filters %+v, want the local rate limit", tc.method, tc.target, in.Filters)
		}
		if diff := cmp.Diff(tc.wantLimit, *in.Filters[0].Limit); diff != "" {
			t.Errorf("%s %s: bucket (-want +got):\n%s", tc.method, tc.target, diff)
		}
	}
	if _, err := ExplainInbound(server, "127.0.0.1:1", "GET", "", &UpstreamDetail{Target: "/"}); err == nil {
		t.Error("an endpoint with no listener: no error")
	}
}

// TestExplainInboundAuthz: explain evaluates the destination's rbac filters
// with the caller's identity and says which policy decided.
func TestExplainInboundAuthz(t *testing.T) {
	server := golden(t, "sec-authz-http.golden.json")
	var addr string
	for name, l := range server.Listeners {
		if strings.HasPrefix(name, "inbound|") {
			addr = l.GetAddress().GetSocketAddress().GetAddress() + ":" + strconv.Itoa(int(l.GetAddress().GetSocketAddress().GetPortValue()))
		}
	}
	const frontend = "spiffe://cluster.local/ns/default/sa/frontend"
	for _, tc := range []struct {
		name, method, target, host, peer string
		header                           http.Header
		wantDenied                       int
		wantPolicy                       string // of the deciding filter
		wantPath                         string
	}{
		{"DENY on a path, however spelled", "POST", "/x/..//admin/./y", "backend", frontend, nil, 403, "ns.default.deny-admin.rule.0", "/admin/y"},
		{"DENY on a repeated header's second value", "GET", "/api/x", "backend", frontend, http.Header{"X-User": {"bob", "admin"}}, 403, "ns.default.deny-admin.rule.2", "/api/x"},
		{"ALLOW by principal and host with port", "GET", "/", "api.example.com:8080", frontend, nil, 0, "", "/"},
		{"no ALLOW policy matches", "GET", "/", "other.example.com", frontend, nil, 403, "", "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := &UpstreamDetail{Target: tc.target, Authority: tc.host, Headers: tc.header}
			in, err := ExplainInbound(server, addr, tc.method, tc.peer, up)
			if err != nil {
				t.Fatal(err)
			}
			if in.Denied != tc.wantDenied || in.Path != tc.wantPath {
				t.Errorf("denied %d, path %q; want %d, %q (filters %+v)", in.Denied, in.Path, tc.wantDenied, tc.wantPath, in.Filters)
			}
			var denied, allow *RBACDetail
			for _, f := range in.Filters {
				switch {
				case f.RBAC == nil:
				case !f.RBAC.Allowed && denied == nil:
					denied = f.RBAC
				case f.RBAC.Action == "ALLOW":
					allow = f.RBAC
				}
			}
			if tc.wantDenied != 0 && (denied == nil || denied.Policy != tc.wantPolicy) {
				t.Errorf("deciding filter %+v, want denied by %q (filters %+v)", denied, tc.wantPolicy, in.Filters)
			}
			if tc.wantDenied == 0 && (denied != nil || allow == nil || !strings.HasPrefix(allow.Policy, "ns.default.allow-frontend.rule.")) {
				t.Errorf("allow filter %+v, denied %+v, want allowed by an allow-frontend rule", allow, denied)
			}
		})
	}
}
