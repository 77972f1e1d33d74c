package compile

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// Load balancing defaults.
const (
	leastRequestChoices = 2    // power of two choices (Envoy's default, written out)
	defaultRingSize     = 1024 // Istio's ring size when consistentHash names no algorithm
)

// applyLoadBalancer sets lb_policy and its config from a loadBalancer
// setting, as Istio's applyLoadBalancer does, except that an unset or
// UNSPECIFIED policy stays ROUND_ROBIN (Istio's default is LEAST_REQUEST)
// and PASSTHROUGH, not implemented, is ROUND_ROBIN (Validate warns).
//
// consistentHash picks the hash algorithm only; the hash key is each
// route's hash_policy.
func applyLoadBalancer(c *clusterv3.Cluster, lb *model.LoadBalancerSettings) {
	c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	if lb == nil {
		return
	}
	if ch := lb.ConsistentHash; ch != nil {
		applyConsistentHash(c, ch)
		return
	}
	switch lb.Simple {
	case "LEAST_REQUEST", "LEAST_CONN": // LEAST_CONN: Istio's deprecated name for LEAST_REQUEST
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{
			ChoiceCount: wrapperspb.UInt32(leastRequestChoices),
		}}
	case "RANDOM":
		c.LbPolicy = clusterv3.Cluster_RANDOM
	}
}

// applyConsistentHash is Istio's ApplyRingHashLoadBalancer: Maglev with
// its table size, or a ring hash with ringHash.minimumRingSize, or, when
// neither algorithm is named, a ring hash of the deprecated minimumRingSize
// (1024 when unset). A size of 0 leaves Envoy's default.
func applyConsistentHash(c *clusterv3.Cluster, ch *model.ConsistentHashLB) {
	switch {
	case ch.Maglev != nil:
		c.LbPolicy = clusterv3.Cluster_MAGLEV
		if n := ch.Maglev.TableSize; n != 0 {
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{
				TableSize: wrapperspb.UInt64(n),
			}}
		}
	case ch.RingHash != nil:
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		if n := ch.RingHash.MinimumRingSize; n != 0 {
			c.LbConfig = ringHashConfig(n)
		}
	default:
		n := ch.MinimumRingSize
		if n == 0 {
			n = defaultRingSize
		}
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		c.LbConfig = ringHashConfig(n)
	}
}

func ringHashConfig(minimum uint64) *clusterv3.Cluster_RingHashLbConfig_ {
	return &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
		MinimumRingSize: wrapperspb.UInt64(minimum),
	}}
}
