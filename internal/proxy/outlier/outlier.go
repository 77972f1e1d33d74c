// Package outlier is passive health checking with Envoy's outlier detection
// semantics: endpoints whose responses fail are ejected from load balancing
// for a growing time, within max_ejection_percent of the cluster.
//
//	request paths ── Report(host, status) ──► Host counters (atomics)
//	                                 │ consecutive_5xx / consecutive_gateway_failure reached
//	                                 ▼
//	Detector (mutex; never on the request path otherwise) ── eject ──► onChange()
//	      ▲                                                         (rebuild the LB's host set)
//	      └─ every interval (a timer, stopped with the detector):
//	         return hosts whose base_ejection_time × multiplier (+ jitter) passed,
//	         lower the multiplier of hosts healthy for an interval,
//	         success-rate and failure-percentage ejections
//
// Local failures are reported as Envoy maps them without
// split_external_local_origin_errors: a connect failure or reset as 503, a
// timeout as 504, so they count as 5xx and as gateway errors.
package outlier

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Envoy's defaults.
const (
	DefaultConsecutive5xx         = 5
	DefaultConsecutiveGateway     = 5
	DefaultInterval               = 10 * time.Second
	DefaultBaseEjectionTime       = 30 * time.Second
	DefaultMaxEjectionTime        = 300 * time.Second
	DefaultMaxEjectionPercent     = 10
	DefaultSuccessRateMinHosts    = 5
	DefaultSuccessRateVolume      = 100
	DefaultSuccessRateStdevFactor = 1900
	DefaultFailurePercentage      = 85
	DefaultFailurePercentMinHosts = 5
	DefaultFailurePercentVolume   = 50
)

// Config is a translated outlier_detection. Enforcing values are percents.
type Config struct {
	Consecutive5xx        uint32 // 0: disabled
	Enforcing5xx          uint32
	ConsecutiveGateway    uint32 // 0: disabled
	EnforcingGateway      uint32
	Interval              time.Duration
	BaseEjectionTime      time.Duration
	MaxEjectionTime       time.Duration
	MaxEjectionTimeJitter time.Duration
	MaxEjectionPercent    uint32
	AlwaysEjectOneHost    bool

	EnforcingSuccessRate     uint32
	SuccessRateMinHosts      uint32
	SuccessRateRequestVolume uint32
	SuccessRateStdevFactor   uint32 // ×1000

	FailurePercentageThreshold     uint32
	EnforcingFailurePercentage     uint32
	FailurePercentageMinHosts      uint32
	FailurePercentageRequestVolume uint32
}

// DefaultConfig is an outlier_detection message with no field set.
func DefaultConfig() Config {
	return Config{
		Consecutive5xx:                 DefaultConsecutive5xx,
		Enforcing5xx:                   100,
		ConsecutiveGateway:             DefaultConsecutiveGateway,
		EnforcingGateway:               0,
		Interval:                       DefaultInterval,
		BaseEjectionTime:               DefaultBaseEjectionTime,
		MaxEjectionTime:                DefaultMaxEjectionTime,
		MaxEjectionPercent:             DefaultMaxEjectionPercent,
		EnforcingSuccessRate:           100,
		SuccessRateMinHosts:            DefaultSuccessRateMinHosts,
		SuccessRateRequestVolume:       DefaultSuccessRateVolume,
		SuccessRateStdevFactor:         DefaultSuccessRateStdevFactor,
		FailurePercentageThreshold:     DefaultFailurePercentage,
		EnforcingFailurePercentage:     0,
		FailurePercentageMinHosts:      DefaultFailurePercentMinHosts,
		FailurePercentageRequestVolume: DefaultFailurePercentVolume,
	}
}

// trackRates: success-rate or failure-percentage ejection can happen, so
// every response is counted per interval.
func (c *Config) trackRates() bool {
	return c.EnforcingSuccessRate > 0 || c.EnforcingFailurePercentage > 0
}

// Counters are a cluster's outlier statistics; they outlive detectors.
type Counters struct {
	EjectionsActive   atomic.Int64
	EjectionsTotal    atomic.Uint64
	EjectionsOverflow atomic.Uint64 // refused by max_ejection_percent
}

// Host is the outlier state of one endpoint. The caller keeps it across
// host set changes for as long as the endpoint exists.
type Host struct {
	cons5xx atomic.Uint32
	consGw  atomic.Uint32
	success atomic.Uint64
	total   atomic.Uint64
	ejected atomic.Bool

	// Guarded by the detector's mutex.
	backoff     uint32 // ejection time multiplier
	ejections   uint64
	ejectedAt   time.Time
	jitter      time.Duration
	unejectedAt time.Time // zero: never
}

