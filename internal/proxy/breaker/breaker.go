// Package breaker implements Envoy's circuit breaking thresholds for one
// cluster: limits on concurrent requests, pending requests, retries and
// connections. A request over a limit fails fast (503 with
// x-trellis-reason: upstream_overflow, Envoy's UO flag) instead of queueing.
//
//	       Thresholds (translated from circuit_breakers.thresholds[DEFAULT])
//	             │
//	Breaker ─────┬─ Requests     gauge: requests in flight (max_requests)
//	             ├─ Retries      gauge: retries in flight  (max_retries)
//	             └─ Connections  gauge: TCP proxy connections (max_connections)
//	For HTTP, max_connections and max_pending_requests are enforced by the
//	connection pool, which owns the connections and the queue of requests
//	waiting for one.
//
// Gauges are single atomic counters: acquiring is one atomic add, with no
// lock and no allocation.
package breaker

import (
	"fmt"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Envoy's defaults for the DEFAULT priority.
const (
	DefaultMaxConnections     = 1024
	DefaultMaxPendingRequests = 1024
	DefaultMaxRequests        = 1024
	DefaultMaxRetries         = 3
)

// Thresholds are the limits of one cluster.
type Thresholds struct {
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	MaxRetries         uint32
}

// DefaultThresholds are Envoy's defaults.
func DefaultThresholds() Thresholds {
	return Thresholds{
		MaxConnections:     DefaultMaxConnections,
		MaxPendingRequests: DefaultMaxPendingRequests,
		MaxRequests:        DefaultMaxRequests,
		MaxRetries:         DefaultMaxRetries,
	}
}

// Gauge counts a resource in use against a limit.
type Gauge struct {
	n   atomic.Int64
	max int64
}

// TryAcquire takes one unit if the gauge is below its limit.
func (g *Gauge) TryAcquire() bool {
	if g.n.Add(1) > g.max {
		g.n.Add(-1)
		return false
	}
	return true
}

// Release returns a unit taken by TryAcquire.
func (g *Gauge) Release() { g.n.Add(-1) }

// InUse is the number of units taken.
func (g *Gauge) InUse() int64 { return g.n.Load() }

// Limit is the gauge's limit.
func (g *Gauge) Limit() int64 { return g.max }

// Breaker holds the request, retry and TCP connection gauges of one cluster. It is created when the cluster's
// thresholds first appear or change, and kept across config updates that
// leave them unchanged; every request releases what it acquired on the
// breaker it acquired it from.
type Breaker struct {
	Thresholds  Thresholds
	Requests    Gauge
	Retries     Gauge
	Connections Gauge // tcp_proxy upstream connections
}

// New returns a breaker with no resource in use.
func New(t Thresholds) *Breaker {
	b := &Breaker{Thresholds: t}
	b.Requests.max = int64(t.MaxRequests)
	b.Retries.max = int64(t.MaxRetries)
	b.Connections.max = int64(t.MaxConnections)
	return b
}

// Translate reads circuit_breakers: the thresholds of the DEFAULT priority
// (HIGH priority thresholds are accepted and unused: no route asks for high
// priority). Absent values are Envoy's defaults.
func Translate(cb *clusterv3.CircuitBreakers) (Thresholds, error) {
	t := DefaultThresholds()
	if len(cb.GetPerHostThresholds()) > 0 {
		return t, fmt.Errorf("per_host_thresholds: not supported")
	}
	seen := map[corev3.RoutingPriority]bool{}
	for i, th := range cb.GetThresholds() {
		p := th.GetPriority()
		if seen[p] {
			return t, fmt.Errorf("thresholds[%d].priority: %s given twice", i, p)
		}
		seen[p] = true
		if th.GetRetryBudget() != nil {
			return t, fmt.Errorf("thresholds[%d].retry_budget: not supported (use the trellis retry_budget metadata)", i)
		}
		if th.GetMaxConnectionPools() != nil {
			return t, fmt.Errorf("thresholds[%d].max_connection_pools: not supported", i)
		}
		if p != corev3.RoutingPriority_DEFAULT {
			continue
		}
		set := func(dst *uint32, v interface{ GetValue() uint32 }, isSet bool) {
			if isSet {
				*dst = v.GetValue()
			}
		}
		set(&t.MaxConnections, th.GetMaxConnections(), th.GetMaxConnections() != nil)
		set(&t.MaxPendingRequests, th.GetMaxPendingRequests(), th.GetMaxPendingRequests() != nil)
		set(&t.MaxRequests, th.GetMaxRequests(), th.GetMaxRequests() != nil)
		set(&t.MaxRetries, th.GetMaxRetries(), th.GetMaxRetries() != nil)
	}
	return t, nil
}
