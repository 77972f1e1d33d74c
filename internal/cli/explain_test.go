package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/proxy"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

func TestExplainRequestArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		to      string
		headers []string
		want    proxy.ExplainRequest
		wantErr string
	}{
		{args: []string{"GET", "http://httpbin:8000/get?x=1"}, headers: []string{"end-user: jason", "Host: other"},
			want: proxy.ExplainRequest{Method: "GET", Destination: "httpbin:8000", Target: "/get?x=1", Authority: "other",
				Headers: http.Header{"End-User": {"jason"}}}},
		{args: []string{"httpbin/get"}, want: proxy.ExplainRequest{Destination: "httpbin", Target: "/get"}},
		{args: []string{"httpbin:8000"}, want: proxy.ExplainRequest{Destination: "httpbin:8000", Target: "/"}},
		{args: []string{"httpbin?a=b"}, want: proxy.ExplainRequest{Destination: "httpbin", Target: "/?a=b"}},
		{args: []string{"POST", "/post"}, to: "httpbin", want: proxy.ExplainRequest{Method: "POST", Destination: "httpbin", Target: "/post"}},
		{to: "httpbin", want: proxy.ExplainRequest{Destination: "httpbin", Target: "/"}},
		{args: []string{"/get"}, wantErr: "no destination"},
		{args: []string{"httpbin/get"}, to: "other", wantErr: "destination given twice"},
		{args: []string{"https://httpbin/get"}, wantErr: `scheme "https", want http`},
		{args: []string{"GE T", "httpbin"}, wantErr: "method"},
		{args: []string{"httpbin"}, headers: []string{"no-colon"}, wantErr: `-H "no-colon"`},
	} {
		got, err := explainRequest(tc.args, tc.to, tc.headers)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v --to %q: error %v, want %q", tc.args, tc.to, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tc.args, diff)
		}
	}
}

// fakeMesh serves the control plane's /v1/status and /v1/xds, the source
// sidecar's /config_dump with a compiler golden set, and the /config_dump of
// ratings-v1 (rl-ratelimit: local rate limits on its inbound listener).
type fakeMesh struct {
	control, sidecar *httptest.Server
}

