package proxy

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/trellis-mesh/trellis/internal/proxy/outlier"
)

// endpointStats are the counters of one listener or cluster. They are
// resolved when a config is built, so the request path only does atomic adds.
type endpointStats struct {
	requests atomic.Uint64
	resp1xx  atomic.Uint64
	resp2xx  atomic.Uint64
	resp3xx  atomic.Uint64
	resp4xx  atomic.Uint64
	resp5xx  atomic.Uint64
	// downstreamGone counts requests whose caller went away before the
	// answer (Envoy's DC flag). They are not upstream failures, so they are
	// kept out of the response classes.
	downstreamGone  atomic.Uint64
	connectFailures atomic.Uint64
	tlsFailures     atomic.Uint64
	active          atomic.Int64 // open connections
	// Route features (listeners): injected faults, refused or limited
	// requests, mirror copies answered and dropped.
	faultDelays    atomic.Uint64
	faultAborts    atomic.Uint64
	rateLimited    atomic.Uint64
	mirrorsSent    atomic.Uint64
	mirrorsDropped atomic.Uint64
	// rqTooLarge counts requests answered 413 by the buffer filter
	// (Envoy's downstream_rq_too_large).
	rqTooLarge atomic.Uint64
	// Authn/authz filters (listeners, authz.go): requests refused by
	// jwt_authn, rbac decisions of enforcing rules (per filter), LOG
	// matches, and what shadow rules would have decided.
	jwtAuthnFailed    atomic.Uint64
	rbacAllowed       atomic.Uint64
	rbacDenied        atomic.Uint64
	rbacAudit         atomic.Uint64
	rbacShadowAllowed atomic.Uint64
	rbacShadowDenied  atomic.Uint64
	// downstreamOverflow counts connections closed at accept because the
	// listener had maxDownstreamConns open (Envoy's downstream_cx_overflow).
	downstreamOverflow atomic.Uint64
	// HTTP/2 rapid reset (h2abuse.go): streams the client reset while
	// their request was being handled (Envoy's downstream_rq_rx_reset),
	// and connections closed because most of their streams were reset
	// prematurely (downstream_rq_too_many_premature_resets).
	rxReset          atomic.Uint64
	prematureResetCx atomic.Uint64

	// Clusters only: circuit breaking, retries, outlier detection.
	upstreamOverflow    atomic.Uint64 // refused by a circuit breaker (Envoy's UO flag)
	retries             atomic.Uint64
	retriesExhausted    atomic.Uint64 // retries refused by the retry budget or max_retries
	retriesBodyTooLarge atomic.Uint64 // retry policies skipped: body over 64 KiB or of unknown length
	outlier             outlier.Counters
}

func (s *endpointStats) response(code int) {
	switch {
	case code >= 500:
		s.resp5xx.Add(1)
	case code >= 400:
		s.resp4xx.Add(1)
	case code >= 300:
		s.resp3xx.Add(1)
	case code >= 200:
		s.resp2xx.Add(1)
	default:
		s.resp1xx.Add(1)
	}
}

// statsRegistry keeps counters by name across config updates, so counters are
// cumulative for the life of the proxy. It is touched only when configs are
// built and when stats are written.
type statsRegistry struct {
	mu        sync.Mutex
	listeners map[string]*endpointStats
	clusters  map[string]*endpointStats
}

func newStatsRegistry() *statsRegistry {
	return &statsRegistry{listeners: map[string]*endpointStats{}, clusters: map[string]*endpointStats{}}
}

func (r *statsRegistry) listener(name string) *endpointStats {
	return r.get(r.listeners, name)
}

func (r *statsRegistry) cluster(name string) *endpointStats {
	return r.get(r.clusters, name)
}

func (r *statsRegistry) get(m map[string]*endpointStats, name string) *endpointStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := m[name]
	if !ok {
		s = &endpointStats{}
		m[name] = s
	}
	return s
}