// Ejected reports whether the host is out of load balancing.
func (h *Host) Ejected() bool { return h.ejected.Load() }

// Ejections is how many times the host was ejected.
func (h *Host) Ejections() uint64 { return h.ejections }

// Detector runs outlier detection for one cluster.
type Detector struct {
	cfg      Config
	now      func() time.Time
	rand     func(n uint64) uint64
	counters *Counters
	onChange func()

	mu      sync.Mutex
	hosts   []*Host
	ejected int
	timer   *time.Timer
	stopped bool
}

// Options are the detector's collaborators.
type Options struct {
	// OnChange runs, without the detector's lock held, after hosts were
	// ejected or returned.
	OnChange func()
	Counters *Counters
	// Now and Rand replace time.Now and math/rand/v2's Uint64N in tests.
	Now  func() time.Time
	Rand func(n uint64) uint64
}

// New returns a detector without hosts. It does nothing on its own until
// Start.
func New(cfg Config, o Options) *Detector {
	d := &Detector{cfg: cfg, now: o.Now, rand: o.Rand, counters: o.Counters, onChange: o.OnChange}
	if d.now == nil {
		d.now = time.Now
	}
	if d.rand == nil {
		d.rand = rand.Uint64N
	}
	if d.counters == nil {
		d.counters = &Counters{}
	}
	if d.onChange == nil {
		d.onChange = func() {}
	}
	return d
}

// Config returns the detector's configuration.
func (d *Detector) Config() Config { return d.cfg }

// SetHosts replaces the cluster's hosts. Hosts kept from the previous set
// keep their state; removed ones no longer count as ejected.
func (d *Detector) SetHosts(hosts []*Host) {
	d.mu.Lock()
	d.hosts = hosts
	n := 0
	for _, h := range hosts {
		if h.ejected.Load() {
			n++
		}
	}
	d.counters.EjectionsActive.Add(int64(n - d.ejected))
	d.ejected = n
	d.mu.Unlock()
}

// Start arms the interval timer.
func (d *Detector) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer == nil && !d.stopped {
		d.timer = time.AfterFunc(d.cfg.Interval, d.onInterval)
	}
}

// Stop disarms the timer for good and withdraws the detector's active
// ejections from the counters.
func (d *Detector) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	d.stopped = true
	if d.timer != nil {
		d.timer.Stop()
	}
	d.counters.EjectionsActive.Add(-int64(d.ejected))
	d.ejected = 0
}

func (d *Detector) onInterval() {
	changed := d.Tick()
	d.mu.Lock()
	if !d.stopped {
		d.timer.Reset(d.cfg.Interval)
	}
	d.mu.Unlock()
	if changed {
		d.onChange()
	}
}

// Report records the outcome of one request to h: an HTTP status, or the
// status a local failure maps to (503 connect failure or reset, 504
// timeout). It may eject h, calling OnChange.
func (d *Detector) Report(h *Host, status int) {
	if d.cfg.trackRates() {
		h.total.Add(1)
	}
	if status < 500 || status > 599 {
		if d.cfg.trackRates() {
			h.success.Add(1)
		}
		// Load first: most responses succeed, and a store would make every
		// request write the shared cache line.
		if h.cons5xx.Load() != 0 {
			h.cons5xx.Store(0)
		}
		if h.consGw.Load() != 0 {
			h.consGw.Store(0)
		}
		return
	}
	ejected := false
	if status == 502 || status == 503 || status == 504 {
		if n := h.consGw.Add(1); n == d.cfg.ConsecutiveGateway && n > 0 {
			ejected = d.consecutive(h, d.cfg.EnforcingGateway, true)
		}
	} else if h.consGw.Load() != 0 {
		h.consGw.Store(0)
	}
	if n := h.cons5xx.Add(1); n == d.cfg.Consecutive5xx && n > 0 {
		ejected = d.consecutive(h, d.cfg.Enforcing5xx, false) || ejected
	}
	if ejected {
		d.onChange()
	}
}

// consecutive handles a consecutive-failure detection: reset the counter
// (so another run of failures is detected even without a success between)
// and eject if enforced and allowed.
func (d *Detector) consecutive(h *Host, enforcing uint32, gateway bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if gateway {
		h.consGw.Store(0)
	} else {
		h.cons5xx.Store(0)
	}
	if d.stopped || h.ejected.Load() || !d.member(h) {
		return false
	}
	return d.ejectLocked(h, enforcing)
}

