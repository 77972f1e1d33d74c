package proxy

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
)

// Cluster results: ok, or the x-trellis-reason of the proxy's own 503.
const (
	ClusterOK          = "ok"
	ClusterNotFound    = reasonClusterNotFound
	ClusterNoneHealthy = reasonNoHealthy
)

// endpointMetadataNS is the filter_metadata namespace of an endpoint's
// workload and identity, as the compiler writes them.
const endpointMetadataNS = "trellis"

// ClusterDetail is a cluster the request may go to.
type ClusterDetail struct {
	Name string `json:"name"`
	// Service, Subset and Port are read from the name
	// (outbound|<port>|<subset>|<service>).
	Service string `json:"service,omitempty"`
	Subset  string `json:"subset,omitempty"`
	Port    uint32 `json:"port,omitempty"`
	// Weight is the entry's weight among weighted clusters (0: the only
	// cluster); Probability its share, 0..1.
	Weight      uint32  `json:"weight,omitempty"`
	Probability float64 `json:"probability"`
	// Result is ok, or why the proxy answers 503 itself.
	Result         string          `json:"result"`
	Protocol       string          `json:"protocol,omitempty"`
	ConnectTimeout string          `json:"connectTimeout,omitempty"`
	SecureNaming   []string        `json:"secureNaming,omitempty"` // SPIFFE IDs allowed to serve it
	LoadBalancer   LBDetail        `json:"loadBalancer"`
	Endpoints      []EndpointInfo  `json:"endpoints"`
	Pick           string          `json:"pick,omitempty"`     // how this request's endpoint is chosen
	Endpoint       string          `json:"endpoint,omitempty"` // the endpoint, when the balancer's choice is fixed
	Breakers       BreakerDetail   `json:"circuitBreakers"`
	Outlier        *OutlierDetail  `json:"outlierDetection,omitempty"`
	RetryBudget    BudgetDetail    `json:"retryBudget"`
	Upstream       *UpstreamDetail `json:"upstream,omitempty"`
}

// LBDetail is a cluster's load balancer.
type LBDetail struct {
	Policy         string  `json:"policy"`
	ChoiceCount    uint32  `json:"choiceCount,omitempty"`
	MinRingSize    uint64  `json:"minRingSize,omitempty"`
	MaxRingSize    uint64  `json:"maxRingSize,omitempty"`
	TableSize      uint64  `json:"tableSize,omitempty"`
	PanicThreshold float64 `json:"panicThreshold"`
}

// EndpointInfo is one endpoint of a cluster's load assignment.
type EndpointInfo struct {
	Address  string `json:"address"`
	Health   string `json:"health"`
	Workload string `json:"workload,omitempty"`
	Identity string `json:"identity,omitempty"`
	// Usable: the balancer picks from it (HEALTHY or UNKNOWN).
	Usable bool `json:"usable"`
}

// BreakerDetail is a cluster's circuit breaker thresholds.
type BreakerDetail struct {
	MaxConnections     uint32 `json:"maxConnections"`
	MaxPendingRequests uint32 `json:"maxPendingRequests"`
	MaxRequests        uint32 `json:"maxRequests"`
	MaxRetries         uint32 `json:"maxRetries"`
}

// OutlierDetail is a cluster's outlier detection.
type OutlierDetail struct {
	Consecutive5xx            uint32 `json:"consecutive5xx"`
	Enforcing5xx              uint32 `json:"enforcingConsecutive5xx"`
	ConsecutiveGatewayFailure uint32 `json:"consecutiveGatewayFailure"`
	EnforcingGatewayFailure   uint32 `json:"enforcingConsecutiveGatewayFailure"`
	Interval                  string `json:"interval"`
	BaseEjectionTime          string `json:"baseEjectionTime"`
	MaxEjectionPercent        uint32 `json:"maxEjectionPercent"`
}

// BudgetDetail is a cluster's retry budget (Linkerd's semantics).
type BudgetDetail struct {
	RetryRatio          float64 `json:"retryRatio"`
	MinRetriesPerSecond float64 `json:"minRetriesPerSecond"`
	TTL                 string  `json:"ttl"`
}

// UpstreamDetail is the request as the cluster gets it: after the route's
// header mutation, host rewrite and path rewrite.
type UpstreamDetail struct {
	Authority       string      `json:"authority"`
	Target          string      `json:"target"`
	Headers         http.Header `json:"headers,omitempty"`
	RequestHeaders  []HeaderOp  `json:"requestHeaderOps,omitempty"`
	ResponseHeaders []HeaderOp  `json:"responseHeaderOps,omitempty"`
}