func newFakeMesh(t *testing.T, clientGolden string, sidecarUp bool) *fakeMesh {
	t.Helper()
	dump := func(name string) []byte {
		data, err := resources.ConfigDump(goldenSet(t, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	serve := func(data []byte) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/config_dump" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write(data)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	clientDump := dump(clientGolden)
	m := &fakeMesh{sidecar: serve(clientDump)}
	ratings := serve(dump("rl-ratelimit.golden.json"))
	admin := strings.TrimPrefix(m.sidecar.URL, "http://")
	if !sidecarUp {
		m.sidecar.Close() // the address no longer answers
	}
	m.control = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/status":
			_ = json.NewEncoder(w).Encode(api.Status{Workloads: []api.WorkloadStatus{
				{Name: "productpage-v1", Namespace: "default", Admin: admin, Config: api.ConfigStatus{State: api.ConfigSynced}},
				{Name: "ratings-v1", Namespace: "default", Admin: strings.TrimPrefix(ratings.URL, "http://"), Inbound: "127.0.0.1:21006"},
			}})
		case "/v1/xds/default/productpage-v1":
			_, _ = w.Write(clientDump)
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.Error{Error: "not found"})
		}
	}))
	t.Cleanup(m.control.Close)
	return m
}

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut strings.Builder
	root := newRoot(&out, &errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

func TestExplainCommand(t *testing.T) {
	m := newFakeMesh(t, "header-match.golden.json", true)
	out, _, err := runCLI(t, "explain", "--control", m.control.URL, "--from", "productpage-v1",
		"GET", "http://reviews:9080/reviews/1", "-H", "end-user: jason")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"sidecar config from " + m.sidecar.URL + "/config_dump (SYNCED)",
		"outbound|9080|reviews",
		"reviews.http[0].match[0] jason  MATCHED",
		`Matched on:`, `header end-user exact "jason" (got "jason")`,
		"Cluster outbound|9080|v2|reviews",
		"127.0.0.1:21004 HEALTHY reviews-v2 usable",
		"Retries:", "applies to this request",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, _, err = runCLI(t, "explain", "--control", m.control.URL, "--from", "productpage-v1", "-o", "json",
		"reviews:9080/reviews/1", "-H", "cookie: user=jason")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Workload string
		Config   configSource
		proxy.Explanation
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if rep.Workload != "productpage-v1" || rep.Config.Source != sourceSidecar || rep.Outcome != proxy.OutcomeForward ||
		len(rep.Routes) != 2 || rep.Routes[0].Matched || !rep.Routes[1].Matched || rep.Clusters[0].Name != "outbound|9080|v2|reviews" {
		t.Errorf("-o json: %s", out)
	}
}

func TestExplainShowsInboundRateLimit(t *testing.T) {
	m := newFakeMesh(t, "reviews-v2-ratings.golden.json", true)
	out, _, err := runCLI(t, "explain", "--control", m.control.URL, "--from", "productpage-v1", "POST", "ratings:9080/ratings/7")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"At the destination (inbound sidecar):",
		"default/ratings-v1  inbound|9080 on 127.0.0.1:21006, route ratelimit.routes[0].match[0] writes",
		"envoy.filters.http.local_ratelimit (local_ratelimit, route): 2 tokens, +1 every 500ms, over the limit 429; applies",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestExplainFallsBackToControlPlane(t *testing.T) {
	m := newFakeMesh(t, "header-match.golden.json", false)
	out, _, err := runCLI(t, "explain", "--control", m.control.URL, "--from", "productpage-v1", "-o", "json", "reviews/")
	if err != nil {
		t.Fatal(err)
	}
	var rep explainReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Config.Source != sourceControl || !strings.Contains(rep.Config.Note, "did not answer") ||
		rep.Config.From != m.control.URL+"/v1/xds/default/productpage-v1" {
		t.Errorf("config %+v, want the control plane's with a note", rep.Config)
	}
}

func TestExplainCommandErrors(t *testing.T) {
	m := newFakeMesh(t, "header-match.golden.json", true)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "nobody", "reviews/"}, `unknown workload "nobody" (registered: default/productpage-v1, default/ratings-v1)`},
		{[]string{"--from", "productpage-v1", "-n", "prod", "reviews/"}, "unknown workload prod/productpage-v1"},
		{[]string{"--from", "productpage-v1", "ratings:9080/"}, `workload default/productpage-v1: no upstream for "ratings:9080": this proxy's upstreams are details:9080, reviews:9080`},
		{[]string{"reviews/"}, "--from: required"},
		{[]string{"--from", "productpage-v1", "-o", "yaml", "reviews/"}, `-o "yaml": want json`},
	} {
		_, _, err := runCLI(t, append([]string{"explain", "--control", m.control.URL}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestExplainConfigDumpFile(t *testing.T) {
	set := goldenSet(t, "split-90-10.golden.json")
	dump, err := resources.ConfigDump(set)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dump.json")
	if err := os.WriteFile(path, dump, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "explain", "--config-dump", path, "reviews/reviews/1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"file config from " + path, "forward to 2 clusters, split by weight",
		"Cluster outbound|9080|v1|reviews  weight 90 (90%)", "Cluster outbound|9080|v2|reviews  weight 10 (10%)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// goldenSet reads a compiler golden file (internal/compile/testdata).
func goldenSet(t *testing.T, name string) *resources.Set {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "compile", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Listeners, Routes, Clusters, Endpoints []json.RawMessage }
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	set := resources.NewSet()
	decode := func(raw []byte, m proto.Message) {
		if err := protojson.Unmarshal(raw, m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, raw := range doc.Listeners {
		m := &listenerv3.Listener{}
		decode(raw, m)
		set.Listeners[m.GetName()] = m
	}
	for _, raw := range doc.Routes {
		m := &routev3.RouteConfiguration{}
		decode(raw, m)
		set.Routes[m.GetName()] = m
	}
	for _, raw := range doc.Clusters {
		m := &clusterv3.Cluster{}
		decode(raw, m)
		set.Clusters[m.GetName()] = m
	}
	for _, raw := range doc.Endpoints {
		m := &endpointv3.ClusterLoadAssignment{}
		decode(raw, m)
		set.Endpoints[m.GetClusterName()] = m
	}
	return set
}
