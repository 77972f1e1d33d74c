// Package retry decides, with Envoy's semantics, whether a failed attempt of
// a request is retried, how long to back off first, and whether the
// cluster's retry budget (Linkerd's semantics) still allows it.
//
//	route.retry_policy ─► Policy ── Eligible(request headers)   once per request
//	                         ├──── ShouldRetry(Outcome)          after each attempt
//	                         └──── Backoff(n)                     before retry n
//	cluster metadata ───► Budget ── Request() per request, TryRetry() per retry
//
// The request paths own the I/O: they run attempts, report each Outcome, and
// stop when the policy, the retry count, the route timeout, the budget or the
// circuit breaker's max_retries says so.
package retry

import (
	"math/rand/v2"
	"net/http"
	"time"
)

// On is a set of retry_on conditions.
type On uint32

// The retry_on conditions (Envoy's names in comments).
const (
	On5xx                   On = 1 << iota // 5xx: any 5xx response, or no response (reset, connect failure, per-try timeout)
	OnGatewayError                         // gateway-error: 502, 503, 504, or no response
	OnReset                                // reset: no response (disconnect, reset, per-try timeout)
	OnConnectFailure                       // connect-failure
	OnRetriable4xx                         // retriable-4xx: 409
	OnRefusedStream                        // refused-stream: HTTP/2 REFUSED_STREAM
	OnRetriableStatusCodes                 // retriable-status-codes: retriable_status_codes
	OnEnvoyRateLimited                     // envoy-ratelimited: the response has x-envoy-ratelimited
	OnResetBeforeRequest                   // reset-before-request: no response and nothing of the request sent
	OnGrpcCancelled                        // cancelled
	OnGrpcDeadlineExceeded                 // deadline-exceeded
	OnGrpcInternal                         // internal
	OnGrpcResourceExhausted                // resource-exhausted
	OnGrpcUnavailable                      // unavailable

	onGrpc = OnGrpcCancelled | OnGrpcDeadlineExceeded | OnGrpcInternal | OnGrpcResourceExhausted | OnGrpcUnavailable
)

var onNames = map[string]On{
	"5xx":                    On5xx,
	"gateway-error":          OnGatewayError,
	"reset":                  OnReset,
	"connect-failure":        OnConnectFailure,
	"retriable-4xx":          OnRetriable4xx,
	"refused-stream":         OnRefusedStream,
	"retriable-status-codes": OnRetriableStatusCodes,
	"envoy-ratelimited":      OnEnvoyRateLimited,
	"reset-before-request":   OnResetBeforeRequest,
	"cancelled":              OnGrpcCancelled,
	"deadline-exceeded":      OnGrpcDeadlineExceeded,
	"internal":               OnGrpcInternal,
	"resource-exhausted":     OnGrpcResourceExhausted,
	"unavailable":            OnGrpcUnavailable,
}

// Envoy's defaults.
const (
	DefaultNumRetries   = 1
	DefaultBaseInterval = 25 * time.Millisecond
	// DefaultHostSelectionAttempts is host_selection_retry_max_attempts when
	// unset: one more selection after a rejected host.
	DefaultHostSelectionAttempts = 1
	// MaxBufferedBody bounds a request body kept for retries; a larger (or
	// unknown-length, once past it) body makes its request not retriable.
	MaxBufferedBody = 64 << 10
)

// Policy is a translated route retry_policy. It is immutable.
type Policy struct {
	On            On
	NumRetries    uint32
	PerTryTimeout time.Duration // 0: none
	StatusCodes   []int         // retriable_status_codes
	BaseInterval  time.Duration
	MaxInterval   time.Duration
	// PreviousHosts: retry_host_predicate previous_hosts; a retry avoids
	// endpoints already tried, re-selecting up to HostSelectionAttempts times.
	PreviousHosts         bool
	HostSelectionAttempts uint32
	// RequestHeaders (retriable_request_headers): a request is retried only
	// when one of them matches.
	RequestHeaders []HeaderMatcher
}

// Failure is why an attempt ended without a response.
type Failure uint8

