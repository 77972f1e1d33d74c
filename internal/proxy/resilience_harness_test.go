package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// The resilience tests run one client sidecar whose outbound cluster
// balances over several plaintext apps on loopback, so each app's view
// (requests counted, behaviour chosen per app) is direct. Every test runs
// on the fast path and on net/http (the legacy HTTP/1.1 mode), unless it is
// about one path only.

// paths runs f for the fast path and the net/http path.
func paths(t *testing.T, f func(t *testing.T, legacy bool)) {
	for _, legacy := range []bool{false, true} {
		name := "fast"
		if legacy {
			name = "nethttp"
		}
		t.Run(name, func(t *testing.T) { f(t, legacy) })
	}
}

// app is a test upstream that counts its requests.
type app struct {
	name  string
	addr  string
	count atomic.Int64
}

// newApp serves h (nil: answer 200 with the app's name) and counts requests.
func newApp(t *testing.T, name string, h http.HandlerFunc) *app {
	t.Helper()
	a := &app{name: name}
	a.addr = serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.count.Add(1)
		w.Header().Set("X-App", name)
		if h != nil {
			h(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, name)
	}))
	return a
}

func failing(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(code)
		fmt.Fprintf(w, "failed %d", code)
	}
}

func sleeping(d time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "slept")
	}
}

// rmesh is a client sidecar in front of apps.
type rmesh struct {
	p    *Proxy
	addr string
	set  *resources.Set
	apps []*app
}

// newRMesh routes every request by routes (at least one) to outCluster,
// an EDS cluster over the apps, after mutate adjusts the cluster.
func newRMesh(t *testing.T, legacy, http2 bool, apps []*app, mutate func(*clusterv3.Cluster), routes ...*routev3.Route) *rmesh {
	t.Helper()
	ca := proxytest.NewCA(t, trustDomain)
	m := &rmesh{apps: apps, addr: proxytest.FreeAddr(t)}
	m.p = newProxyOpts(t, Options{Identity: ca.Identity(t, clientID), Logger: testLogger(t), LegacyHTTP1: legacy})
	set := resources.NewSet()
	set.Listeners[outName] = proxytest.Listener(t, outName, m.addr, proxytest.HCM(t, outName, nil, false), nil)
	set.Routes[outName] = proxytest.RouteConfig(outName, routes...)
	c := &clusterv3.Cluster{
		Name:                 outCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}},
		ConnectTimeout: durationpb.New(2 * time.Second),
	}
	if http2 {
		c.TypedExtensionProtocolOptions = proxytest.HTTP2Options(t)
	}
	if mutate != nil {
		mutate(c)
	}
	set.Clusters[outCluster] = c
	var addrs []string
	for _, a := range apps {
		addrs = append(addrs, a.addr)
	}
	set.Endpoints[outCluster] = proxytest.CLA(t, outCluster, addrs)
	if err := m.p.Update(set); err != nil {
		t.Fatalf("Update: %v", err)
	}
	m.set = set
	return m
}

// claOf is a load assignment over apps.
func claOf(t *testing.T, apps ...*app) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	var addrs []string
	for _, a := range apps {
		addrs = append(addrs, a.addr)
	}
	return proxytest.CLA(t, outCluster, addrs)
}

func (m *rmesh) url(path string) string { return "http://" + m.addr + path }

func (m *rmesh) stat(name string) string {
	for _, l := range strings.Split(statsOf(m.p), "\n") {
		if v, ok := strings.CutPrefix(l, "cluster."+outCluster+"."+name+" "); ok {
			return v
		}
	}
	return ""
}

// do sends a request and returns status, X-Trellis-Reason and body.
func do(t *testing.T, c *http.Client, method, url, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(b)
}

// route builders

func rroute(prefix string, timeout time.Duration, edit func(*routev3.RouteAction)) *routev3.Route {
	r := proxytest.PrefixRoute(prefix, outCluster, timeout)
	if edit != nil {
		edit(r.GetRoute())
	}
	return r
}

func retryPolicy(on string, n uint32, edit func(*routev3.RetryPolicy)) func(*routev3.RouteAction) {
	return func(a *routev3.RouteAction) {
		a.RetryPolicy = &routev3.RetryPolicy{
			RetryOn:      on,
			NumRetries:   wrapperspb.UInt32(n),
			RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)},
		}
		if edit != nil {
			edit(a.RetryPolicy)
		}
	}
}

func previousHosts(t testing.TB, attempts int64) func(*routev3.RetryPolicy) {
	return func(p *routev3.RetryPolicy) {
		p.RetryHostPredicate = []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: proxytest.Any(t, &previoushostsv3.PreviousHostsPredicate{})},
		}}
		p.HostSelectionRetryMaxAttempts = attempts
	}
}

// idempotentOnly is the compiler's default policy restriction.
func idempotentOnly(p *routev3.RetryPolicy) {
	p.RetriableRequestHeaders = []*routev3.HeaderMatcher{{
		Name: ":method",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "GET|HEAD|OPTIONS|TRACE|PUT|DELETE"}},
		}},
	}}
}

func budgetMetadata(t *testing.T, ratio, minPerSec float64, ttl string) *corev3.Metadata {
	t.Helper()
	rb, err := structpb.NewStruct(map[string]any{"retry_ratio": ratio, "min_retries_per_second": minPerSec, "ttl": ttl})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"trellis": {Fields: map[string]*structpb.Value{
		"retry_budget": structpb.NewStructValue(rb),
	}}}}
}

// keepAliveClient returns a client allowed n idle connections to the sidecar.
func keepAliveClient(t *testing.T, n int) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
