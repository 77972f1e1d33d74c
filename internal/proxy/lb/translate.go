package lb

import (
	"fmt"
	"math/big"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Translate reads a Cluster's lb_policy, its lb_config and common_lb_config.
// Fields whose behaviour is not implemented are errors naming the field.
func Translate(c *clusterv3.Cluster) (Config, error) {
	cfg := DefaultConfig()
	switch p := c.GetLbPolicy(); p {
	case clusterv3.Cluster_ROUND_ROBIN:
		cfg.Policy = RoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		cfg.Policy = LeastRequest
	case clusterv3.Cluster_RANDOM:
		cfg.Policy = Random
	case clusterv3.Cluster_RING_HASH:
		cfg.Policy = RingHash
	case clusterv3.Cluster_MAGLEV:
		cfg.Policy = Maglev
	default:
		return cfg, fmt.Errorf("lb_policy: %s not supported, want ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH or MAGLEV", p)
	}
	if c.GetLoadBalancingPolicy() != nil {
		return cfg, fmt.Errorf("load_balancing_policy: not supported, use lb_policy")
	}
	if c.GetLbSubsetConfig() != nil {
		return cfg, fmt.Errorf("lb_subset_config: not supported")
	}
	switch lc := c.GetLbConfig().(type) {
	case nil:
	case *clusterv3.Cluster_RoundRobinLbConfig_:
		if lc.RoundRobinLbConfig.GetSlowStartConfig() != nil {
			return cfg, fmt.Errorf("round_robin_lb_config.slow_start_config: not supported")
		}
	case *clusterv3.Cluster_LeastRequestLbConfig_:
		l := lc.LeastRequestLbConfig
		if v := l.GetChoiceCount(); v != nil {
			if v.GetValue() < 2 {
				return cfg, fmt.Errorf("least_request_lb_config.choice_count: %d, want at least 2", v.GetValue())
			}
			cfg.ChoiceCount = v.GetValue()
		}
		if l.GetActiveRequestBias() != nil || l.GetSlowStartConfig() != nil {
			return cfg, fmt.Errorf("least_request_lb_config: active_request_bias/slow_start_config not supported")
		}
	case *clusterv3.Cluster_RingHashLbConfig_:
		r := lc.RingHashLbConfig
		if r.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			return cfg, fmt.Errorf("ring_hash_lb_config.hash_function: %s not supported, want XX_HASH", r.GetHashFunction())
		}
		if v := r.GetMinimumRingSize(); v != nil {
			cfg.MinRingSize = v.GetValue()
		}
		if v := r.GetMaximumRingSize(); v != nil {
			cfg.MaxRingSize = v.GetValue()
		}
		if cfg.MinRingSize == 0 || cfg.MinRingSize > DefaultMaxRingSize {
			return cfg, fmt.Errorf("ring_hash_lb_config.minimum_ring_size: %d, want 1..%d", cfg.MinRingSize, DefaultMaxRingSize)
		}
		if cfg.MaxRingSize == 0 || cfg.MaxRingSize > DefaultMaxRingSize {
			return cfg, fmt.Errorf("ring_hash_lb_config.maximum_ring_size: %d, want 1..%d", cfg.MaxRingSize, DefaultMaxRingSize)
		}
		if cfg.MinRingSize > cfg.MaxRingSize {
			return cfg, fmt.Errorf("ring_hash_lb_config: minimum_ring_size %d > maximum_ring_size %d", cfg.MinRingSize, cfg.MaxRingSize)
		}
	case *clusterv3.Cluster_MaglevLbConfig_:
		if v := lc.MaglevLbConfig.GetTableSize(); v != nil {
			n := v.GetValue()
			if n < 2 || n > MaxMaglevSize || !big.NewInt(0).SetUint64(n).ProbablyPrime(0) {
				return cfg, fmt.Errorf("maglev_lb_config.table_size: %d, want a prime up to %d", n, MaxMaglevSize)
			}
			cfg.TableSize = n
		}
	default:
		return cfg, fmt.Errorf("lb_config: %T not supported", lc)
	}
	if cl := c.GetCommonLbConfig(); cl != nil {
		if v := cl.GetHealthyPanicThreshold(); v != nil {
			p := v.GetValue()
			if p < 0 || p > 100 {
				return cfg, fmt.Errorf("common_lb_config.healthy_panic_threshold: %v, want 0..100", p)
			}
			cfg.PanicThreshold = p
		}
		if cl.GetLocalityConfigSpecifier() != nil || cl.GetIgnoreNewHostsUntilFirstHc() ||
			cl.GetCloseConnectionsOnHostSetChange() || cl.GetConsistentHashingLbConfig() != nil || cl.GetOverrideHostStatus() != nil {
			return cfg, fmt.Errorf("common_lb_config: only healthy_panic_threshold and update_merge_window supported")
		}
	}
	return cfg, nil
}

// TranslateHashPolicy reads a RouteAction's hash_policy list.
func TranslateHashPolicy(ps []*routev3.RouteAction_HashPolicy) ([]HashPolicy, error) {
	var out []HashPolicy
	for i, p := range ps {
		hp := HashPolicy{Terminal: p.GetTerminal()}
		switch s := p.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
			name := strings.ToLower(s.Header.GetHeaderName())
			if name == "" {
				return nil, fmt.Errorf("hash_policy[%d].header.header_name: empty", i)
			}
			if strings.HasPrefix(name, ":") && name != ":authority" && name != ":path" && name != ":method" {
				return nil, fmt.Errorf("hash_policy[%d].header.header_name: pseudo-header %q not supported", i, name)
			}
			if s.Header.GetRegexRewrite() != nil {
				return nil, fmt.Errorf("hash_policy[%d].header.regex_rewrite: not supported", i)
			}
			hp.Kind, hp.Name = HashHeader, name
		case *routev3.RouteAction_HashPolicy_Cookie_:
			ck := s.Cookie
			if ck.GetName() == "" {
				return nil, fmt.Errorf("hash_policy[%d].cookie.name: empty", i)
			}
			if len(ck.GetAttributes()) > 0 {
				return nil, fmt.Errorf("hash_policy[%d].cookie.attributes: not supported", i)
			}
			if strings.ContainsAny(ck.GetName(), " \t\r\n;=,\"") || strings.ContainsAny(ck.GetPath(), "\r\n;") {
				return nil, fmt.Errorf("hash_policy[%d].cookie: invalid name or path", i)
			}
			hp.Kind, hp.Name, hp.Path = HashCookie, ck.GetName(), ck.GetPath()
			if d := ck.GetTtl(); d != nil {
				if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
					return nil, fmt.Errorf("hash_policy[%d].cookie.ttl: invalid duration", i)
				}
				hp.TTL, hp.HasTTL = d.AsDuration(), true
			}
		case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
			if !s.ConnectionProperties.GetSourceIp() {
				// Envoy computes no hash for it: the policy is inert.
				continue
			}
			hp.Kind = HashSourceIP
		case *routev3.RouteAction_HashPolicy_QueryParameter_:
			if s.QueryParameter.GetName() == "" {
				return nil, fmt.Errorf("hash_policy[%d].query_parameter.name: empty", i)
			}
			hp.Kind, hp.Name = HashQuery, s.QueryParameter.GetName()
		default:
			return nil, fmt.Errorf("hash_policy[%d].policy_specifier: %T not supported", i, s)
		}
		out = append(out, hp)
	}
	return out, nil
}
