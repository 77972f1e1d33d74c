package outlier

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Translate reads a cluster's outlier_detection (nil: no detection).
func Translate(od *clusterv3.OutlierDetection) (*Config, error) {
	if od == nil {
		return nil, nil
	}
	cfg := DefaultConfig()
	if od.GetSplitExternalLocalOriginErrors() || od.GetConsecutiveLocalOriginFailure() != nil ||
		od.GetEnforcingConsecutiveLocalOriginFailure() != nil || od.GetEnforcingLocalOriginSuccessRate() != nil ||
		od.GetEnforcingFailurePercentageLocalOrigin() != nil {
		return nil, fmt.Errorf("split_external_local_origin_errors and the local origin fields: not supported")
	}
	if len(od.GetMonitors()) > 0 || od.GetDetectDegradedHosts().GetValue() {
		return nil, fmt.Errorf("monitors/detect_degraded_hosts: not supported")
	}
	u32 := func(dst *uint32, v *wrapperspb.UInt32Value, field string, maxV uint32) error {
		if v == nil {
			return nil
		}
		if v.GetValue() > maxV {
			return fmt.Errorf("%s: %d, want at most %d", field, v.GetValue(), maxV)
		}
		*dst = v.GetValue()
		return nil
	}
	const anyN = ^uint32(0)
	for _, f := range []struct {
		dst   *uint32
		v     *wrapperspb.UInt32Value
		field string
		max   uint32
	}{
		{&cfg.Consecutive5xx, od.GetConsecutive_5Xx(), "consecutive_5xx", anyN},
		{&cfg.Enforcing5xx, od.GetEnforcingConsecutive_5Xx(), "enforcing_consecutive_5xx", 100},
		{&cfg.ConsecutiveGateway, od.GetConsecutiveGatewayFailure(), "consecutive_gateway_failure", anyN},
		{&cfg.EnforcingGateway, od.GetEnforcingConsecutiveGatewayFailure(), "enforcing_consecutive_gateway_failure", 100},
		{&cfg.MaxEjectionPercent, od.GetMaxEjectionPercent(), "max_ejection_percent", 100},
		{&cfg.EnforcingSuccessRate, od.GetEnforcingSuccessRate(), "enforcing_success_rate", 100},
		{&cfg.SuccessRateMinHosts, od.GetSuccessRateMinimumHosts(), "success_rate_minimum_hosts", anyN},
		{&cfg.SuccessRateRequestVolume, od.GetSuccessRateRequestVolume(), "success_rate_request_volume", anyN},
		{&cfg.SuccessRateStdevFactor, od.GetSuccessRateStdevFactor(), "success_rate_stdev_factor", anyN},
		{&cfg.FailurePercentageThreshold, od.GetFailurePercentageThreshold(), "failure_percentage_threshold", 100},
		{&cfg.EnforcingFailurePercentage, od.GetEnforcingFailurePercentage(), "enforcing_failure_percentage", 100},
		{&cfg.FailurePercentageMinHosts, od.GetFailurePercentageMinimumHosts(), "failure_percentage_minimum_hosts", anyN},
		{&cfg.FailurePercentageRequestVolume, od.GetFailurePercentageRequestVolume(), "failure_percentage_request_volume", anyN},
	} {
		if err := u32(f.dst, f.v, f.field, f.max); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		dst      *time.Duration
		v        *durationpb.Duration
		field    string
		positive bool
	}{
		{&cfg.Interval, od.GetInterval(), "interval", true},
		{&cfg.BaseEjectionTime, od.GetBaseEjectionTime(), "base_ejection_time", true},
		{&cfg.MaxEjectionTime, od.GetMaxEjectionTime(), "max_ejection_time", true},
		{&cfg.MaxEjectionTimeJitter, od.GetMaxEjectionTimeJitter(), "max_ejection_time_jitter", false},
	} {
		if f.v == nil {
			continue
		}
		if err := f.v.CheckValid(); err != nil || f.v.AsDuration() < 0 || (f.positive && f.v.AsDuration() == 0) {
			return nil, fmt.Errorf("%s: invalid duration", f.field)
		}
		*f.dst = f.v.AsDuration()
	}
	if od.GetMaxEjectionTime() != nil && cfg.MaxEjectionTime < cfg.BaseEjectionTime {
		// Envoy: "max_ejection_time must not be smaller than base_ejection_time".
		return nil, fmt.Errorf("max_ejection_time: %s is less than base_ejection_time %s", cfg.MaxEjectionTime, cfg.BaseEjectionTime)
	}
	cfg.AlwaysEjectOneHost = od.GetAlwaysEjectOneHost().GetValue()
	return &cfg, nil
}