// HeaderOp is one header mutation, in the order the proxy applies them.
type HeaderOp struct {
	Op    string `json:"op"` // remove, or Envoy's append_action
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// explainCluster describes cluster name for a request on route rt (nil for
// a TCP listener).
func (ts *translatedSet) explainCluster(name string, rt *route, r *http.Request) ClusterDetail {
	d := ClusterDetail{Name: name, Result: ClusterOK, Endpoints: []EndpointInfo{}}
	d.Service, d.Subset, d.Port = clusterNameParts(name)
	c := ts.clusters[name]
	if c == nil {
		d.Result = ClusterNotFound
		return d
	}
	d.Protocol, d.ConnectTimeout = "HTTP/1.1", c.connectTimeout.String()
	if c.http2 {
		d.Protocol = "HTTP/2"
	}
	if c.tls != nil {
		for _, id := range c.tls.allowed {
			d.SecureNaming = append(d.SecureNaming, id.String())
		}
	}
	pol := &c.policy
	d.LoadBalancer = LBDetail{Policy: pol.lb.Policy.String(), PanicThreshold: pol.lb.PanicThreshold}
	switch pol.lb.Policy {
	case lb.LeastRequest:
		d.LoadBalancer.ChoiceCount = pol.lb.ChoiceCount
	case lb.RingHash:
		d.LoadBalancer.MinRingSize, d.LoadBalancer.MaxRingSize = pol.lb.MinRingSize, pol.lb.MaxRingSize
	case lb.Maglev:
		d.LoadBalancer.TableSize = pol.lb.TableSize
	}
	d.Breakers = BreakerDetail{pol.limits.MaxConnections, pol.limits.MaxPendingRequests, pol.limits.MaxRequests, pol.limits.MaxRetries}
	if o := pol.outlier; o != nil {
		d.Outlier = &OutlierDetail{Consecutive5xx: o.Consecutive5xx, Enforcing5xx: o.Enforcing5xx,
			ConsecutiveGatewayFailure: o.ConsecutiveGateway, EnforcingGatewayFailure: o.EnforcingGateway,
			Interval: o.Interval.String(), BaseEjectionTime: o.BaseEjectionTime.String(), MaxEjectionPercent: o.MaxEjectionPercent}
	}
	d.RetryBudget = BudgetDetail{pol.budget.RetryRatio, pol.budget.MinRetriesPerSecond, pol.budget.TTL.String()}
	d.Endpoints = endpointInfos(ts.set.Clusters[name], ts.set.Endpoints, c.endpoints)
	if len(c.endpoints) == 0 {
		d.Result = ClusterNoneHealthy
		return d
	}
	d.Pick, d.Endpoint = pickEndpoint(c, rt, r)
	return d
}

// pickEndpoint says how the cluster's balancer chooses this request's
// endpoint, and which one when the choice is fixed: a hashing balancer with
// a hash key from the request, built over the usable endpoints as the
// sidecar's is (without ejections, which are runtime state).
func pickEndpoint(c *cluster, rt *route, r *http.Request) (string, string) {
	cfg := c.policy.lb
	n := len(c.endpoints)
	if !cfg.Hashing() {
		switch cfg.Policy {
		case lb.LeastRequest:
			return fmt.Sprintf("least request: the less busy of %d random picks among %s", cfg.ChoiceCount, endpointsN(n)), ""
		case lb.Random:
			return "random among " + endpointsN(n), ""
		}
		return "round robin over " + endpointsN(n), ""
	}
	if rt == nil || len(rt.hash) == 0 {
		return fmt.Sprintf("%s without a hash policy on the route: random among %s", cfg.Policy, endpointsN(n)), ""
	}
	key, setCookie := stdHashKey(rt, c, r)
	if setCookie != "" {
		return fmt.Sprintf("%s on a cookie the proxy generates per connection (Set-Cookie: %s): the endpoint depends on the connection", cfg.Policy, setCookie), ""
	}
	if _, ok := key.Hash(); !ok {
		return fmt.Sprintf("%s: the request has no value for the hash policy, so random among %s", cfg.Policy, endpointsN(n)), ""
	}
	b := lb.New[*endpoint](cfg)
	hosts := make([]*endpoint, 0, n)
	for _, a := range c.endpoints {
		if !slices.ContainsFunc(hosts, func(e *endpoint) bool { return e.addr == a }) {
			hosts = append(hosts, &endpoint{addr: a})
		}
	}
	b.SetHosts(hosts)
	e, ok := b.Pick(key, 0)
	if !ok {
		return fmt.Sprintf("%s: no endpoint", cfg.Policy), ""
	}
	return fmt.Sprintf("%s of the request's hash key: the same endpoint for every request with this key while no endpoint is ejected or added", cfg.Policy), e.addr
}

func endpointsN(n int) string {
	if n == 1 {
		return "1 endpoint"
	}
	return strconv.Itoa(n) + " endpoints"
}

// endpointInfos lists a cluster's assigned endpoints, found as
// translateCluster finds them.
func endpointInfos(c *clusterv3.Cluster, eds map[string]*endpointv3.ClusterLoadAssignment, usable []string) []EndpointInfo {
	cla := c.GetLoadAssignment()
	if c.GetType() == clusterv3.Cluster_EDS {
		name := c.GetName()
		if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
			name = sn
		}
		cla = eds[name]
	}
	out := []EndpointInfo{}
	for _, loc := range cla.GetEndpoints() {
		for _, le := range loc.GetLbEndpoints() {
			addr, err := socketAddress(le.GetEndpoint().GetAddress())
			if err != nil {
				continue
			}
			info := EndpointInfo{Address: addr, Health: le.GetHealthStatus().String(), Usable: slices.Contains(usable, addr)}
			if md := le.GetMetadata().GetFilterMetadata()[endpointMetadataNS]; md != nil {
				info.Workload = md.GetFields()["workload"].GetStringValue()
				info.Identity = md.GetFields()["identity"].GetStringValue()
			}
			out = append(out, info)
		}
	}
	return out
}

