package compile

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellis-mesh/trellis/internal/model"
)

func TestClusterPolicy(t *testing.T) {
	var (
		rr      = &model.LoadBalancerSettings{Simple: "ROUND_ROBIN"}
		random  = &model.LoadBalancerSettings{Simple: "RANDOM"}
		least   = &model.LoadBalancerSettings{Simple: "LEAST_REQUEST"}
		pool    = &model.ConnectionPoolSettings{TCP: &model.TCPSettings{MaxConnections: 1}}
		pool2   = &model.ConnectionPoolSettings{TCP: &model.TCPSettings{MaxConnections: 2}}
		outlier = &model.OutlierDetection{Interval: "1s"}
		budget  = &model.RetryBudget{MinRetryConcurrency: 5}
		budget2 = &model.RetryBudget{MinRetryConcurrency: 7}
		port80  = func(pl model.PortTrafficPolicy) model.PortTrafficPolicy {
			pl.Port = &model.PortSelector{Number: 80}
			return pl
		}
	)
	dr := func(name string, top *model.TrafficPolicy, subsets ...model.Subset) *model.DestinationRule {
		return &model.DestinationRule{
			ObjectMeta: model.ObjectMeta{Name: name},
			Spec:       model.DestinationRuleSpec{Host: "reviews", TrafficPolicy: top, Subsets: subsets},
		}
	}
	tests := []struct {
		name   string
		rules  []*model.DestinationRule
		subset string
		want   policy
	}{
		{name: "no rule"},
		{
			name:  "top level",
			rules: []*model.DestinationRule{dr("r", &model.TrafficPolicy{LoadBalancer: random, ConnectionPool: pool, OutlierDetection: outlier, RetryBudget: budget})},
			want:  policy{LoadBalancer: random, ConnectionPool: pool, OutlierDetection: outlier, RetryBudget: budget},
		},
		{
			name: "port level replaces the top level wholesale",
			rules: []*model.DestinationRule{dr("r", &model.TrafficPolicy{
				LoadBalancer: random, ConnectionPool: pool, RetryBudget: budget,
				PortLevelSettings: []model.PortTrafficPolicy{port80(model.PortTrafficPolicy{LoadBalancer: least})},
			})},
			want: policy{LoadBalancer: least},
		},
		{
			name: "first port level entry for the port wins, other ports ignored",
			rules: []*model.DestinationRule{dr("r", &model.TrafficPolicy{
				LoadBalancer: random,
				PortLevelSettings: []model.PortTrafficPolicy{
					{Port: &model.PortSelector{Number: 9080}, LoadBalancer: rr},
					port80(model.PortTrafficPolicy{ConnectionPool: pool}),
					port80(model.PortTrafficPolicy{ConnectionPool: pool2}),
				},
			})},
			want: policy{ConnectionPool: pool},
		},
		{
			name: "subset overrides field by field",
			rules: []*model.DestinationRule{dr("r",
				&model.TrafficPolicy{LoadBalancer: random, ConnectionPool: pool, OutlierDetection: outlier, RetryBudget: budget},
				model.Subset{Name: "v1", TrafficPolicy: &model.TrafficPolicy{LoadBalancer: least}})},
			subset: "v1",
			want:   policy{LoadBalancer: least, ConnectionPool: pool, OutlierDetection: outlier, RetryBudget: budget},
		},
		{
			name: "subset without a policy inherits",
			rules: []*model.DestinationRule{dr("r",
				&model.TrafficPolicy{LoadBalancer: random},
				model.Subset{Name: "v1"})},
			subset: "v1",
			want:   policy{LoadBalancer: random},
		},
		{
			name: "subset port level overrides all four, keeps the retry budget",
			rules: []*model.DestinationRule{dr("r",
				&model.TrafficPolicy{LoadBalancer: random, ConnectionPool: pool, OutlierDetection: outlier, RetryBudget: budget},
				model.Subset{Name: "v1", TrafficPolicy: &model.TrafficPolicy{
					ConnectionPool:    pool2,
					PortLevelSettings: []model.PortTrafficPolicy{port80(model.PortTrafficPolicy{LoadBalancer: least})},
				}})},
			subset: "v1",
			want:   policy{LoadBalancer: least, RetryBudget: budget},
		},
		{
			name: "subset top level over the rule's port level",
			rules: []*model.DestinationRule{dr("r",
				&model.TrafficPolicy{PortLevelSettings: []model.PortTrafficPolicy{port80(model.PortTrafficPolicy{LoadBalancer: least, ConnectionPool: pool})}},
				model.Subset{Name: "v1", TrafficPolicy: &model.TrafficPolicy{ConnectionPool: pool2, RetryBudget: budget2}})},
			subset: "v1",
			want:   policy{LoadBalancer: least, ConnectionPool: pool2, RetryBudget: budget2},
		},
		{
			name: "several rules: first top level policy, first definition of the subset",
			rules: []*model.DestinationRule{
				dr("c", &model.TrafficPolicy{LoadBalancer: rr}, model.Subset{Name: "v1", TrafficPolicy: &model.TrafficPolicy{ConnectionPool: pool2}}),
				dr("a", nil, model.Subset{Name: "v2"}),
				dr("b", &model.TrafficPolicy{LoadBalancer: random}, model.Subset{Name: "v1", TrafficPolicy: &model.TrafficPolicy{ConnectionPool: pool}}),
			},
			subset: "v1",
			want:   policy{LoadBalancer: random, ConnectionPool: pool},
		},
		{
			name:   "unknown subset",
			rules:  []*model.DestinationRule{dr("r", &model.TrafficPolicy{LoadBalancer: random})},
			subset: "v9",
			want:   policy{LoadBalancer: random},
		},
	}
	svc := model.ServiceRef{Namespace: model.DefaultNamespace, Name: "reviews"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := NewIndex(&Input{DestinationRules: tc.rules})
			got := ix.clusterPolicy(svc, tc.subset, 80)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(policy{})); diff != "" {
				t.Errorf("policy (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	svc := model.ServiceRef{Namespace: model.DefaultNamespace, Name: "db"}
	rule := func(idle model.Duration) *model.DestinationRule {
		return &model.DestinationRule{ObjectMeta: model.ObjectMeta{Name: "db"}, Spec: model.DestinationRuleSpec{
			Host: "db",
			TrafficPolicy: &model.TrafficPolicy{
				ConnectionPool: &model.ConnectionPoolSettings{TCP: &model.TCPSettings{IdleTimeout: idle}},
			},
			Subsets: []model.Subset{{Name: "v1", TrafficPolicy: &model.TrafficPolicy{
				ConnectionPool: &model.ConnectionPoolSettings{HTTP: &model.HTTPSettings{MaxRetries: 1}},
			}}},
		}}
	}
	tests := []struct {
		name   string
		rules  []*model.DestinationRule
		subset string
		want   time.Duration
		unset  bool
	}{
		{name: "no rule", unset: true},
		{name: "set", rules: []*model.DestinationRule{rule("30m")}, want: 30 * time.Minute},
		{name: "zero disables", rules: []*model.DestinationRule{rule("0s")}, want: 0},
		{name: "subset pool replaces the tcp settings", rules: []*model.DestinationRule{rule("30m")}, subset: "v1", unset: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewIndex(&Input{DestinationRules: tc.rules}).tcpIdleTimeout(svc, tc.subset, 27017)
			if err != nil {
				t.Fatal(err)
			}
			if tc.unset {
				if got != nil {
					t.Errorf("got %v, want unset", got.AsDuration())
				}
				return
			}
			if got == nil || got.AsDuration() != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	bad := rule("soon")
	if _, err := NewIndex(&Input{DestinationRules: []*model.DestinationRule{bad}}).tcpIdleTimeout(svc, "", 27017); err == nil ||
		err.Error() != `connectionPool.tcp.idleTimeout: invalid duration "soon": want e.g. "1.5s" or "100ms"` {
		t.Errorf("error = %v", err)
	}
}
