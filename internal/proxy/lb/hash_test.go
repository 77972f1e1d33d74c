package lb

import (
	"math/bits"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestHasherCombines(t *testing.T) {
	var h Hasher
	if h.Has() {
		t.Fatal("empty hasher has a key")
	}
	h.Add(5)
	if k, ok := h.Key().Hash(); !ok || k != 5 {
		t.Fatalf("one policy: %d %t", k, ok)
	}
	h.Add(5)
	// Envoy: rotate the previous value left by one, xor the new one, so two
	// equal policies do not cancel out.
	if k, _ := h.Key().Hash(); k != bits.RotateLeft64(5, 1)^5 || k == 0 {
		t.Errorf("two policies: %d", k)
	}
}

func TestCookieValue(t *testing.T) {
	tests := []struct {
		header, name, want string
		ok                 bool
	}{
		{"a=1; sticky=abc; b=2", "sticky", "abc", true},
		{`sticky="0123456789abcdef"`, "sticky", "0123456789abcdef", true},
		{"sticky=", "sticky", "", true},
		{"xsticky=1; sticky2=2", "sticky", "", false},
		{"", "sticky", "", false},
		{"  sticky=v  ", "sticky", "v", true},
	}
	for _, tt := range tests {
		got, ok := CookieValue(tt.header, tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("CookieValue(%q, %q) = %q %t, want %q %t", tt.header, tt.name, got, ok, tt.want, tt.ok)
		}
		if got, ok := CookieValue([]byte(tt.header), tt.name); string(got) != tt.want || ok != tt.ok {
			t.Errorf("CookieValue(bytes %q) = %q %t", tt.header, got, ok)
		}
	}
}

func TestQueryValue(t *testing.T) {
	tests := []struct {
		query, name, want string
		ok                bool
	}{
		{"user=jason&x=1", "user", "jason", true},
		{"x=1&user=a&user=b", "user", "a", true},
		{"user", "user", "", true},
		{"username=x", "user", "", false},
	}
	for _, tt := range tests {
		if got, ok := QueryValue(tt.query, tt.name); got != tt.want || ok != tt.ok {
			t.Errorf("QueryValue(%q, %q) = %q %t", tt.query, tt.name, got, ok)
		}
	}
	var scratch []byte
	if SumQueryValue("a%20b+c", &scratch) != Sum64("a b c") {
		t.Error("query value not decoded before hashing")
	}
	if SumQueryValue("plain", &scratch) != Sum64("plain") {
		t.Error("plain value hashed differently")
	}
}

func TestSetCookie(t *testing.T) {
	tests := []struct {
		p    HashPolicy
		want string
	}{
		{HashPolicy{Name: "sticky", TTL: time.Hour, HasTTL: true, Path: "/"}, `sticky="v"; Max-Age=3600; Path=/; HttpOnly`},
		{HashPolicy{Name: "s", HasTTL: true}, `s="v"; HttpOnly`}, // ttl 0: a session cookie
	}
	for _, tt := range tests {
		if got := string(tt.p.AppendSetCookie(nil, "v")); got != tt.want {
			t.Errorf("Set-Cookie %q, want %q", got, tt.want)
		}
	}
	v := GeneratedCookieValue("127.0.0.1:5555", "127.0.0.1:80")
	if len(v) != 16 || v != GeneratedCookieValue("127.0.0.1:5555", "127.0.0.1:80") || v == GeneratedCookieValue("127.0.0.1:5556", "127.0.0.1:80") {
		t.Errorf("generated cookie %q: want 16 hex digits, stable per connection", v)
	}
}

func TestTranslate(t *testing.T) {
	tests := []struct {
		name    string
		c       *clusterv3.Cluster
		want    Config
		wantErr string
	}{
		{"default", &clusterv3.Cluster{}, DefaultConfig(), ""},
		{"least request", &clusterv3.Cluster{LbPolicy: clusterv3.Cluster_LEAST_REQUEST, LbConfig: &clusterv3.Cluster_LeastRequestLbConfig_{
			LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(3)},
		}}, func() Config { c := DefaultConfig(); c.Policy, c.ChoiceCount = LeastRequest, 3; return c }(), ""},
		{"ring", &clusterv3.Cluster{LbPolicy: clusterv3.Cluster_RING_HASH, LbConfig: &clusterv3.Cluster_RingHashLbConfig_{
			RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(64), MaximumRingSize: wrapperspb.UInt64(128)},
		}}, func() Config {
			c := DefaultConfig()
			c.Policy, c.MinRingSize, c.MaxRingSize = RingHash, 64, 128
			return c
		}(), ""},
		{"maglev", &clusterv3.Cluster{LbPolicy: clusterv3.Cluster_MAGLEV, LbConfig: &clusterv3.Cluster_MaglevLbConfig_{
			MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(251)},
		}}, func() Config { c := DefaultConfig(); c.Policy, c.TableSize = Maglev, 251; return c }(), ""},
		{"panic threshold", &clusterv3.Cluster{LbPolicy: clusterv3.Cluster_RANDOM, CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{
			HealthyPanicThreshold: &typev3.Percent{Value: 0},
		}}, func() Config { c := DefaultConfig(); c.Policy, c.PanicThreshold = Random, 0; return c }(), ""},
		{"choice count 1", &clusterv3.Cluster{LbConfig: &clusterv3.Cluster_LeastRequestLbConfig_{
			LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(1)},
		}}, Config{}, "least_request_lb_config.choice_count"},
		{"ring min > max", &clusterv3.Cluster{LbConfig: &clusterv3.Cluster_RingHashLbConfig_{
			RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(256), MaximumRingSize: wrapperspb.UInt64(128)},
		}}, Config{}, "minimum_ring_size 256 > maximum_ring_size 128"},
		{"murmur", &clusterv3.Cluster{LbConfig: &clusterv3.Cluster_RingHashLbConfig_{
			RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{HashFunction: clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2},
		}}, Config{}, "ring_hash_lb_config.hash_function"},
		{"maglev not prime", &clusterv3.Cluster{LbConfig: &clusterv3.Cluster_MaglevLbConfig_{
			MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(1000)},
		}}, Config{}, "maglev_lb_config.table_size"},
		{"zone aware", &clusterv3.Cluster{CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{
			LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_ZoneAwareLbConfig_{},
		}}, Config{}, "common_lb_config"},
		{"subsets", &clusterv3.Cluster{LbSubsetConfig: &clusterv3.Cluster_LbSubsetConfig{}}, Config{}, "lb_subset_config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Translate(tt.c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTranslateHashPolicy(t *testing.T) {
	hp := func(s any, terminal bool) *routev3.RouteAction_HashPolicy {
		p := &routev3.RouteAction_HashPolicy{Terminal: terminal}
		switch s := s.(type) {
		case *routev3.RouteAction_HashPolicy_Header:
			p.PolicySpecifier = &routev3.RouteAction_HashPolicy_Header_{Header: s}
		case *routev3.RouteAction_HashPolicy_Cookie:
			p.PolicySpecifier = &routev3.RouteAction_HashPolicy_Cookie_{Cookie: s}
		case *routev3.RouteAction_HashPolicy_ConnectionProperties:
			p.PolicySpecifier = &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: s}
		case *routev3.RouteAction_HashPolicy_QueryParameter:
			p.PolicySpecifier = &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: s}
		}
		return p
	}
	got, err := TranslateHashPolicy([]*routev3.RouteAction_HashPolicy{
		hp(&routev3.RouteAction_HashPolicy_Header{HeaderName: "X-User"}, true),
		hp(&routev3.RouteAction_HashPolicy_Cookie{Name: "sticky", Ttl: durationpb.New(time.Minute), Path: "/"}, false),
		hp(&routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}, false),
		hp(&routev3.RouteAction_HashPolicy_QueryParameter{Name: "user"}, false),
		hp(&routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: false}, false), // inert
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []HashPolicy{
		{Kind: HashHeader, Name: "x-user", Terminal: true},
		{Kind: HashCookie, Name: "sticky", TTL: time.Minute, HasTTL: true, Path: "/"},
		{Kind: HashSourceIP},
		{Kind: HashQuery, Name: "user"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		p    *routev3.RouteAction_HashPolicy
		want string
	}{
		{hp(&routev3.RouteAction_HashPolicy_Header{}, false), "hash_policy[0].header.header_name: empty"},
		{hp(&routev3.RouteAction_HashPolicy_Header{HeaderName: ":status"}, false), "pseudo-header"},
		{hp(&routev3.RouteAction_HashPolicy_Cookie{}, false), "hash_policy[0].cookie.name"},
		{hp(&routev3.RouteAction_HashPolicy_Cookie{Name: "a;b"}, false), "hash_policy[0].cookie"},
		{hp(&routev3.RouteAction_HashPolicy_Cookie{Name: "a", Attributes: []*routev3.RouteAction_HashPolicy_CookieAttribute{{Name: "x"}}}, false), "cookie.attributes"},
		{&routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{}}, "policy_specifier"},
	} {
		if _, err := TranslateHashPolicy([]*routev3.RouteAction_HashPolicy{tt.p}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want one containing %q", err, tt.want)
		}
	}
}
