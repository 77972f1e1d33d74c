package proxy

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/breaker"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/outlier"
	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/proxy/retry"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// testCluster is a round-robin cluster with default policies over addrs.
func testCluster(addrs []string) *cluster {
	pol := clusterPolicy{lb: lb.DefaultConfig(), limits: breaker.DefaultThresholds(), budget: retry.DefaultBudget()}
	c := &cluster{name: "test", endpoints: addrs, policy: pol, stats: &endpointStats{}}
	c.state = newClusterState(pol, c.stats)
	c.state.setEndpoints(addrs)
	return c
}

// endpointAt returns the endpoint of s with address addr, nil if none.
func endpointAt(s *clusterState, addr string) *endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.all {
		if e.addr == addr {
			return e
		}
	}
	return nil
}

// TestClusterStateCarriedOver: an update that changes only endpoints keeps
// the cluster's state (breaker gauges, budget, balancer rotation, outlier
// state of endpoints that stay); a changed setting starts fresh.
func TestClusterStateCarriedOver(t *testing.T) {
	p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
	set := func(addrs []string, mutate func(*clusterv3.Cluster)) *resources.Set {
		s := validSet(t)
		c := s.Clusters[outCluster]
		c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(1), MaxEjectionPercent: wrapperspb.UInt32(100)}
		if mutate != nil {
			mutate(c)
		}
		s.Endpoints[outCluster] = proxytest.CLA(t, outCluster, addrs)
		return s
	}
	cfg1, err := p.build(set([]string{"10.0.0.1:80", "10.0.0.2:80"}, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg1.commitClusters(nil)
	defer cfg1.stopClusters()
	st := cfg1.clusters[outCluster].state
	e1 := endpointAt(st, "10.0.0.1:80")
	st.report(e1, 503) // ejects 10.0.0.1
	if !e1.od.Ejected() {
		t.Fatal("endpoint not ejected")
	}
	if !st.br.Requests.TryAcquire() {
		t.Fatal("breaker refused")
	}

	cfg2, err := p.build(set([]string{"10.0.0.1:80", "10.0.0.3:80"}, nil), cfg1)
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.clusters[outCluster].state != st {
		t.Fatal("state not carried over for an endpoint-only change")
	}
	if got := len(st.lb.Hosts()); got != 1 {
		t.Errorf("before commit the running config still has its endpoints: %d usable, want 1", got)
	}
	cfg2.commitClusters(cfg1)
	if endpointAt(st, "10.0.0.1:80") != e1 || !e1.od.Ejected() {
		t.Error("the ejected endpoint that stayed lost its outlier state")
	}
	if endpointAt(st, "10.0.0.2:80") != nil {
		t.Error("removed endpoint still in the state")
	}
	if hosts := st.lb.Hosts(); len(hosts) != 1 || hosts[0].addr != "10.0.0.3:80" {
		t.Errorf("usable endpoints = %v, want only 10.0.0.3:80", hosts)
	}
	if st.br.Requests.InUse() != 1 {
		t.Error("breaker gauge reset")
	}

	cfg3, err := p.build(set([]string{"10.0.0.1:80"}, func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_RANDOM }), cfg2)
	if err != nil {
		t.Fatal(err)
	}
	fresh := cfg3.clusters[outCluster].state
	if fresh == st {
		t.Fatal("state carried over although lb_policy changed")
	}
	cfg3.commitClusters(cfg2)
	defer cfg3.stopClusters()
	if fresh.br.Requests.InUse() != 0 || endpointAt(fresh, "10.0.0.1:80").od.Ejected() {
		t.Error("fresh state inherited gauges or ejections")
	}
	// The old state's detector was stopped at commit: it ejects no more.
	e3 := endpointAt(st, "10.0.0.3:80")
	st.report(e3, 503)
	if e3.od.Ejected() {
		t.Error("the replaced state's detector still ejects")
	}
}