func (d *Detector) member(h *Host) bool {
	for _, x := range d.hosts {
		if x == h {
			return true
		}
	}
	return false
}

// ejectLocked ejects h if max_ejection_percent allows (or it would be the
// only ejected host and always_eject_one_host is set) and the enforcing
// percentage draw says so.
func (d *Detector) ejectLocked(h *Host, enforcing uint32) bool {
	maxPct := math.Min(100, float64(d.cfg.MaxEjectionPercent))
	pct := 100 * float64(d.ejected+1) / float64(len(d.hosts))
	if pct > maxPct && !(d.cfg.AlwaysEjectOneHost && d.ejected == 0) {
		d.counters.EjectionsOverflow.Add(1)
		return false
	}
	if enforcing < 100 && d.rand(100) >= uint64(enforcing) {
		return false
	}
	now := d.now()
	h.ejected.Store(true)
	h.ejectedAt = now
	h.ejections++
	h.jitter = 0
	if j := d.cfg.MaxEjectionTimeJitter; j > 0 {
		h.jitter = time.Duration(d.rand(uint64(j) + 1))
	}
	base, maxT := d.cfg.BaseEjectionTime, d.cfg.MaxEjectionTime
	if time.Duration(h.backoff)*base < maxT+base {
		h.backoff++
	}
	d.ejected++
	d.counters.EjectionsActive.Add(1)
	d.counters.EjectionsTotal.Add(1)
	return true
}

// Tick runs one interval's work now (the timer calls it; tests call it with
// a fake clock) and reports whether any host changed state.
func (d *Detector) Tick() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return false
	}
	now := d.now()
	changed := false
	base := d.cfg.BaseEjectionTime
	limit := max(base, d.cfg.MaxEjectionTime)
	for _, h := range d.hosts {
		if !h.ejected.Load() {
			if !h.unejectedAt.IsZero() && now.Sub(h.unejectedAt) >= d.cfg.Interval && h.backoff > 0 {
				h.backoff--
			}
			continue
		}
		if min(time.Duration(h.backoff)*base, limit)+h.jitter <= now.Sub(h.ejectedAt) {
			h.ejected.Store(false)
			h.cons5xx.Store(0)
			h.consGw.Store(0)
			h.unejectedAt = now
			d.ejected--
			d.counters.EjectionsActive.Add(-1)
			changed = true
		}
	}
	if d.cfg.trackRates() {
		changed = d.rateEjectionsLocked() || changed
	}
	return changed
}

type hostRate struct {
	h    *Host
	rate float64 // success percent
}

// rateEjectionsLocked is Envoy's success-rate (mean − stdev × factor) and
// failure-percentage ejection over the interval's counts.
func (d *Detector) rateEjectionsLocked() bool {
	var srHosts, fpHosts []hostRate
	var sum float64
	srVolume := uint64(max(d.cfg.SuccessRateRequestVolume, 1))
	fpVolume := uint64(max(d.cfg.FailurePercentageRequestVolume, 1))
	for _, h := range d.hosts {
		total, success := h.total.Swap(0), h.success.Swap(0)
		if h.ejected.Load() || total == 0 {
			continue
		}
		rate := 100 * float64(success) / float64(total)
		if total >= srVolume {
			srHosts = append(srHosts, hostRate{h, rate})
			sum += rate
		}
		if total >= fpVolume {
			fpHosts = append(fpHosts, hostRate{h, rate})
		}
	}
	changed := false
	if d.cfg.EnforcingSuccessRate > 0 && len(srHosts) > 0 && len(srHosts) >= int(d.cfg.SuccessRateMinHosts) {
		mean := sum / float64(len(srHosts))
		var variance float64
		for _, r := range srHosts {
			variance += (r.rate - mean) * (r.rate - mean)
		}
		stdev := math.Sqrt(variance / float64(len(srHosts)))
		threshold := mean - float64(d.cfg.SuccessRateStdevFactor)/1000*stdev
		for _, r := range srHosts {
			if r.rate < threshold && !r.h.ejected.Load() {
				changed = d.ejectLocked(r.h, d.cfg.EnforcingSuccessRate) || changed
			}
		}
	}
	if d.cfg.EnforcingFailurePercentage > 0 && len(fpHosts) > 0 && len(fpHosts) >= int(d.cfg.FailurePercentageMinHosts) {
		for _, r := range fpHosts {
			if 100-r.rate >= float64(d.cfg.FailurePercentageThreshold) && !r.h.ejected.Load() {
				changed = d.ejectLocked(r.h, d.cfg.EnforcingFailurePercentage) || changed
			}
		}
	}
	return changed
}
