// Package ratelimit is the sidecar's local rate limiter: a lock-free token
// bucket with the semantics of Envoy's local rate limit filter
// (envoy.filters.http.local_ratelimit, AtomicTokenBucket).
//
//	Take(now) ──► one CAS on the time the bucket was last empty ──► Decision
//	                 (refill is computed from the elapsed time; no timers, no goroutines)
//
// A bucket holds up to MaxTokens tokens and starts full. It refills
// continuously at TokensPerFill per FillInterval; a request takes one whole
// token or is limited.
package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// MinFillInterval is the smallest fill interval Envoy accepts.
const MinFillInterval = 50 * time.Millisecond

// Params are a bucket's configuration: token_bucket{max_tokens,
// tokens_per_fill, fill_interval}.
type Params struct {
	MaxTokens     uint32
	TokensPerFill uint32
	FillInterval  time.Duration
}

// Validate checks p as Envoy does.
func (p Params) Validate() error {
	switch {
	case p.MaxTokens == 0:
		return errors.New("max_tokens: must be > 0")
	case p.TokensPerFill == 0:
		return errors.New("tokens_per_fill: must be > 0")
	case p.FillInterval < MinFillInterval:
		return fmt.Errorf("fill_interval: %s, must be >= %s", p.FillInterval, MinFillInterval)
	}
	return nil
}

// Key identifies the parameters, for keeping a bucket across config updates
// that leave them unchanged.
func (p Params) Key() string {
	return fmt.Sprintf("%d/%d/%d", p.MaxTokens, p.TokensPerFill, p.FillInterval.Nanoseconds())
}

// Bucket is a token bucket safe for concurrent use without locks.
type Bucket struct {
	params   Params
	max      float64 // tokens
	perToken float64 // nanoseconds to refill one token
	epoch    time.Time
	// empty holds the float64 bits of the time (ns since epoch) at which the
	// bucket was, or would have been, empty: the tokens at time t are
	// min(max, (t-empty)/perToken). Taking a token moves it by perToken.
	empty atomic.Uint64
}

// New returns a full bucket. p must be valid.
func New(p Params, now time.Time) *Bucket {
	b := &Bucket{
		params:   p,
		max:      float64(p.MaxTokens),
		perToken: float64(p.FillInterval.Nanoseconds()) / float64(p.TokensPerFill),
		epoch:    now,
	}
	b.empty.Store(math.Float64bits(-b.max * b.perToken))
	return b
}

// Params returns the bucket's configuration.
func (b *Bucket) Params() Params { return b.params }

// Decision is the outcome of one Take, with the values of Envoy's
// x-ratelimit-* headers (DRAFT_VERSION_03).
type Decision struct {
	Allowed bool
	// Limit is the bucket's capacity (x-ratelimit-limit).
	Limit uint32
	// Remaining is the whole tokens left after this request
	// (x-ratelimit-remaining).
	Remaining uint32
	// ResetSeconds is 0 while a token is available, else the whole seconds
	// one token takes to refill (x-ratelimit-reset), as Envoy computes it.
	ResetSeconds uint64
}

// Take takes one token at time now, if one is available.
func (b *Bucket) Take(now time.Time) Decision {
	t := float64(now.Sub(b.epoch).Nanoseconds())
	full := t - b.max*b.perToken
	for {
		old := b.empty.Load()
		empty := math.Float64frombits(old)
		if empty < full {
			empty = full // refilled to the brim; excess tokens are lost
		}
		avail := (t - empty) / b.perToken
		if avail < 1 {
			return b.decision(false, avail)
		}
		next := empty + b.perToken
		if b.empty.CompareAndSwap(old, math.Float64bits(next)) {
			return b.decision(true, (t-next)/b.perToken)
		}
	}
}

func (b *Bucket) decision(allowed bool, tokens float64) Decision {
	d := Decision{Allowed: allowed, Limit: b.params.MaxTokens}
	if tokens >= 1 {
		d.Remaining = uint32(min(math.Floor(tokens), b.max))
		return d
	}
	// Envoy: ceil(milliseconds per token) / 1000, in integer seconds.
	d.ResetSeconds = uint64(math.Ceil(b.perToken/1e6)) / 1000
	return d
}