// TestBuildResilienceFields: every field the proxy implements is accepted
// with its meaning; the ones it does not are NACKed naming the field.
func TestBuildResilienceFields(t *testing.T) {
	p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
	s := validSet(t)
	c := s.Clusters[outCluster]
	c.LbPolicy = clusterv3.Cluster_RING_HASH
	c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(64)}}
	c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 0}}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxConnections: wrapperspb.UInt32(7), MaxPendingRequests: wrapperspb.UInt32(8), MaxRequests: wrapperspb.UInt32(9), MaxRetries: wrapperspb.UInt32(10),
	}}}
	c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(4), EnforcingSuccessRate: wrapperspb.UInt32(0)}
	c.Metadata = budgetMetadata(t, 0.5, 1, "5s")
	c.TypedExtensionProtocolOptions = protocolOptions(t, 100, time.Minute)
	ra := s.Routes[outName].VirtualHosts[0].Routes[1].GetRoute()
	retryPolicy("5xx,unavailable", 2, func(p *routev3.RetryPolicy) {
		p.PerTryTimeout = durationpb.New(time.Second)
		idempotentOnly(p)
	})(ra)
	ra.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
		ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
	}}}
	cfg, err := p.build(s, nil)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	cl := cfg.clusters[outCluster]
	pol := cl.policy
	if pol.lb.Policy != lb.RingHash || pol.lb.MinRingSize != 64 || pol.lb.PanicThreshold != 0 ||
		pol.limits != (breaker.Thresholds{MaxConnections: 7, MaxPendingRequests: 8, MaxRequests: 9, MaxRetries: 10}) ||
		pol.outlier == nil || pol.outlier.Consecutive5xx != 4 || pol.budget != (retry.BudgetConfig{RetryRatio: 0.5, MinRetriesPerSecond: 1, TTL: 5 * time.Second}) {
		t.Errorf("cluster policy = %+v", pol)
	}
	if cl.pool.maxRequestsPerConn != 100 || cl.pool.idleTimeout != time.Minute || !cl.pool.idleTimeoutSet {
		t.Errorf("pool options = %+v", cl.pool)
	}
	rt := cfg.routes[outName].routes[1]
	if rt.retry == nil || rt.retry.NumRetries != 2 || rt.retry.PerTryTimeout != time.Second || len(rt.retry.RequestHeaders) != 1 ||
		len(rt.hash) != 1 || rt.hash[0].Kind != lb.HashSourceIP {
		t.Errorf("route retry %+v hash %+v", rt.retry, rt.hash)
	}

	bad := []struct {
		name   string
		mutate func(s *resources.Set)
		want   string
	}{
		{"lb policy", func(s *resources.Set) { s.Clusters[outCluster].LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED }, "lb_policy: CLUSTER_PROVIDED"},
		{"maglev size", func(s *resources.Set) {
			s.Clusters[outCluster].LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(100)}}
		}, "maglev_lb_config.table_size: 100"},
		{"outlier", func(s *resources.Set) {
			s.Clusters[outCluster].OutlierDetection = &clusterv3.OutlierDetection{Interval: durationpb.New(0)}
		}, "outlier_detection.interval"},
		{"budget", func(s *resources.Set) { s.Clusters[outCluster].Metadata = budgetMetadata(t, -1, 0, "1s") }, "retry_budget.retry_ratio"},
		{"health checks", func(s *resources.Set) {
			s.Clusters[outCluster].HealthChecks = []*corev3.HealthCheck{{}}
		}, "health_checks"},
		{"pool option", func(s *resources.Set) {
			o := protocolOptions(t, 0, 0)
			var h httpv3.HttpProtocolOptions
			if err := o[httpProtocolOptionsKey].UnmarshalTo(&h); err != nil {
				t.Fatal(err)
			}
			h.CommonHttpProtocolOptions.MaxStreamDuration = durationpb.New(time.Second)
			s.Clusters[outCluster].TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: proxytest.Any(t, &h)}
		}, "common_http_protocol_options.max_headers_count/max_response_headers_kb/max_stream_duration"},
		{"retry on", func(s *resources.Set) {
			retryPolicy("5xx,gremlins", 1, nil)(s.Routes[outName].VirtualHosts[0].Routes[1].GetRoute())
		}, `routes[1].route.retry_policy.retry_on: "gremlins" not supported`},
		{"hash policy", func(s *resources.Set) {
			s.Routes[outName].VirtualHosts[0].Routes[1].GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{{
				PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: "k"}},
			}}
		}, "routes[1].route.hash_policy[0].policy_specifier"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			s := validSet(t)
			tt.mutate(s)
			_, err := p.build(s, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestClusterPolicyEqual: a state is carried over only for equal settings;
// outlier settings compare by value.
func TestClusterPolicyEqual(t *testing.T) {
	base := func() clusterPolicy {
		od := outlier.DefaultConfig()
		return clusterPolicy{lb: lb.DefaultConfig(), limits: breaker.DefaultThresholds(), outlier: &od, budget: retry.DefaultBudget()}
	}
	cases := map[string]struct {
		change func(*clusterPolicy)
		equal  bool
	}{
		"same values, other outlier pointer": {func(p *clusterPolicy) { od := *p.outlier; p.outlier = &od }, true},
		"lb policy":                          {func(p *clusterPolicy) { p.lb.Policy = lb.Random }, false},
		"panic threshold":                    {func(p *clusterPolicy) { p.lb.PanicThreshold = 0 }, false},
		"limits":                             {func(p *clusterPolicy) { p.limits.MaxRetries++ }, false},
		"budget":                             {func(p *clusterPolicy) { p.budget.TTL++ }, false},
		"outlier off":                        {func(p *clusterPolicy) { p.outlier = nil }, false},
		"outlier setting":                    {func(p *clusterPolicy) { od := *p.outlier; od.Consecutive5xx++; p.outlier = &od }, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := base(), base()
			tc.change(&b)
			if got := a.equal(&b); got != tc.equal {
				t.Errorf("equal = %v, want %v", got, tc.equal)
			}
			if got := b.equal(&a); got != tc.equal {
				t.Errorf("reversed: equal = %v, want %v", got, tc.equal)
			}
		})
	}
}

// TestSetEndpointsKeepsStateAndDropsDuplicates: an address listed twice is
// one endpoint (new or kept), and endpoints that stay are the same objects.
func TestSetEndpointsKeepsStateAndDropsDuplicates(t *testing.T) {
	c := testCluster([]string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"})
	st := c.state
	if len(st.all) != 2 {
		t.Fatalf("%d endpoints, want 2", len(st.all))
	}
	e1 := endpointAt(st, "10.0.0.1:80")
	e1.active.Add(3)
	st.setEndpoints([]string{"10.0.0.3:80", "10.0.0.1:80", "10.0.0.3:80", "10.0.0.1:80"})
	var got []string
	for _, e := range st.all {
		got = append(got, e.addr)
	}
	if strings.Join(got, ",") != "10.0.0.3:80,10.0.0.1:80" {
		t.Errorf("endpoints = %v, want 10.0.0.3:80,10.0.0.1:80", got)
	}
	if endpointAt(st, "10.0.0.1:80") != e1 || e1.active.Load() != 3 {
		t.Error("the endpoint that stayed lost its state")
	}
	if hosts := st.lb.Hosts(); len(hosts) != 2 {
		t.Errorf("balancer has %d hosts, want 2", len(hosts))
	}
}
