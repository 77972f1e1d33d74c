package compile

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// enforcingAlways makes a detector eject every host it flags (percent).
const enforcingAlways = 100

// applyOutlierDetection translates outlierDetection as Istio's
// applyOutlierDetection does. Success-rate detection is disabled.
// consecutive5xxErrors and consecutiveGatewayErrors set the detector and
// enforce it (0 disables it); unset, Envoy's defaults apply (5xx: 5,
// enforced; gateway: off). The deprecated consecutiveErrors is read as
// Istio once did: gateway errors only, 5xx detection off, unless the newer
// fields say otherwise. interval, baseEjectionTime and maxEjectionPercent
// are written only when set (Envoy's defaults are Istio's: 10s, 30s, 10%).
// minHealthPercent becomes the cluster's healthy_panic_threshold, 0 (no
// panic mode) when unset.
func applyOutlierDetection(c *clusterv3.Cluster, od *model.OutlierDetection) error {
	if od == nil {
		return nil
	}
	out := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	if n := od.ConsecutiveErrors; n > 0 {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(uint32(n))
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(enforcingAlways)
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
	}
	if n := od.Consecutive5xxErrors; n != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(*n)
		out.EnforcingConsecutive_5Xx = enforcing(*n)
	}
	if n := od.ConsecutiveGatewayErrors; n != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(*n)
		out.EnforcingConsecutiveGatewayFailure = enforcing(*n)
	}
	var err error
	if out.Interval, err = optionalDuration("outlierDetection.interval", od.Interval); err != nil {
		return err
	}
	if out.BaseEjectionTime, err = optionalDuration("outlierDetection.baseEjectionTime", od.BaseEjectionTime); err != nil {
		return err
	}
	if od.MaxEjectionPercent > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(od.MaxEjectionPercent))
	}
	c.OutlierDetection = out
	if c.CommonLbConfig == nil {
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
	}
	c.CommonLbConfig.HealthyPanicThreshold = &typev3.Percent{Value: float64(od.MinHealthPercent)}
	return nil
}

// enforcing is 100% for an enabled detector, 0% for a disabled (0) one.
func enforcing(consecutive uint32) *wrapperspb.UInt32Value {
	if consecutive > 0 {
		return wrapperspb.UInt32(enforcingAlways)
	}
	return wrapperspb.UInt32(0)
}

// optionalDuration parses a duration field; nil when unset.
func optionalDuration(field string, d model.Duration) (*durationpb.Duration, error) {
	if d == "" {
		return nil, nil
	}
	t, err := model.ParseDuration(d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return durationpb.New(t), nil
}
