package proxy

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	commonratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/ratelimit"
)

var typeLocalRateLimit = typeURL(&localratelimitv3.LocalRateLimit{})

// limitPolicy is a LocalRateLimit (envoy.filters.http.local_ratelimit) at
// the HCM, a virtual host (service-wide) or a route (its own bucket).
type limitPolicy struct {
	params   ratelimit.Params
	enabled  bool // filter_enabled 100% (unset: 0%, the filter does nothing)
	enforced bool // filter_enforced 100%: limited requests are refused
	status   int  // of a refused request: status.code, default 429
	headers  bool // enable_x_ratelimit_headers: DRAFT_VERSION_03
	// grpcStatus of a refused gRPC request: RESOURCE_EXHAUSTED with
	// rate_limited_as_resource_exhausted, else -1 (429 → UNAVAILABLE).
	grpcStatus  int
	respHeaders *headerMutation // response_headers_to_add, on refused requests
	reqHeaders  *headerMutation // request_headers_to_add_when_not_enforced
	scope       string          // where the bucket is configured: its identity across updates
	bucket      *ratelimit.Bucket
}

// limiterSet holds the buckets of a config by key (scope and parameters).
type limiterSet map[string]*ratelimit.Bucket

// translateLocalRateLimit translates a LocalRateLimit. perRoute: it comes
// from typed_per_filter_config, where Envoy requires a token bucket.
func translateLocalRateLimit(l *localratelimitv3.LocalRateLimit, scope string, perRoute bool) (*limitPolicy, error) {
	lp := &limitPolicy{status: http.StatusTooManyRequests, grpcStatus: -1, scope: scope}
	tb := l.GetTokenBucket()
	if tb == nil {
		if perRoute {
			return nil, fmt.Errorf("token_bucket: missing (required in per-route config)")
		}
		return nil, nil // the HCM's filter only enables per-route limits
	}
	lp.params = ratelimit.Params{MaxTokens: tb.GetMaxTokens(), TokensPerFill: 1}
	if v := tb.GetTokensPerFill(); v != nil {
		lp.params.TokensPerFill = v.GetValue()
	}
	if d := tb.GetFillInterval(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fmt.Errorf("token_bucket.fill_interval: invalid duration")
		}
		lp.params.FillInterval = d.AsDuration()
	}
	if err := lp.params.Validate(); err != nil {
		return nil, fmt.Errorf("token_bucket.%w", err)
	}
	var err error
	if lp.enabled, err = translateAllOrNothing(l.GetFilterEnabled().GetDefaultValue()); err != nil {
		return nil, fmt.Errorf("filter_enabled.default_value: %w", err)
	}
	if lp.enforced, err = translateAllOrNothing(l.GetFilterEnforced().GetDefaultValue()); err != nil {
		return nil, fmt.Errorf("filter_enforced.default_value: %w", err)
	}
	if s := l.GetStatus(); s != nil && int(s.GetCode()) >= 400 {
		lp.status = int(s.GetCode()) // Envoy: codes below 400 mean 429
	}
	switch l.GetEnableXRatelimitHeaders() {
	case commonratelimitv3.XRateLimitHeadersRFCVersion_OFF:
	case commonratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03:
		lp.headers = true
	default:
		return nil, fmt.Errorf("enable_x_ratelimit_headers: %s not supported", l.GetEnableXRatelimitHeaders())
	}
	if l.GetRateLimitedAsResourceExhausted() {
		lp.grpcStatus = 8 // RESOURCE_EXHAUSTED
	}
	switch {
	case len(l.GetDescriptors()) > 0 || len(l.GetRateLimits()) > 0:
		return nil, fmt.Errorf("descriptors/rate_limits: not supported")
	case l.GetLocalRateLimitPerDownstreamConnection():
		return nil, fmt.Errorf("local_rate_limit_per_downstream_connection: not supported")
	case l.GetLocalClusterRateLimit() != nil:
		return nil, fmt.Errorf("local_cluster_rate_limit: not supported")
	case l.GetEnableRetryAfterHeader():
		return nil, fmt.Errorf("enable_retry_after_header: not supported")
	case l.GetAlwaysConsumeDefaultTokenBucket() != nil && !l.GetAlwaysConsumeDefaultTokenBucket().GetValue():
		return nil, fmt.Errorf("always_consume_default_token_bucket: false not supported")
	}
	resp, err := translateHeaderLevel("response_headers_to_add", "", headerConfig{add: l.GetResponseHeadersToAdd()})
	if err != nil {
		return nil, err
	}
	req, err := translateHeaderLevel("request_headers_to_add_when_not_enforced", "", headerConfig{add: l.GetRequestHeadersToAddWhenNotEnforced()})
	if err != nil {
		return nil, err
	}
	lp.respHeaders, lp.reqHeaders = buildMutation(resp), buildMutation(req)
	return lp, nil
}

