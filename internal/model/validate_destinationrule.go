package model

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Accepted enum values and Envoy's limits, as Istio validates them.
var (
	lbSimple          = []string{"UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"}
	tlsModes          = []string{"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"}
	h2UpgradePolicies = []string{"DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"}
)

const (
	maxMinimumRingSize = 8388608 // Envoy: ring_hash_lb_config.minimum_ring_size ≤ 8M
	maglevTableLimit   = 5000011 // Envoy: maglev_lb_config.table_size is a prime below this
)

func (v *validator) destinationRule(s *DestinationRuleSpec) {
	if s.Host == "" {
		v.errf("spec.host", "required")
	}
	v.trafficPolicy("spec.trafficPolicy", s.TrafficPolicy)
	names := map[string]int{}
	for i, sub := range s.Subsets {
		p := fmt.Sprintf("spec.subsets[%d]", i)
		v.label(p+".name", sub.Name)
		if j, dup := names[sub.Name]; dup && sub.Name != "" {
			v.errf(p+".name", "duplicate subset %q (also spec.subsets[%d])", sub.Name, j)
		} else {
			names[sub.Name] = i
		}
		v.trafficPolicy(p+".trafficPolicy", sub.TrafficPolicy)
	}
	if len(s.ExportTo) > 0 {
		v.notImplemented("spec.exportTo")
	}
	if s.WorkloadSelector != nil {
		v.notImplemented("spec.workloadSelector")
	}
}

func (v *validator) trafficPolicy(p string, tp *TrafficPolicy) {
	if tp == nil {
		return
	}
	if tp.LoadBalancer == nil && tp.ConnectionPool == nil && tp.OutlierDetection == nil && tp.TLS == nil &&
		len(tp.PortLevelSettings) == 0 && tp.Tunnel == nil && tp.ProxyProtocol == nil && tp.RetryBudget == nil {
		v.errf(p, "must set at least one field")
	}
	v.policyParts(p, tp.LoadBalancer, tp.ConnectionPool, tp.OutlierDetection, tp.TLS)
	ports := map[uint32]int{}
	for i, pl := range tp.PortLevelSettings {
		pp := fmt.Sprintf("%s.portLevelSettings[%d]", p, i)
		if pl.Port == nil {
			v.errf(pp+".port", "required")
		} else {
			v.port(pp+".port.number", pl.Port.Number, true)
			if j, dup := ports[pl.Port.Number]; dup {
				v.warnf(pp+".port.number", "port %d is also set by portLevelSettings[%d]; only the first applies", pl.Port.Number, j)
			} else {
				ports[pl.Port.Number] = i
			}
		}
		if pl.LoadBalancer == nil && pl.ConnectionPool == nil && pl.OutlierDetection == nil && pl.TLS == nil {
			v.errf(pp, "must set at least one of loadBalancer, connectionPool, outlierDetection and tls")
		}
		v.policyParts(pp, pl.LoadBalancer, pl.ConnectionPool, pl.OutlierDetection, pl.TLS)
	}
	if tp.Tunnel != nil {
		v.notImplemented(p + ".tunnel")
	}
	if tp.ProxyProtocol != nil {
		v.notImplemented(p + ".proxyProtocol")
	}
	v.retryBudget(p+".retryBudget", tp.RetryBudget)
}

func (v *validator) policyParts(p string, lb *LoadBalancerSettings, cp *ConnectionPoolSettings, od *OutlierDetection, tls *ClientTLSSettings) {
	v.loadBalancer(p+".loadBalancer", lb)
	v.connectionPool(p+".connectionPool", cp)
	v.outlierDetection(p+".outlierDetection", od)
	if tls != nil {
		if tls.Mode != "" && !slices.Contains(tlsModes, tls.Mode) {
			v.errf(p+".tls.mode", "%q is not one of %v", tls.Mode, tlsModes)
		}
		if tls.Mode != "ISTIO_MUTUAL" {
			v.warnf(p+".tls", "only ISTIO_MUTUAL is implemented (the mesh always uses mutual TLS), ignored")
		}
	}
}

