package compile

import (
	"math"

	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/trellis-mesh/trellis/internal/model"
)

// faultFilter is the name of Envoy's HTTP fault filter, also the key of its
// per-route configuration in typed_per_filter_config.
const faultFilter = "envoy.filters.http.fault"

// httpFault translates a rule's fault as Istio's TranslateFault does: a
// fixed delay and an HTTP or gRPC abort, each with its percentage per
// million (an unset percentage is 0: nothing is delayed or aborted, as in
// Istio and Envoy). It returns nil when neither part is usable (Validate
// rejects such faults).
func httpFault(f *model.HTTPFaultInjection) *faultv3.HTTPFault {
	if f == nil {
		return nil
	}
	out := &faultv3.HTTPFault{}
	if d := f.Delay; d != nil {
		if t, ok := parseDuration(d.FixedDelay); ok {
			out.Delay = &commonfaultv3.FaultDelay{
				FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: duration(t)},
				Percentage:         faultPercent(d.Percentage, d.Percent),
			}
		}
	}
	if a := f.Abort; a != nil {
		abort := &faultv3.FaultAbort{Percentage: faultPercent(a.Percentage, 0)}
		switch {
		case a.HTTPStatus != 0:
			abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(a.HTTPStatus)}
		case a.GRPCStatus != "":
			if code, ok := model.GRPCStatusCode(a.GRPCStatus); ok {
				abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: code}
			}
		}
		if abort.ErrorType != nil {
			out.Abort = abort
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}

// faultPercent is a fault's percentage, or else the deprecated integer
// percent, per million.
func faultPercent(p *model.Percent, deprecated int32) *typev3.FractionalPercent {
	if p != nil {
		return perMillion(p.Value)
	}
	return perMillion(float64(deprecated))
}

// perMillion turns a percentage (0..100) into a FractionalPercent per
// million, rounded (Istio truncates: 33.33 gives 333299 there, 333300 here).
func perMillion(percent float64) *typev3.FractionalPercent {
	n := math.Round(math.Max(0, math.Min(100, percent)) * 10000)
	return &typev3.FractionalPercent{Numerator: uint32(n), Denominator: typev3.FractionalPercent_MILLION}
}

// faultHTTPFilter is the fault filter of an HTTP connection manager, with
// no configuration of its own: routes carry theirs.
func faultHTTPFilter() (*hcmv3.HttpFilter, error) {
	a, err := toAny(&faultv3.HTTPFault{})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: faultFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}