// translateAllOrNothing accepts 0% or 100% (the proxy has no runtime to
// sample a fraction of requests for a limiter).
func translateAllOrNothing(p *typev3.FractionalPercent) (bool, error) {
	f, err := translateFraction(p)
	switch {
	case err != nil:
		return false, err
	case f.num == 0:
		return false, nil
	case f.num >= f.den:
		return true, nil
	}
	return false, fmt.Errorf("%d/%d: only 0%% or 100%% is supported", f.num, f.den)
}

// key identifies a bucket: where it is configured and its parameters.
func (lp *limitPolicy) key() string { return lp.scope + "|" + lp.params.Key() }

// bind gives lp its bucket: the previous config's with the same key, so an
// update that leaves the limit unchanged does not refill it, or a new one.
func (s limiterSet) bind(lp *limitPolicy, prev limiterSet, now time.Time) {
	if lp == nil {
		return
	}
	k := lp.key()
	b := s[k]
	if b == nil {
		b = prev[k]
	}
	if b == nil {
		b = ratelimit.New(lp.params, now)
	}
	s[k] = b
	lp.bucket = b
}

// bindLimiters attaches buckets to every rate limit policy of cfg.
func (cfg *runtimeConfig) bindLimiters(prev *runtimeConfig) {
	var old limiterSet
	if prev != nil {
		old = prev.limiters
	}
	cfg.limiters = limiterSet{}
	now := time.Now()
	tables := make([]*routeTable, 0, len(cfg.routes)+len(cfg.listeners))
	for _, t := range cfg.routes {
		tables = append(tables, t)
	}
	for _, lc := range cfg.listeners {
		if lc.inlineRoutes != nil {
			tables = append(tables, lc.inlineRoutes)
		}
		for i := range lc.filters.chain {
			cfg.limiters.bind(lc.filters.chain[i].limit, old, now)
		}
	}
	for _, t := range tables {
		for _, rt := range t.routes {
			for i := range rt.filters {
				cfg.limiters.bind(rt.filters[i].limit, old, now)
			}
		}
	}
}

// rlHeaders are the x-ratelimit-* values of a request's decision.
type rlHeaders struct {
	set bool
	d   ratelimit.Decision
}

func (h *rlHeaders) setHTTP(hdr http.Header) {
	if !h.set {
		return
	}
	hdr["X-Ratelimit-Limit"] = append(hdr["X-Ratelimit-Limit"], strconv.FormatUint(uint64(h.d.Limit), 10))
	hdr["X-Ratelimit-Remaining"] = append(hdr["X-Ratelimit-Remaining"], strconv.FormatUint(uint64(h.d.Remaining), 10))
	hdr["X-Ratelimit-Reset"] = append(hdr["X-Ratelimit-Reset"], strconv.FormatUint(h.d.ResetSeconds, 10))
}

// appendRaw appends the header lines to dst.
func (h *rlHeaders) appendRaw(dst []byte) []byte {
	if !h.set {
		return dst
	}
	dst = append(dst, "X-Ratelimit-Limit: "...)
	dst = appendUint(dst, uint64(h.d.Limit))
	dst = append(dst, "\r\nX-Ratelimit-Remaining: "...)
	dst = appendUint(dst, uint64(h.d.Remaining))
	dst = append(dst, "\r\nX-Ratelimit-Reset: "...)
	dst = appendUint(dst, h.d.ResetSeconds)
	return append(dst, "\r\n"...)
}

// take applies the policy to one request: its decision headers, and
// whether it is refused.
func (lp *limitPolicy) take(now time.Time) (rlHeaders, bool) {
	d := lp.bucket.Take(now)
	return rlHeaders{set: lp.headers, d: d}, !d.Allowed && lp.enforced
}

// limitedReply is the local reply of a refused request.
func (lp *limitPolicy) limitedReply(grpc bool) proxyReply {
	return proxyReply{code: lp.status, reason: reasonRateLimited, body: "local_rate_limited", contentType: "text/plain",
		grpc: grpc, grpcStatus: lp.grpcStatus, extra: lp.respHeaders}
}