func (v *validator) loadBalancer(p string, lb *LoadBalancerSettings) {
	if lb == nil {
		return
	}
	switch {
	case lb.Simple != "" && lb.ConsistentHash != nil:
		v.errf(p, "simple and consistentHash are mutually exclusive")
	case lb.Simple != "" && !slices.Contains(lbSimple, lb.Simple):
		v.errf(p+".simple", "%q is not one of %v", lb.Simple, lbSimple)
	case lb.Simple == "PASSTHROUGH":
		v.warnf(p+".simple", "PASSTHROUGH is not implemented yet, ignored (ROUND_ROBIN is used)")
	}
	if lb.ConsistentHash != nil {
		v.consistentHash(p+".consistentHash", lb.ConsistentHash)
	}
	if lb.LocalityLbSetting != nil {
		v.notImplemented(p + ".localityLbSetting")
	}
	if lb.WarmupDurationSecs != "" {
		v.notImplemented(p + ".warmupDurationSecs")
		v.durationMS(p+".warmupDurationSecs", lb.WarmupDurationSecs)
	}
	if w := lb.Warmup; w != nil {
		v.notImplemented(p + ".warmup")
		if w.Duration == "" {
			v.errf(p+".warmup.duration", "required")
		}
		v.durationMS(p+".warmup.duration", w.Duration)
		if m := w.MinimumPercent; m != nil && (math.IsNaN(*m) || *m < 0 || *m > 100) {
			v.errf(p+".warmup.minimumPercent", "%g out of range, want 0..100", *m)
		}
		if a := w.Aggression; a != nil && (math.IsNaN(*a) || *a < 1) {
			v.errf(p+".warmup.aggression", "%g must be at least 1", *a)
		}
	}
}

func (v *validator) consistentHash(p string, ch *ConsistentHashLB) {
	keys := 0
	for _, set := range []bool{ch.HTTPHeaderName != "", ch.HTTPCookie != nil, ch.UseSourceIP, ch.HTTPQueryParameterName != ""} {
		if set {
			keys++
		}
	}
	if keys > 1 {
		v.errf(p, "only one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName may be set")
	}
	if c := ch.HTTPCookie; c != nil {
		if c.Name == "" {
			v.errf(p+".httpCookie.name", "required")
		}
		v.duration(p+".httpCookie.ttl", c.TTL)
		if len(c.Attributes) > 0 {
			v.notImplemented(p + ".httpCookie.attributes")
		}
	}
	if ch.RingHash != nil && ch.Maglev != nil {
		v.errf(p, "ringHash and maglev are mutually exclusive")
	}
	if ch.MinimumRingSize != 0 {
		v.warnf(p+".minimumRingSize", "deprecated, use ringHash.minimumRingSize")
		if ch.RingHash != nil || ch.Maglev != nil {
			v.errf(p+".minimumRingSize", "must not be set with ringHash or maglev")
		}
		v.ringSize(p+".minimumRingSize", ch.MinimumRingSize)
	}
	if ch.RingHash != nil {
		v.ringSize(p+".ringHash.minimumRingSize", ch.RingHash.MinimumRingSize)
	}
	if m := ch.Maglev; m != nil {
		switch size := m.TableSize; {
		case size == 0:
			v.errf(p+".maglev.tableSize", "required")
		case size >= maglevTableLimit:
			v.errf(p+".maglev.tableSize", "%d out of range, want a prime below %d", size, maglevTableLimit)
		case !isPrime(size):
			v.errf(p+".maglev.tableSize", "%d is not a prime number", size)
		}
	}
}

func (v *validator) ringSize(p string, n uint64) {
	if n > maxMinimumRingSize {
		v.errf(p, "%d out of range, want at most %d", n, maxMinimumRingSize)
	}
}

// isPrime reports whether x is prime, as Envoy checks a Maglev table size.
func isPrime(x uint64) bool {
	if x < 2 {
		return false
	}
	if x < 4 {
		return true
	}
	if x%2 == 0 {
		return false
	}
	for f := uint64(3); f <= x/f; f += 2 {
		if x%f == 0 {
			return false
		}
	}
	return true
}

