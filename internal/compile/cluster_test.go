package compile

import (
	"math"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

func u32(n uint32) *uint32 { return &n }

func TestApplyLoadBalancer(t *testing.T) {
	policy := func(p clusterv3.Cluster_LbPolicy) *clusterv3.Cluster { return &clusterv3.Cluster{LbPolicy: p} }
	ring := func(n uint64) *clusterv3.Cluster {
		return &clusterv3.Cluster{LbPolicy: clusterv3.Cluster_RING_HASH, LbConfig: ringHashConfig(n)}
	}
	leastRequest := &clusterv3.Cluster{
		LbPolicy: clusterv3.Cluster_LEAST_REQUEST,
		LbConfig: &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(2)}},
	}
	hash := func(ch model.ConsistentHashLB) *model.LoadBalancerSettings {
		return &model.LoadBalancerSettings{ConsistentHash: &ch}
	}
	tests := []struct {
		name string
		lb   *model.LoadBalancerSettings
		want *clusterv3.Cluster
	}{
		{"unset", nil, policy(clusterv3.Cluster_ROUND_ROBIN)},
		{"UNSPECIFIED", &model.LoadBalancerSettings{Simple: "UNSPECIFIED"}, policy(clusterv3.Cluster_ROUND_ROBIN)},
		{"ROUND_ROBIN", &model.LoadBalancerSettings{Simple: "ROUND_ROBIN"}, policy(clusterv3.Cluster_ROUND_ROBIN)},
		{"PASSTHROUGH is not implemented", &model.LoadBalancerSettings{Simple: "PASSTHROUGH"}, policy(clusterv3.Cluster_ROUND_ROBIN)},
		{"RANDOM", &model.LoadBalancerSettings{Simple: "RANDOM"}, policy(clusterv3.Cluster_RANDOM)},
		{"LEAST_REQUEST", &model.LoadBalancerSettings{Simple: "LEAST_REQUEST"}, leastRequest},
		{"LEAST_CONN is LEAST_REQUEST", &model.LoadBalancerSettings{Simple: "LEAST_CONN"}, leastRequest},
		{"consistent hash without an algorithm is a 1024 ring", hash(model.ConsistentHashLB{HTTPHeaderName: "x-user"}), ring(1024)},
		{"deprecated minimumRingSize", hash(model.ConsistentHashLB{UseSourceIP: true, MinimumRingSize: 4096}), ring(4096)},
		{"ringHash", hash(model.ConsistentHashLB{RingHash: &model.RingHash{MinimumRingSize: 2048}}), ring(2048)},
		{"ringHash without a size keeps Envoy's", hash(model.ConsistentHashLB{RingHash: &model.RingHash{}}), policy(clusterv3.Cluster_RING_HASH)},
		{"maglev without a size keeps Envoy's", hash(model.ConsistentHashLB{Maglev: &model.MagLev{}}), policy(clusterv3.Cluster_MAGLEV)},
		{"maglev", hash(model.ConsistentHashLB{Maglev: &model.MagLev{TableSize: 65537}}), &clusterv3.Cluster{
			LbPolicy: clusterv3.Cluster_MAGLEV,
			LbConfig: &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(65537)}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clusterv3.Cluster{}
			applyLoadBalancer(c, tc.lb)
			if diff := cmp.Diff(tc.want, c, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCircuitBreakers(t *testing.T) {
	const max = math.MaxUint32
	th := func(conns, pending, requests, retries uint32) *clusterv3.CircuitBreakers {
		return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections:     wrapperspb.UInt32(conns),
			MaxPendingRequests: wrapperspb.UInt32(pending),
			MaxRequests:        wrapperspb.UInt32(requests),
			MaxRetries:         wrapperspb.UInt32(retries),
		}}}
	}
	tests := []struct {
		name string
		cp   *model.ConnectionPoolSettings
		want *clusterv3.CircuitBreakers
	}{
		{name: "no pool"},
		{
			name: "Istio's circuit breaker example",
			cp: &model.ConnectionPoolSettings{
				TCP:  &model.TCPSettings{MaxConnections: 1},
				HTTP: &model.HTTPSettings{HTTP1MaxPendingRequests: 1, MaxRequestsPerConnection: 1},
			},
			want: th(1, 1, max, max),
		},
		{
			name: "every limit",
			cp: &model.ConnectionPoolSettings{
				TCP:  &model.TCPSettings{MaxConnections: 100},
				HTTP: &model.HTTPSettings{HTTP1MaxPendingRequests: 10, HTTP2MaxRequests: 1000, MaxRetries: 3},
			},
			want: th(100, 10, 1000, 3),
		},
		{name: "zero is unset", cp: &model.ConnectionPoolSettings{HTTP: &model.HTTPSettings{MaxRetries: 0}}, want: th(max, max, max, max)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, circuitBreakers(tc.cp), protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestProtocolOptions(t *testing.T) {
	opts := func(common *corev3.HttpProtocolOptions, h2 bool) *upstreamhttpv3.HttpProtocolOptions {
		ex := &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
			HttpProtocolOptions: &corev3.Http1ProtocolOptions{},
		}}
		if h2 {
			ex.ProtocolConfig = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}
		}
		return &upstreamhttpv3.HttpProtocolOptions{
			CommonHttpProtocolOptions: common,
			UpstreamProtocolOptions:   &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: ex},
		}
	}
	every := &model.ConnectionPoolSettings{
		TCP:  &model.TCPSettings{IdleTimeout: "1h", MaxConnectionDuration: "10m"},
		HTTP: &model.HTTPSettings{IdleTimeout: "30s", MaxRequestsPerConnection: 1},
	}
	tests := []struct {
		name     string
		protocol model.Protocol
		cp       *model.ConnectionPoolSettings
		want     *upstreamhttpv3.HttpProtocolOptions // nil: no options
	}{
		{name: "http without a pool", protocol: model.ProtocolHTTP},
		{name: "http with limits only", protocol: model.ProtocolHTTP, cp: &model.ConnectionPoolSettings{TCP: &model.TCPSettings{MaxConnections: 1}}},
		{name: "grpc without a pool", protocol: model.ProtocolGRPC, want: opts(nil, true)},
		{
			name: "http with every option", protocol: model.ProtocolHTTP, cp: every,
			want: opts(&corev3.HttpProtocolOptions{
				IdleTimeout:              durationpb.New(30 * time.Second),
				MaxRequestsPerConnection: wrapperspb.UInt32(1),
				MaxConnectionDuration:    durationpb.New(10 * time.Minute),
			}, false),
		},
		{
			name: "tcp idle timeout is the fallback", protocol: model.ProtocolHTTP2,
			cp:   &model.ConnectionPoolSettings{TCP: &model.TCPSettings{IdleTimeout: "0s"}},
			want: opts(&corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(0)}, true),
		},
		{name: "tcp port", protocol: model.ProtocolTCP, cp: every},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := protocolOptions(tc.protocol, tc.cp)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if got != nil {
					t.Fatalf("got %v, want no options", got)
				}
				return
			}
			var o upstreamhttpv3.HttpProtocolOptions
			if err := got[httpProtocolOpts].UnmarshalTo(&o); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, &o, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpstreamProtocol(t *testing.T) {
	pool := func(policy string, clientProtocol bool) *model.ConnectionPoolSettings {
		return &model.ConnectionPoolSettings{HTTP: &model.HTTPSettings{H2UpgradePolicy: policy, UseClientProtocol: clientProtocol}}
	}
	tests := []struct {
		name string
		in   model.Protocol
		cp   *model.ConnectionPoolSettings
		want model.Protocol
	}{
		{"no pool", model.ProtocolHTTP, nil, model.ProtocolHTTP},
		{"upgrade", model.ProtocolHTTP, pool("UPGRADE", false), model.ProtocolHTTP2},
		{"default", model.ProtocolHTTP, pool("DEFAULT", false), model.ProtocolHTTP},
		{"do not upgrade", model.ProtocolHTTP, pool("DO_NOT_UPGRADE", false), model.ProtocolHTTP},
		{"client protocol wins", model.ProtocolHTTP, pool("UPGRADE", true), model.ProtocolHTTP},
		{"grpc stays", model.ProtocolGRPC, pool("DO_NOT_UPGRADE", false), model.ProtocolGRPC},
		{"tcp is never upgraded", model.ProtocolTCP, pool("UPGRADE", false), model.ProtocolTCP},
	}
	for _, tc := range tests {
		if got := upstreamProtocol(tc.in, tc.cp); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestApplyOutlierDetection(t *testing.T) {
	tests := []struct {
		name  string
		od    *model.OutlierDetection
		want  *clusterv3.OutlierDetection
		panic float64
	}{
		{
			name: "only the set fields",
			od:   &model.OutlierDetection{Consecutive5xxErrors: u32(3), Interval: "1s", BaseEjectionTime: "10s", MaxEjectionPercent: 50},
			want: &clusterv3.OutlierDetection{
				EnforcingSuccessRate:     wrapperspb.UInt32(0),
				Consecutive_5Xx:          wrapperspb.UInt32(3),
				EnforcingConsecutive_5Xx: wrapperspb.UInt32(100),
				Interval:                 durationpb.New(time.Second),
				BaseEjectionTime:         durationpb.New(10 * time.Second),
				MaxEjectionPercent:       wrapperspb.UInt32(50),
			},
		},
		{
			name: "zero disables a detector",
			od:   &model.OutlierDetection{Consecutive5xxErrors: u32(0), ConsecutiveGatewayErrors: u32(4), MinHealthPercent: 30},
			want: &clusterv3.OutlierDetection{
				EnforcingSuccessRate:               wrapperspb.UInt32(0),
				Consecutive_5Xx:                    wrapperspb.UInt32(0),
				EnforcingConsecutive_5Xx:           wrapperspb.UInt32(0),
				ConsecutiveGatewayFailure:          wrapperspb.UInt32(4),
				EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
			},
			panic: 30,
		},
		{
			name: "deprecated consecutiveErrors counts gateway errors only",
			od:   &model.OutlierDetection{ConsecutiveErrors: 7},
			want: &clusterv3.OutlierDetection{
				EnforcingSuccessRate:               wrapperspb.UInt32(0),
				EnforcingConsecutive_5Xx:           wrapperspb.UInt32(0),
				ConsecutiveGatewayFailure:          wrapperspb.UInt32(7),
				EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
			},
		},
		{
			name: "newer fields win over consecutiveErrors",
			od:   &model.OutlierDetection{ConsecutiveErrors: 7, Consecutive5xxErrors: u32(5), ConsecutiveGatewayErrors: u32(2)},
			want: &clusterv3.OutlierDetection{
				EnforcingSuccessRate:               wrapperspb.UInt32(0),
				Consecutive_5Xx:                    wrapperspb.UInt32(5),
				EnforcingConsecutive_5Xx:           wrapperspb.UInt32(100),
				ConsecutiveGatewayFailure:          wrapperspb.UInt32(2),
				EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clusterv3.Cluster{}
			if err := applyOutlierDetection(c, tc.od); err != nil {
				t.Fatal(err)
			}
			want := &clusterv3.Cluster{
				OutlierDetection: tc.want,
				CommonLbConfig:   &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: tc.panic}},
			}
			if diff := cmp.Diff(want, c, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	c := &clusterv3.Cluster{}
	if err := applyOutlierDetection(c, nil); err != nil || !proto.Equal(c, &clusterv3.Cluster{}) {
		t.Errorf("nil outlierDetection changed the cluster: %v %v", c, err)
	}
}

func TestRetryBudgetMetadata(t *testing.T) {
	pct := func(f float64) *float64 { return &f }
	tests := []struct {
		name string
		rb   *model.RetryBudget
		want map[string]any // nil: no metadata
	}{
		{name: "none"},
		{name: "defaults", rb: &model.RetryBudget{}, want: map[string]any{"retry_ratio": 0.2, "min_retries_per_second": 10.0, "ttl": "10s"}},
		{
			name: "every field",
			rb:   &model.RetryBudget{Percent: pct(25), MinRetryConcurrency: 5, BudgetInterval: "1m30s"},
			want: map[string]any{"retry_ratio": 0.25, "min_retries_per_second": 5.0, "ttl": "90s"},
		},
		{name: "sub-second ttl", rb: &model.RetryBudget{Percent: pct(0), BudgetInterval: "250ms"}, want: map[string]any{"retry_ratio": 0.0, "min_retries_per_second": 10.0, "ttl": "0.25s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md, err := retryBudgetMetadata(tc.rb)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if md != nil {
					t.Fatalf("got %v, want none", md)
				}
				return
			}
			budget, err := structpb.NewStruct(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			want := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"trellis": {
				Fields: map[string]*structpb.Value{"retry_budget": structpb.NewStructValue(budget)},
			}}}
			if diff := cmp.Diff(want, md, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if ttl := md.FilterMetadata["trellis"].Fields["retry_budget"].GetStructValue().Fields["ttl"].GetStringValue(); ttl != "" {
				if _, err := time.ParseDuration(ttl); err != nil {
					t.Errorf("ttl %q does not parse: %v", ttl, err)
				}
			}
		})
	}
}

// TestNewClusterErrors: a policy that skipped validation fails with the field named.
func TestNewClusterErrors(t *testing.T) {
	tests := []struct {
		pol  policy
		want string
	}{
		{policy{ConnectionPool: &model.ConnectionPoolSettings{TCP: &model.TCPSettings{ConnectTimeout: "x"}}}, `connectionPool.tcp.connectTimeout: invalid duration "x": want e.g. "1.5s" or "100ms"`},
		{policy{ConnectionPool: &model.ConnectionPoolSettings{HTTP: &model.HTTPSettings{IdleTimeout: "-1s"}}}, `connectionPool.http.idleTimeout: invalid duration "-1s": must not be negative`},
		{policy{ConnectionPool: &model.ConnectionPoolSettings{TCP: &model.TCPSettings{MaxConnectionDuration: "1d"}}}, `connectionPool.tcp.maxConnectionDuration: invalid duration "1d": want e.g. "1.5s" or "100ms"`},
		{policy{OutlierDetection: &model.OutlierDetection{Interval: "x"}}, `outlierDetection.interval: invalid duration "x": want e.g. "1.5s" or "100ms"`},
		{policy{OutlierDetection: &model.OutlierDetection{BaseEjectionTime: "x"}}, `outlierDetection.baseEjectionTime: invalid duration "x": want e.g. "1.5s" or "100ms"`},
		{policy{RetryBudget: &model.RetryBudget{BudgetInterval: "x"}}, `retryBudget.budgetInterval: invalid duration "x": want e.g. "1.5s" or "100ms"`},
	}
	for _, tc := range tests {
		_, err := newCluster("c", model.ProtocolHTTP, []string{"spiffe://cluster.local/ns/default/sa/x"}, tc.pol)
		if err == nil || err.Error() != tc.want {
			t.Errorf("error = %v, want %s", err, tc.want)
		}
	}
}
