package retry

import (
	"fmt"
	"math"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	previousHostsName = "envoy.retry_host_predicates.previous_hosts"
	// MetadataNamespace is the cluster filter_metadata key of Trellis
	// settings that have no Envoy field.
	MetadataNamespace = "trellis"
	budgetKey         = "retry_budget"
)

var typePreviousHosts = "type.googleapis.com/" + string((&previoushostsv3.PreviousHostsPredicate{}).ProtoReflect().Descriptor().FullName())

// Translate reads a route's retry_policy (nil: no retries).
func Translate(rp *routev3.RetryPolicy) (*Policy, error) {
	if rp == nil {
		return nil, nil
	}
	p := &Policy{
		NumRetries:            DefaultNumRetries,
		BaseInterval:          DefaultBaseInterval,
		HostSelectionAttempts: DefaultHostSelectionAttempts,
	}
	for _, tok := range strings.Split(rp.GetRetryOn(), ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" || tok == "http3-post-connect-failure" { // never applies: no HTTP/3
			continue
		}
		on, ok := onNames[tok]
		if !ok {
			return nil, fmt.Errorf("retry_on: %q not supported", tok)
		}
		p.On |= on
	}
	if v := rp.GetNumRetries(); v != nil {
		p.NumRetries = v.GetValue()
	}
	if d := rp.GetPerTryTimeout(); d != nil {
		t, err := duration(d)
		if err != nil {
			return nil, fmt.Errorf("per_try_timeout: %w", err)
		}
		p.PerTryTimeout = t
	}
	if rp.GetPerTryIdleTimeout() != nil || rp.GetRetryPriority() != nil || len(rp.GetRetryOptionsPredicates()) > 0 ||
		rp.GetRateLimitedRetryBackOff() != nil || len(rp.GetRetriableHeaders()) > 0 {
		return nil, fmt.Errorf("per_try_idle_timeout/retry_priority/retry_options_predicates/rate_limited_retry_back_off/retriable_headers: not supported")
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		if c < 100 || c > 599 {
			return nil, fmt.Errorf("retriable_status_codes: %d is not an HTTP status", c)
		}
		p.StatusCodes = append(p.StatusCodes, int(c))
	}
	if b := rp.GetRetryBackOff(); b != nil {
		if b.GetBaseInterval() == nil {
			return nil, fmt.Errorf("retry_back_off.base_interval: required")
		}
		t, err := duration(b.GetBaseInterval())
		if err != nil || t <= 0 {
			return nil, fmt.Errorf("retry_back_off.base_interval: want a positive duration")
		}
		p.BaseInterval = t
		if b.GetMaxInterval() != nil {
			m, err := duration(b.GetMaxInterval())
			if err != nil || m < t {
				return nil, fmt.Errorf("retry_back_off.max_interval: want a duration at least base_interval")
			}
			p.MaxInterval = m
		}
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = 10 * p.BaseInterval
	}
	for i, hp := range rp.GetRetryHostPredicate() {
		if hp.GetName() != previousHostsName && hp.GetTypedConfig().GetTypeUrl() != typePreviousHosts {
			return nil, fmt.Errorf("retry_host_predicate[%d]: %q not supported, want %s", i, hp.GetName(), previousHostsName)
		}
		if tc := hp.GetTypedConfig(); tc != nil && tc.GetTypeUrl() != typePreviousHosts {
			return nil, fmt.Errorf("retry_host_predicate[%d].typed_config: %s, want %s", i, tc.GetTypeUrl(), typePreviousHosts)
		}
		p.PreviousHosts = true
	}
	if n := rp.GetHostSelectionRetryMaxAttempts(); n != 0 {
		if n < 0 || n > 100 {
			return nil, fmt.Errorf("host_selection_retry_max_attempts: %d, want 1..100", n)
		}
		p.HostSelectionAttempts = uint32(n)
	}
	for i, h := range rp.GetRetriableRequestHeaders() {
		m, err := translateHeaderMatcher(h)
		if err != nil {
			return nil, fmt.Errorf("retriable_request_headers[%d].%w", i, err)
		}
		p.RequestHeaders = append(p.RequestHeaders, m)
	}
	return p, nil
}

func duration(d *durationpb.Duration) (time.Duration, error) {
	if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
		return 0, fmt.Errorf("invalid duration")
	}
	return d.AsDuration(), nil
}

// TranslateBudget reads filter_metadata["trellis"].retry_budget of a
// cluster: {retry_ratio: number, min_retries_per_second: number, ttl:
// duration string ("10s", as protobuf JSON) or number of seconds}. Absent
// fields (or an absent budget) take the defaults. Other keys of the trellis
// namespace are not the budget's business and are left alone.
func TranslateBudget(md *corev3.Metadata) (BudgetConfig, error) {
	cfg := DefaultBudget()
	ns := md.GetFilterMetadata()[MetadataNamespace]
	v, ok := ns.GetFields()[budgetKey]
	if !ok {
		return cfg, nil
	}
	const path = "metadata.filter_metadata[\"trellis\"].retry_budget"
	st := v.GetStructValue()
	if st == nil {
		return cfg, fmt.Errorf("%s: want an object", path)
	}
	for k, f := range st.GetFields() {
		switch k {
		case "retry_ratio":
			n, ok := number(f)
			if !ok || n < 0 || n > 1000 {
				return cfg, fmt.Errorf("%s.retry_ratio: want a number in 0..1000", path)
			}
			cfg.RetryRatio = n
		case "min_retries_per_second":
			n, ok := number(f)
			if !ok || n < 0 || n > 1e6 {
				return cfg, fmt.Errorf("%s.min_retries_per_second: want a non-negative number", path)
			}
			cfg.MinRetriesPerSecond = n
		case "ttl":
			d, err := ttl(f)
			if err != nil {
				return cfg, fmt.Errorf("%s.ttl: %w", path, err)
			}
			cfg.TTL = d
		default:
			return cfg, fmt.Errorf("%s.%s: unknown field", path, k)
		}
	}
	return cfg, nil
}

func number(v *structpb.Value) (float64, bool) {
	n, ok := v.GetKind().(*structpb.Value_NumberValue)
	if !ok || math.IsNaN(n.NumberValue) {
		return 0, false
	}
	return n.NumberValue, true
}

func ttl(v *structpb.Value) (time.Duration, error) {
	var d time.Duration
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		d = time.Duration(k.NumberValue * float64(time.Second))
	case *structpb.Value_StringValue:
		var err error
		if d, err = time.ParseDuration(k.StringValue); err != nil {
			return 0, fmt.Errorf("%q: %w", k.StringValue, err)
		}
	default:
		return 0, fmt.Errorf("want a duration string or seconds")
	}
	if d <= 0 || d > time.Hour {
		return 0, fmt.Errorf("%s, want more than 0 and at most 1h", d)
	}
	return d, nil
}
