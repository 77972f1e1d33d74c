package compile

import (
	"slices"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// Istio's default retry policy (retry.DefaultPolicy), and the parts of an
// explicit one Istio does not let users change.
const (
	defaultRetryOn                = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	defaultRetryAttempts          = 2
	defaultRetriableStatus        = 503
	hostSelectionRetryMaxAttempts = 5
	defaultRetryBackOff           = 25 * time.Millisecond // Envoy's default base_interval, written out
	retriableStatusCodes          = "retriable-status-codes"
	previousHostsPredicate        = "envoy.retry_host_predicates.previous_hosts"
	// idempotentMethods are the methods the default policy retries: the
	// issue's rule is that a non-idempotent request is never retried
	// unless the user asked for retries.
	idempotentMethods = "GET|HEAD|OPTIONS|TRACE|PUT|DELETE"
)

// retryPolicy translates a rule's retries as Istio's retry.ConvertPolicy
// does. Without retries, Istio's default policy applies (2 retries on
// connect-failure, refused-stream, unavailable, cancelled and 503),
// restricted to idempotent methods by retriable_request_headers (a
// Trellis rule, see idempotentMethods). attempts 0 disables retries (nil).
// An explicit policy starts from the default and applies to every method:
// attempts → num_retries; retryOn → retry_on, its numeric entries →
// retriable_status_codes (adding the retriable-status-codes condition);
// perTryTimeout → per_try_timeout; backoff → retry_back_off.base_interval;
// retryIgnorePreviousHosts → whether the previous_hosts predicate is kept.
// consistentHash drops that predicate by default, as Istio does for a
// single destination with a consistent-hash load balancer: a retry should
// stay on the hashed host.
func retryPolicy(r *model.HTTPRetry, consistentHash bool) (*routev3.RetryPolicy, error) {
	if r != nil && r.Attempts <= 0 {
		return nil, nil
	}
	p := &routev3.RetryPolicy{
		RetryOn:                       defaultRetryOn,
		NumRetries:                    wrapperspb.UInt32(defaultRetryAttempts),
		RetriableStatusCodes:          []uint32{defaultRetriableStatus},
		HostSelectionRetryMaxAttempts: hostSelectionRetryMaxAttempts,
		RetryBackOff:                  &routev3.RetryPolicy_RetryBackOff{BaseInterval: duration(defaultRetryBackOff)},
	}
	previousHosts := !consistentHash
	if r == nil {
		p.RetriableRequestHeaders = []*routev3.HeaderMatcher{{
			Name: headerMethod,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: idempotentMethods}},
			}},
		}}
	} else {
		p.NumRetries = wrapperspb.UInt32(uint32(r.Attempts))
		if r.RetryOn != "" {
			conditions, codes, _ := model.ParseRetryOn(r.RetryOn)
			if len(codes) > 0 && !slices.Contains(conditions, retriableStatusCodes) {
				conditions = append(conditions, retriableStatusCodes)
			}
			p.RetryOn = strings.Join(conditions, ",")
			p.RetriableStatusCodes = codes
		}
		if d, ok := parseDuration(r.PerTryTimeout); ok {
			p.PerTryTimeout = duration(d)
		}
		if d, ok := parseDuration(r.Backoff); ok && d > 0 {
			p.RetryBackOff.BaseInterval = duration(d)
		}
		if r.RetryIgnorePreviousHosts != nil {
			previousHosts = *r.RetryIgnorePreviousHosts
		}
	}
	if previousHosts {
		a, err := toAny(&previoushostsv3.PreviousHostsPredicate{})
		if err != nil {
			return nil, err
		}
		p.RetryHostPredicate = []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       previousHostsPredicate,
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: a},
		}}
	}
	return p, nil
}

// parseDuration parses an optional duration; ok is false when it is unset
// or invalid (Validate rejects invalid ones).
func parseDuration(d model.Duration) (time.Duration, bool) {
	if d == "" {
		return 0, false
	}
	t, err := model.ParseDuration(d)
	return t, err == nil
}