// write prints every counter as "name value\n", sorted by name.
func (r *statsRegistry) write(w io.Writer) {
	r.mu.Lock()
	var lines []string
	add := func(prefix string, m map[string]*endpointStats) {
		for name, s := range m {
			p := prefix + "." + name + "."
			lines = append(lines,
				fmt.Sprintf("%srequests %d", p, s.requests.Load()),
				fmt.Sprintf("%sresponses_1xx %d", p, s.resp1xx.Load()),
				fmt.Sprintf("%sresponses_2xx %d", p, s.resp2xx.Load()),
				fmt.Sprintf("%sresponses_3xx %d", p, s.resp3xx.Load()),
				fmt.Sprintf("%sresponses_4xx %d", p, s.resp4xx.Load()),
				fmt.Sprintf("%sresponses_5xx %d", p, s.resp5xx.Load()),
				fmt.Sprintf("%sdownstream_cancelled %d", p, s.downstreamGone.Load()),
				fmt.Sprintf("%supstream_connect_failures %d", p, s.connectFailures.Load()),
				fmt.Sprintf("%stls_handshake_failures %d", p, s.tlsFailures.Load()),
				fmt.Sprintf("%sactive_connections %d", p, s.active.Load()),
				fmt.Sprintf("%sfault_delays_injected %d", p, s.faultDelays.Load()),
				fmt.Sprintf("%sfault_aborts_injected %d", p, s.faultAborts.Load()),
				fmt.Sprintf("%srate_limited %d", p, s.rateLimited.Load()),
				fmt.Sprintf("%smirrors_sent %d", p, s.mirrorsSent.Load()),
				fmt.Sprintf("%smirrors_dropped %d", p, s.mirrorsDropped.Load()),
			)
			if prefix == "listener" {
				lines = append(lines,
					fmt.Sprintf("%sjwt_authn_failed %d", p, s.jwtAuthnFailed.Load()),
					fmt.Sprintf("%srbac_allowed %d", p, s.rbacAllowed.Load()),
					fmt.Sprintf("%srbac_denied %d", p, s.rbacDenied.Load()),
					fmt.Sprintf("%srbac_audit %d", p, s.rbacAudit.Load()),
					fmt.Sprintf("%srbac_shadow_allowed %d", p, s.rbacShadowAllowed.Load()),
					fmt.Sprintf("%srbac_shadow_denied %d", p, s.rbacShadowDenied.Load()),
					fmt.Sprintf("%sdownstream_cx_overflow %d", p, s.downstreamOverflow.Load()),
					fmt.Sprintf("%sdownstream_rq_too_large %d", p, s.rqTooLarge.Load()),
					fmt.Sprintf("%sdownstream_rq_rx_reset %d", p, s.rxReset.Load()),
					fmt.Sprintf("%sdownstream_rq_too_many_premature_resets %d", p, s.prematureResetCx.Load()),
				)
			}
			if prefix == "cluster" {
				lines = append(lines,
					fmt.Sprintf("%supstream_overflow %d", p, s.upstreamOverflow.Load()),
					fmt.Sprintf("%sretries %d", p, s.retries.Load()),
					fmt.Sprintf("%sretries_budget_exhausted %d", p, s.retriesExhausted.Load()),
					fmt.Sprintf("%sretries_body_too_large %d", p, s.retriesBodyTooLarge.Load()),
					fmt.Sprintf("%soutlier_ejections_active %d", p, s.outlier.EjectionsActive.Load()),
					fmt.Sprintf("%soutlier_ejections_total %d", p, s.outlier.EjectionsTotal.Load()),
					fmt.Sprintf("%soutlier_ejections_overflow %d", p, s.outlier.EjectionsOverflow.Load()),
				)
			}
		}
	}
	add("listener", r.listeners)
	add("cluster", r.clusters)
	r.mu.Unlock()
	sort.Strings(lines)
	for _, l := range lines {
		if _, err := io.WriteString(w, l+"\n"); err != nil {
			return
		}
	}
}
