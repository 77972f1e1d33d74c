package retry

import (
	"sync/atomic"
	"time"
)

// BudgetConfig is a cluster's retry budget, with Linkerd's semantics: the
// retries sent in the last TTL may not exceed RetryRatio × the requests sent
// in the last TTL, plus MinRetriesPerSecond × TTL.
type BudgetConfig struct {
	RetryRatio          float64
	MinRetriesPerSecond float64
	TTL                 time.Duration
}

// DefaultBudget is the budget of a cluster without one: 20% plus 10/s over
// 10s, as Linkerd's default.
func DefaultBudget() BudgetConfig {
	return BudgetConfig{RetryRatio: 0.2, MinRetriesPerSecond: 10, TTL: 10 * time.Second}
}

// maxBuckets bounds the window's resolution: one bucket per second up to a
// 60 s TTL, TTL/60 wide above.
const maxBuckets = 60

// Budget counts requests and retries in a sliding window of per-second
// buckets. Each counter is one word holding the bucket's epoch and its count,
// updated with a compare-and-swap: no lock, no allocation.
type Budget struct {
	cfg     BudgetConfig
	now     func() time.Time
	start   time.Time
	width   time.Duration
	reqs    []atomic.Uint64
	retries []atomic.Uint64
	allowed float64 // MinRetriesPerSecond × TTL
}

// NewBudget returns an empty budget. now may be nil (time.Now); tests pass
// a fake clock.
func NewBudget(cfg BudgetConfig, now func() time.Time) *Budget {
	if now == nil {
		now = time.Now
	}
	n := int((cfg.TTL + time.Second - 1) / time.Second)
	n = min(max(n, 1), maxBuckets)
	return &Budget{
		cfg:     cfg,
		now:     now,
		start:   now(),
		width:   max(cfg.TTL/time.Duration(n), time.Nanosecond),
		reqs:    make([]atomic.Uint64, n),
		retries: make([]atomic.Uint64, n),
		allowed: cfg.MinRetriesPerSecond * cfg.TTL.Seconds(),
	}
}

// Config returns the budget's configuration.
func (b *Budget) Config() BudgetConfig { return b.cfg }

func (b *Budget) epoch() uint64 {
	return uint64(b.now().Sub(b.start)/b.width) + 1 // 0 marks an unused bucket
}

// Request records a request (its first attempt).
func (b *Budget) Request() { add(b.reqs, b.epoch()) }

// TryRetry records a retry if the budget allows one more, and reports
// whether it did. Concurrent callers may overshoot the budget by at most
// their number.
func (b *Budget) TryRetry() bool {
	e := b.epoch()
	reqs, retries := sum(b.reqs, e), sum(b.retries, e)
	if float64(retries+1) > b.cfg.RetryRatio*float64(reqs)+b.allowed {
		return false
	}
	add(b.retries, e)
	return true
}

// Counts returns the requests and retries in the current window.
func (b *Budget) Counts() (requests, retries uint64) {
	e := b.epoch()
	return sum(b.reqs, e), sum(b.retries, e)
}

const countBits = 32

func add(buckets []atomic.Uint64, epoch uint64) {
	w := &buckets[epoch%uint64(len(buckets))]
	for {
		old := w.Load()
		next := epoch<<countBits | 1
		if old>>countBits == epoch {
			if old&(1<<countBits-1) == 1<<countBits-1 {
				return // saturated
			}
			next = old + 1
		} else if old>>countBits > epoch {
			return // a racing caller already moved on to a later epoch
		}
		if w.CompareAndSwap(old, next) {
			return
		}
	}
}

// sum adds the counts of the buckets within the window ending at epoch.
func sum(buckets []atomic.Uint64, epoch uint64) uint64 {
	n := uint64(len(buckets))
	var total uint64
	for i := range buckets {
		v := buckets[i].Load()
		if e := v >> countBits; e != 0 && e <= epoch && epoch-e < n {
			total += v & (1<<countBits - 1)
		}
	}
	return total
}