// The failures of an attempt.
const (
	NoFailure      Failure = iota
	ConnectFailure         // TCP connect or TLS handshake failed
	Reset                  // the upstream closed or reset before a complete response head
	RefusedStream          // HTTP/2 REFUSED_STREAM
	PerTryTimeout          // per_try_timeout expired
	Overflow               // a circuit breaker refused the attempt: never retried
)

// Outcome is the result of one attempt: a response head, or a failure.
type Outcome struct {
	Failure Failure
	// RequestSent: some of the request reached the upstream (for
	// reset-before-request).
	RequestSent bool
	Status      int
	// GrpcStatus is the grpc-status of a trailers-only response (headers),
	// or -1.
	GrpcStatus int
	// RateLimited: the response carries x-envoy-ratelimited.
	RateLimited bool
}

// ShouldRetry reports whether the policy's conditions call for retrying
// an attempt with this outcome (Envoy's wouldRetryFromHeaders and
// wouldRetryFromReset). Retry counts, timeouts and budgets are checked by
// the caller.
func (p *Policy) ShouldRetry(o Outcome) bool {
	if o.Failure != NoFailure {
		return p.retryFailure(o)
	}
	if o.RateLimited {
		// A response from an upstream Envoy's rate limiter is retried only
		// under envoy-ratelimited, whatever its status.
		return p.On&OnEnvoyRateLimited != 0
	}
	s := o.Status
	switch {
	case p.On&On5xx != 0 && s >= 500 && s <= 599:
		return true
	case p.On&OnGatewayError != 0 && isGatewayError(s):
		return true
	case p.On&OnRetriable4xx != 0 && s == http.StatusConflict:
		return true
	}
	if p.On&OnRetriableStatusCodes != 0 {
		for _, c := range p.StatusCodes {
			if c == s {
				return true
			}
		}
	}
	if p.On&onGrpc != 0 && o.GrpcStatus >= 0 {
		switch o.GrpcStatus {
		case 1:
			return p.On&OnGrpcCancelled != 0
		case 4:
			return p.On&OnGrpcDeadlineExceeded != 0
		case 8:
			return p.On&OnGrpcResourceExhausted != 0
		case 13:
			return p.On&OnGrpcInternal != 0
		case 14:
			return p.On&OnGrpcUnavailable != 0
		}
	}
	return false
}

func (p *Policy) retryFailure(o Outcome) bool {
	switch o.Failure {
	case Overflow:
		return false
	case PerTryTimeout:
		// Envoy resets the attempt (a local reset) and retries it as a
		// reset: under 5xx, gateway-error and reset.
		return p.On&(On5xx|OnGatewayError|OnReset) != 0
	case ConnectFailure:
		if p.On&OnConnectFailure != 0 {
			return true
		}
	}
	if p.On&OnResetBeforeRequest != 0 && !o.RequestSent {
		return true
	}
	if p.On&(On5xx|OnGatewayError|OnReset) != 0 {
		return true
	}
	return o.Failure == RefusedStream && p.On&OnRefusedStream != 0
}

func isGatewayError(s int) bool {
	return s == http.StatusBadGateway || s == http.StatusServiceUnavailable || s == http.StatusGatewayTimeout
}

// Backoff returns the wait before retry n (1 for the first retry): Envoy's
// jittered exponential back-off, a random duration in [0, base×2^(n-1)),
// the upper bound capped at max_interval.
func (p *Policy) Backoff(n int) time.Duration {
	return jittered(p.BaseInterval, p.MaxInterval, n, rand.Int64N)
}

func jittered(base, maxInterval time.Duration, n int, randN func(int64) int64) time.Duration {
	bound := base
	for i := 1; i < n && bound < maxInterval; i++ {
		if bound > maxInterval/2 {
			bound = maxInterval
		} else {
			bound *= 2
		}
	}
	bound = min(bound, maxInterval)
	if bound <= 0 {
		return 0
	}
	return time.Duration(randN(int64(bound)))
}

// Grpc reports whether any gRPC status condition is set, so a request path
// need only look for grpc-status when it matters.
func (p *Policy) Grpc() bool { return p.On&onGrpc != 0 }
