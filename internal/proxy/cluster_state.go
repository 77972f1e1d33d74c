package proxy

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/trellis-mesh/trellis/internal/proxy/breaker"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/outlier"
	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

// clusterPolicy is a cluster's translated resilience settings.
type clusterPolicy struct {
	lb      lb.Config
	limits  breaker.Thresholds
	outlier *outlier.Config // nil: no outlier detection
	budget  retry.BudgetConfig
}

// equal reports whether q has the same settings: a clusterState made for p
// serves q unchanged.
func (p *clusterPolicy) equal(q *clusterPolicy) bool {
	if (p.outlier == nil) != (q.outlier == nil) || p.outlier != nil && *p.outlier != *q.outlier {
		return false
	}
	return p.lb == q.lb && p.limits == q.limits && p.budget == q.budget
}

// endpoint is one upstream host of a cluster. It is kept, by address, across
// EDS updates for as long as the cluster's clusterState lives, so its
// active-request count and outlier state survive endpoint changes.
type endpoint struct {
	addr   string
	active atomic.Int64 // requests in flight (LEAST_REQUEST)
	od     outlier.Host
}

func (e *endpoint) Address() string       { return e.addr }
func (e *endpoint) ActiveRequests() int64 { return e.active.Load() }

// clusterState is the mutable runtime of a cluster's policies: balancer,
// breaker gauges, retry budget and outlier detector. Configs whose cluster
// keeps an equal policy share it (build.go); a changed setting gets a fresh
// one. Requests only read it through lock-free paths; mu
// serializes endpoint-set rebuilds.
//
//	EDS update (commit) ─┐            ┌─ outlier ejection / return
//	                     ▼            ▼
//	                setEndpoints ─► rebuild: usable = not ejected
//	                                 (all, below healthy_panic_threshold)
//	                                 ─► lb.SetHosts (ring/table built here)
type clusterState struct {
	policy      clusterPolicy
	lb          *lb.Balancer[*endpoint]
	br          *breaker.Breaker
	budget      *retry.Budget
	od          *outlier.Detector // nil: no outlier detection
	trackActive bool              // LEAST_REQUEST: count requests in flight

	mu  sync.Mutex
	all []*endpoint // in EDS order, without duplicates
}

func newClusterState(pol clusterPolicy, stats *endpointStats) *clusterState {
	s := &clusterState{
		policy:      pol,
		lb:          lb.New[*endpoint](pol.lb),
		br:          breaker.New(pol.limits),
		budget:      retry.NewBudget(pol.budget, nil),
		trackActive: pol.lb.Policy == lb.LeastRequest,
	}
	if pol.outlier != nil {
		s.od = outlier.New(*pol.outlier, outlier.Options{OnChange: s.onOutlierChange, Counters: &stats.outlier})
	}
	return s
}

// setEndpoints replaces the endpoint set (healthy EDS endpoints, in order).
// Endpoints that stay keep their state. The index by address lives only
// here: a map kept per cluster would cost more than its endpoints.
func (s *clusterState) setEndpoints(addrs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := make(map[string]*endpoint, len(s.all))
	for _, e := range s.all {
		old[e.addr] = e
	}
	all := make([]*endpoint, 0, len(addrs))
	seen := make(map[string]struct{}, len(addrs))
	for _, a := range addrs {
		if _, dup := seen[a]; dup {
			continue
		}
		seen[a] = struct{}{}
		e := old[a]
		if e == nil {
			e = &endpoint{addr: a}
		}
		all = append(all, e)
	}
	s.all = all
	if s.od != nil {
		hosts := make([]*outlier.Host, len(all))
		for i, e := range all {
			hosts[i] = &e.od
		}
		s.od.SetHosts(hosts)
	}
	s.rebuildLocked()
}

func (s *clusterState) onOutlierChange() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rebuildLocked()
}

// rebuildLocked hands the balancer the endpoints it may use: those not
// ejected, or all of them when the usable share is below the panic
// threshold (Envoy's panic mode).
func (s *clusterState) rebuildLocked() {
	usable := make([]*endpoint, 0, len(s.all))
	for _, e := range s.all {
		if !e.od.Ejected() {
			usable = append(usable, e)
		}
	}
	if n := len(s.all); n > 0 && 100*float64(len(usable)) < s.policy.lb.PanicThreshold*float64(n) {
		usable = slices.Clone(s.all)
	}
	s.lb.SetHosts(usable)
}

// start arms the outlier detector's interval timer (at commit).
func (s *clusterState) start() {
	if s.od != nil {
		s.od.Start()
	}
}

// stop ends the outlier detector (the state is no longer used by any new
// config; in-flight requests may still report to it, which is harmless).
func (s *clusterState) stop() {
	if s.od != nil {
		s.od.Stop()
	}
}

// pick returns an endpoint for a request with hash key k. tried lists the
// endpoints of earlier attempts: with a previous_hosts retry predicate,
// selection is repeated (up to host_selection_retry_max_attempts) while it
// lands on one of them; the last selection is used anyway, as Envoy does.
func (s *clusterState) pick(k lb.Key, tried []*endpoint, pol *retry.Policy) (*endpoint, bool) {
	e, ok := s.lb.Pick(k, 0)
	if !ok || len(tried) == 0 || pol == nil || !pol.PreviousHosts {
		return e, ok
	}
	for a := uint32(1); a <= pol.HostSelectionAttempts && slices.Contains(tried, e); a++ {
		e, _ = s.lb.Pick(k, a)
	}
	return e, true
}

// begin and end bracket a request's use of an endpoint.
func (s *clusterState) begin(e *endpoint) {
	if s.trackActive {
		e.active.Add(1)
	}
}

func (s *clusterState) end(e *endpoint) {
	if s.trackActive {
		e.active.Add(-1)
	}
}

// report records an attempt's outcome for outlier detection: its response
// status, or the status Envoy maps a local failure to.
func (s *clusterState) report(e *endpoint, status int) {
	if s.od != nil && status > 0 {
		s.od.Report(&e.od, status)
	}
}

// outlierStatus maps an attempt outcome to the status outlier detection
// counts (0: not counted, e.g. the caller left or a breaker refused it).
func outlierStatus(o retry.Outcome) int {
	switch o.Failure {
	case retry.NoFailure:
		return o.Status
	case retry.PerTryTimeout:
		return 504
	case retry.Overflow:
		return 0
	}
	return 503 // connect failure, reset, refused stream
}

// tryRetry asks the circuit breaker's max_retries and the retry budget for
// one more retry. held tracks the max_retries unit of the request's previous
// retry, released once that retry has completed (as Envoy does).
func (s *clusterState) tryRetry(stats *endpointStats, held *bool) bool {
	if *held {
		s.br.Retries.Release()
		*held = false
	}
	if !s.br.Retries.TryAcquire() {
		stats.retriesExhausted.Add(1)
		return false
	}
	if !s.budget.TryRetry() {
		s.br.Retries.Release()
		stats.retriesExhausted.Add(1)
		return false
	}
	*held = true
	stats.retries.Add(1)
	return true
}

func (s *clusterState) releaseRetry(held *bool) {
	if *held {
		s.br.Retries.Release()
		*held = false
	}
}
