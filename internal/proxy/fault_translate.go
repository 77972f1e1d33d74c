package proxy

import (
	"fmt"
	"net/http"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

var typeHTTPFault = typeURL(&faultv3.HTTPFault{})

// defaultAbortBody is the body of an injected abort, as in Envoy.
const defaultAbortBody = "fault filter abort"

// translateFault translates an HTTPFault, at the HCM or in
// typed_per_filter_config. Header-controlled faults (x-envoy-fault-*),
// response rate limits and downstream_nodes are refused. Runtime keys are
// ignored: the proxy has no runtime, so Envoy's defaults (the configured
// values) apply.
func translateFault(f *faultv3.HTTPFault) (*faultPolicy, error) {
	fp := &faultPolicy{abortGRPC: -1, cluster: f.GetUpstreamCluster()}
	if d := f.GetDelay(); d != nil {
		if d.GetHeaderDelay() != nil {
			return nil, fmt.Errorf("delay.header_delay: header-controlled faults are not supported")
		}
		fd := d.GetFixedDelay()
		if fd == nil {
			return nil, fmt.Errorf("delay.fixed_delay: missing")
		}
		if err := fd.CheckValid(); err != nil || fd.AsDuration() < 0 {
			return nil, fmt.Errorf("delay.fixed_delay: invalid duration")
		}
		fp.delay = fd.AsDuration().Truncate(1e6) // Envoy counts whole milliseconds
		pct, err := translateFraction(d.GetPercentage())
		if err != nil {
			return nil, fmt.Errorf("delay.percentage.%w", err)
		}
		fp.delayPct = pct
	}
	if a := f.GetAbort(); a != nil {
		fp.abort = true
		switch e := a.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if e.HttpStatus < 200 || e.HttpStatus >= 600 {
				return nil, fmt.Errorf("abort.http_status: %d, want 200..599", e.HttpStatus)
			}
			fp.abortCode = int(e.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			if e.GrpcStatus > 16 {
				return nil, fmt.Errorf("abort.grpc_status: %d, want 0..16", e.GrpcStatus)
			}
			fp.abortCode, fp.abortGRPC = http.StatusOK, int(e.GrpcStatus)
		case *faultv3.FaultAbort_HeaderAbort_:
			return nil, fmt.Errorf("abort.header_abort: header-controlled faults are not supported")
		default:
			return nil, fmt.Errorf("abort.error_type: missing, want http_status or grpc_status")
		}
		pct, err := translateFraction(a.GetPercentage())
		if err != nil {
			return nil, fmt.Errorf("abort.percentage.%w", err)
		}
		fp.abortPct = pct
		fp.abortBody = a.GetResponseBody()
		if fp.abortBody == "" {
			fp.abortBody = defaultAbortBody
		}
	}
	if len(f.GetDownstreamNodes()) > 0 {
		return nil, fmt.Errorf("downstream_nodes: not supported")
	}
	if f.GetResponseRateLimit() != nil {
		return nil, fmt.Errorf("response_rate_limit: not supported")
	}
	for i, h := range f.GetHeaders() {
		hm, err := translateHeaderMatcher(h)
		if err != nil {
			return nil, fmt.Errorf("headers[%d].%w", i, err)
		}
		fp.headers = append(fp.headers, hm)
	}
	if m := f.GetMaxActiveFaults(); m != nil {
		if m.GetValue() == 0 {
			fp.delay, fp.abort = 0, false // no fault may be active
		}
		fp.maxActive = m.GetValue()
	}
	return fp, nil
}

// translateFraction validates a FractionalPercent. An unset one is 0%.
func translateFraction(p *typev3.FractionalPercent) (fraction, error) {
	if p == nil {
		return fraction{num: 0, den: 100}, nil
	}
	var den uint32
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		den = 100
	case typev3.FractionalPercent_TEN_THOUSAND:
		den = 10_000
	case typev3.FractionalPercent_MILLION:
		den = 1_000_000
	default:
		return fraction{}, fmt.Errorf("denominator: %s not supported", p.GetDenominator())
	}
	return fraction{num: p.GetNumerator(), den: den}, nil
}

// faultIsNoop reports a fault filter config that injects nothing (what
// Istio puts in the HCM).
func faultIsNoop(fp *faultPolicy) bool { return fp == nil || (fp.delay == 0 && !fp.abort) }
