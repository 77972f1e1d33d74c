package compile

import (
	"fmt"
	"unicode/utf8"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// target is a service port some route of this proxy reaches.
type target struct {
	svc  model.ServiceRef
	port uint32
}

// serviceClusters adds the EDS clusters of a service port, the whole
// service and each DestinationRule subset, with their endpoints. They are
// built once per Index and shared by every proxy that reaches the port.
func (c *compiler) serviceClusters(t target) error {
	c.deps[t.svc] = true
	if _, done := c.set.Clusters[ClusterName(t.port, "", t.svc.Name)]; done {
		return nil
	}
	built, err := c.ix.clusters(t)
	if err != nil {
		return err
	}
	for _, b := range built {
		c.set.Clusters[b.cluster.Name] = b.cluster
		c.set.Endpoints[b.cluster.Name] = b.cla
	}
	return nil
}

// builtCluster is one EDS cluster and its endpoints.
type builtCluster struct {
	cluster *clusterv3.Cluster
	cla     *endpointv3.ClusterLoadAssignment
}

// clusters returns the clusters of a service port, building them on first use.
func (ix *Index) clusters(t target) ([]builtCluster, error) {
	ix.mu.Lock()
	built, ok := ix.built[t]
	ix.mu.Unlock()
	if ok {
		return built, nil
	}
	built, err := ix.buildClusters(t)
	if err != nil {
		return nil, err
	}
	ix.mu.Lock()
	ix.built[t] = built
	ix.mu.Unlock()
	return built, nil
}

func (ix *Index) buildClusters(t target) ([]builtCluster, error) {
	p := ix.protocol(t.svc, t.port)
	sans := ix.allowedSANs(t.svc)
	all := append([]subset{{}}, ix.subsets(t.svc)...)
	out := make([]builtCluster, 0, len(all))
	for _, s := range all {
		name := ClusterName(t.port, s.name, t.svc.Name)
		var secure []string // nil: plaintext, every endpoint's workload has mTLS DISABLEd (security.go)
		if !ix.plaintextTo(t.svc, s.labels, t.port) {
			secure = sans
		}
		cl, err := newCluster(name, p, secure, ix.clusterPolicy(t.svc, s.name, t.port))
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		cla, err := ix.endpoints(name, t, s)
		if err != nil {
			return nil, err
		}
		out = append(out, builtCluster{cluster: cl, cla: cla})
	}
	return out, nil
}

// newCluster is an outbound EDS cluster speaking p, secured for sans
// (plaintext when sans is nil), with the DestinationRule policy in force
// for it: load balancing, connection pool (circuit breakers, connect
// timeout, HTTP connection options, h2 upgrade), outlier detection and the
// retry budget.
func newCluster(name string, p model.Protocol, sans []string, pol policy) (*clusterv3.Cluster, error) {
	p = upstreamProtocol(p, pol.ConnectionPool)
	var ts *corev3.TransportSocket
	if sans != nil {
		var err error
		if ts, err = upstreamTLS(p, sans); err != nil {
			return nil, err
		}
	}
	opts, err := protocolOptions(p, pol.ConnectionPool)
	if err != nil {
		return nil, err
	}
	timeout, err := clusterConnectTimeout(pol.ConnectionPool)
	if err != nil {
		return nil, err
	}
	md, err := retryBudgetMetadata(pol.RetryBudget)
	if err != nil {
		return nil, err
	}
	cl := &clusterv3.Cluster{
		Name:                          name,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:              &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		ConnectTimeout:                timeout,
		TransportSocket:               ts,
		TypedExtensionProtocolOptions: opts,
		CircuitBreakers:               circuitBreakers(pol.ConnectionPool),
		Metadata:                      md,
	}
	applyLoadBalancer(cl, pol.LoadBalancer)
	if err := applyOutlierDetection(cl, pol.OutlierDetection); err != nil {
		return nil, err
	}
	if cl.CommonLbConfig == nil {
		// Envoy's default panic threshold (50%) would send traffic to endpoints
		// the control plane marked UNHEALTHY once half of them are; Trellis
		// never does (Istio sets 0 as well, through outlier detection's
		// minHealthPercent default).
		cl.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 0}}
	}
	return cl, nil
}

// endpoints lists the inbound addresses of the service's workloads that
// serve the port and carry the subset's labels, healthy or not, in
// workload name order. A workload is healthy only when its Status says so.
func (ix *Index) endpoints(name string, t target, s subset) (*endpointv3.ClusterLoadAssignment, error) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	var lbs []*endpointv3.LbEndpoint
	for _, w := range ix.byService[t.svc] {
		if !hasLabels(w.Spec.Labels, s.labels) {
			continue
		}
		for _, p := range w.Spec.Ports {
			if p.Port != t.port {
				continue
			}
			addr, err := socketAddress(p.Inbound)
			if err != nil {
				return nil, err
			}
			health := corev3.HealthStatus_UNHEALTHY
			if w.Status != nil && w.Status.Healthy {
				health = corev3.HealthStatus_HEALTHY
			}
			md, err := endpointMetadata(w.Name, ix.identity(w))
			if err != nil {
				return nil, err
			}
			lbs = append(lbs, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr}},
				HealthStatus:   health,
				Metadata:       &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"trellis": md}},
			})
			break
		}
	}
	if len(lbs) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
	return cla, nil
}

// endpointMetadata is an endpoint's "trellis" metadata: its workload and
// identity. Built directly rather than with structpb.NewStruct, which goes
// through a map[string]any: one endpoint per workload per rebuild.
func endpointMetadata(workload, identity string) (*structpb.Struct, error) {
	for _, s := range []string{workload, identity} {
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("endpoint metadata: invalid UTF-8 in %q", s)
		}
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"workload": structpb.NewStringValue(workload),
		"identity": structpb.NewStringValue(identity),
	}}, nil
}

// hasLabels reports whether labels contains every key/value of selector.
func hasLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