func (v *validator) connectionPool(p string, cp *ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if cp.TCP == nil && cp.HTTP == nil {
		v.errf(p, "one of tcp and http is required")
	}
	if t := cp.TCP; t != nil {
		v.nonNegative(p+".tcp.maxConnections", t.MaxConnections)
		v.durationMS(p+".tcp.connectTimeout", t.ConnectTimeout)
		v.durationMS(p+".tcp.maxConnectionDuration", t.MaxConnectionDuration)
		if d, err := ParseDuration(t.IdleTimeout); t.IdleTimeout != "" && (err != nil || d != 0) {
			v.durationMS(p+".tcp.idleTimeout", t.IdleTimeout) // 0s disables the timeout
		}
		if ka := t.TCPKeepalive; ka != nil {
			v.notImplemented(p + ".tcp.tcpKeepalive")
			v.durationMS(p+".tcp.tcpKeepalive.time", ka.Time)
			v.durationMS(p+".tcp.tcpKeepalive.interval", ka.Interval)
		}
	}
	if h := cp.HTTP; h != nil {
		v.nonNegative(p+".http.http1MaxPendingRequests", h.HTTP1MaxPendingRequests)
		v.nonNegative(p+".http.http2MaxRequests", h.HTTP2MaxRequests)
		v.nonNegative(p+".http.maxRequestsPerConnection", h.MaxRequestsPerConnection)
		v.nonNegative(p+".http.maxRetries", h.MaxRetries)
		v.nonNegative(p+".http.maxConcurrentStreams", h.MaxConcurrentStreams)
		v.durationMS(p+".http.idleTimeout", h.IdleTimeout)
		if h.H2UpgradePolicy != "" && !slices.Contains(h2UpgradePolicies, h.H2UpgradePolicy) {
			v.errf(p+".http.h2UpgradePolicy", "%q is not one of %v", h.H2UpgradePolicy, h2UpgradePolicies)
		}
		if h.UseClientProtocol {
			if h.H2UpgradePolicy == "UPGRADE" {
				v.errf(p+".http.useClientProtocol", "must not be true when h2UpgradePolicy is UPGRADE")
			}
			v.notImplemented(p + ".http.useClientProtocol")
		}
		if h.MaxConcurrentStreams != 0 {
			v.notImplemented(p + ".http.maxConcurrentStreams")
		}
	}
}

func (v *validator) outlierDetection(p string, od *OutlierDetection) {
	if od == nil {
		return
	}
	if od.ConsecutiveErrors < 0 {
		v.errf(p+".consecutiveErrors", "%d must not be negative", od.ConsecutiveErrors)
	} else if od.ConsecutiveErrors > 0 {
		v.warnf(p+".consecutiveErrors", "deprecated, use consecutiveGatewayErrors or consecutive5xxErrors (read as consecutiveGatewayErrors)")
	}
	if od.SplitExternalLocalOriginErrors {
		v.notImplemented(p + ".splitExternalLocalOriginErrors")
	} else if n := od.ConsecutiveLocalOriginFailures; n != nil && *n > 0 {
		v.errf(p+".consecutiveLocalOriginFailures", "requires splitExternalLocalOriginErrors: true")
	}
	v.durationMS(p+".interval", od.Interval)
	v.durationMS(p+".baseEjectionTime", od.BaseEjectionTime)
	if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
		v.errf(p+".maxEjectionPercent", "%d out of range, want 0..100", od.MaxEjectionPercent)
	}
	if od.MinHealthPercent < 0 || od.MinHealthPercent > 100 {
		v.errf(p+".minHealthPercent", "%d out of range, want 0..100", od.MinHealthPercent)
	}
}

func (v *validator) retryBudget(p string, rb *RetryBudget) {
	if rb == nil {
		return
	}
	if pc := rb.Percent; pc != nil && (math.IsNaN(*pc) || *pc < 0 || *pc > 100) {
		v.errf(p+".percent", "%g out of range, want 0..100", *pc)
	}
	v.durationMS(p+".budgetInterval", rb.BudgetInterval)
}

func (v *validator) nonNegative(path string, n int32) {
	if n < 0 {
		v.errf(path, "%d must not be negative", n)
	}
}

// durationMS checks a duration as Istio does for connection and ejection
// timings: at least 1ms, in whole milliseconds. Empty means unset.
func (v *validator) durationMS(path string, d Duration) {
	if d == "" {
		return
	}
	t, err := ParseDuration(d)
	switch {
	case err != nil:
		v.errf(path, "%v", err)
	case t < time.Millisecond:
		v.errf(path, "%q must be at least 1ms", string(d))
	case t%time.Millisecond != 0:
		v.errf(path, "%q must be a whole number of milliseconds", string(d))
	}
}