// clusterNameParts reads Istio's cluster names: outbound|<port>|<subset>|<service>
// and inbound|<port>.
func clusterNameParts(name string) (service, subset string, port uint32) {
	parts := strings.Split(name, "|")
	if len(parts) < 2 {
		return "", "", 0
	}
	if p, err := strconv.ParseUint(parts[1], 10, 16); err == nil {
		port = uint32(p)
	}
	if parts[0] == "outbound" && len(parts) == 4 {
		return parts[3], parts[2], port
	}
	return "", "", port
}

// upstreamRequest applies the route's request mutation, host rewrite and
// path rewrite for weighted entry wc (-1: none) to a copy of r, with the
// proxy's own functions.
func upstreamRequest(rt *route, wc int, r *http.Request, view *request[string]) *UpstreamDetail {
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	rt.requestMutation(wc).applyHTTP(h)
	d := &UpstreamDetail{Authority: r.Host, Target: view.target, RequestHeaders: mutationOps(rt.requestMutation(wc)),
		ResponseHeaders: mutationOps(rt.responseMutation(wc))}
	if len(h) > 0 {
		d.Headers = h
	}
	if hl := rt.requestHost(wc); hl != nil {
		d.Authority = hl.value
	}
	if rt.rewrite != nil {
		if t, ok := rewriteTarget(rt.rewrite, &rt.match, view.target, nil); ok {
			d.Target = string(t)
		}
	}
	return d
}

// mutationOps lists a header mutation's operations in the order they apply.
func mutationOps(m *headerMutation) []HeaderOp {
	if m.empty() {
		return nil
	}
	var out []HeaderOp
	for _, l := range m.levels {
		for _, name := range l.remove {
			out = append(out, HeaderOp{Op: "remove", Name: name})
		}
		for _, a := range l.add {
			out = append(out, HeaderOp{Op: appendActionName(a.action), Name: a.name, Value: a.value})
		}
	}
	return out
}

func appendActionName(a appendAction) string {
	switch a {
	case addIfAbsent:
		return "ADD_IF_ABSENT"
	case overwriteIfExistsOrAdd:
		return "OVERWRITE_IF_EXISTS_OR_ADD"
	case overwriteIfExists:
		return "OVERWRITE_IF_EXISTS"
	}
	return "APPEND_IF_EXISTS_OR_ADD"
}

// explainTCP fills in the clusters of a TCP listener.
func (ts *translatedSet) explainTCP(ex *Explanation, lc *listenerConfig) {
	ex.Notes = append(ex.Notes, "a TCP listener: each connection goes to one cluster, idle timeout "+durationOrNone(lc.idleTimeout))
	if lc.tcpWeighted == nil {
		cd := ts.explainCluster(lc.tcpCluster, nil, nil)
		cd.Probability = 1
		ex.Clusters = append(ex.Clusters, cd)
		return
	}
	prev := uint32(0)
	for i, name := range lc.tcpWeighted.names {
		cd := ts.explainCluster(name, nil, nil)
		cd.Weight = lc.tcpWeighted.cumulative[i] - prev
		prev = lc.tcpWeighted.cumulative[i]
		cd.Probability = float64(cd.Weight) / float64(lc.tcpWeighted.total)
		ex.Clusters = append(ex.Clusters, cd)
	}
}
