package proxy

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

var typeHTTPProtocolOptions = typeURL(&httpv3.HttpProtocolOptions{})

// defaultConnectTimeout is Envoy's default connect_timeout.
const defaultConnectTimeout = 5 * time.Second

// translateCluster translates a Cluster. EDS clusters take their endpoints
// from eds (the Set's ClusterLoadAssignment of the same name, or of
// eds_cluster_config.service_name); a missing assignment means no endpoints.
func translateCluster(c *clusterv3.Cluster, eds map[string]*endpointv3.ClusterLoadAssignment) (*cluster, error) {
	out := &cluster{name: c.GetName(), connectTimeout: defaultConnectTimeout, next: new(atomic.Uint64)}
	if d := c.GetConnectTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
			return nil, fmt.Errorf("connect_timeout: invalid duration")
		}
		out.connectTimeout = d.AsDuration()
	}
	if c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		return nil, fmt.Errorf("lb_policy: %s not supported, want ROUND_ROBIN", c.GetLbPolicy())
	}
	if c.GetLoadBalancingPolicy() != nil || c.GetLbSubsetConfig() != nil || c.GetRingHashLbConfig() != nil ||
		c.GetMaglevLbConfig() != nil || c.GetLeastRequestLbConfig() != nil {
		return nil, fmt.Errorf("load_balancing_policy/lb_subset_config/lb_config: not supported")
	}
	if len(c.GetHealthChecks()) > 0 || c.GetOutlierDetection() != nil || c.GetCircuitBreakers() != nil {
		return nil, fmt.Errorf("health_checks/outlier_detection/circuit_breakers: not supported")
	}
	if len(c.GetTransportSocketMatches()) > 0 || len(c.GetFilters()) > 0 {
		return nil, fmt.Errorf("transport_socket_matches/filters: not supported")
	}
	h2, err := clusterHTTP2(c)
	if err != nil {
		return nil, err
	}
	out.http2 = h2
	if ts := c.GetTransportSocket(); ts != nil {
		ut, err := translateUpstreamTLS(ts, h2)
		if err != nil {
			return nil, err
		}
		out.tls = ut
	}
	var cla *endpointv3.ClusterLoadAssignment
	switch t := c.GetClusterDiscoveryType().(type) {
	case *clusterv3.Cluster_Type:
		switch t.Type {
		case clusterv3.Cluster_STATIC:
			cla = c.GetLoadAssignment()
			if err := validateCLA(cla); err != nil {
				return nil, fmt.Errorf("load_assignment.%w", err)
			}
		case clusterv3.Cluster_EDS:
			name := c.GetName()
			if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
				name = sn
			}
			cla = eds[name] // validated with the Set's endpoints
		default:
			return nil, fmt.Errorf("type: %s not supported, want STATIC or EDS", t.Type)
		}
	default:
		return nil, fmt.Errorf("cluster_type: custom cluster types not supported")
	}
	out.endpoints = healthyEndpoints(cla)
	return out, nil
}

// clusterHTTP2 reports whether the cluster speaks HTTP/2 to its endpoints.
func clusterHTTP2(c *clusterv3.Cluster) (bool, error) {
	//nolint:staticcheck // deprecated field still accepted.
	h2 := c.GetHttp2ProtocolOptions() != nil
	for key, a := range c.GetTypedExtensionProtocolOptions() {
		if key != httpProtocolOptionsKey {
			return false, fmt.Errorf("typed_extension_protocol_options[%q]: not supported", key)
		}
		var o httpv3.HttpProtocolOptions
		if err := unpackAny(a, typeHTTPProtocolOptions, &o); err != nil {
			return false, fmt.Errorf("typed_extension_protocol_options[%q].%w", key, err)
		}
		ex, ok := o.GetUpstreamProtocolOptions().(*httpv3.HttpProtocolOptions_ExplicitHttpConfig_)
		if !ok {
			return false, fmt.Errorf("typed_extension_protocol_options[%q].upstream_protocol_options: %T not supported, want explicit_http_config", key, o.GetUpstreamProtocolOptions())
		}
		switch ex.ExplicitHttpConfig.GetProtocolConfig().(type) {
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions:
			h2 = true
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions:
			h2 = false
		default:
			return false, fmt.Errorf("typed_extension_protocol_options[%q].explicit_http_config: only http_protocol_options or http2_protocol_options supported", key)
		}
	}
	return h2, nil
}

// validateCLA checks that every endpoint has a usable socket address.
func validateCLA(cla *endpointv3.ClusterLoadAssignment) error {
	for i, loc := range cla.GetEndpoints() {
		for j, le := range loc.GetLbEndpoints() {
			ep := le.GetEndpoint()
			if ep == nil {
				return fmt.Errorf("endpoints[%d].lb_endpoints[%d].endpoint: missing", i, j)
			}
			if _, err := socketAddress(ep.GetAddress()); err != nil {
				return fmt.Errorf("endpoints[%d].lb_endpoints[%d].endpoint.address.%w", i, j, err)
			}
		}
	}
	return nil
}

// healthyEndpoints lists the addresses of endpoints whose health status is
// HEALTHY or UNKNOWN, in order.
func healthyEndpoints(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, loc := range cla.GetEndpoints() {
		for _, le := range loc.GetLbEndpoints() {
			switch le.GetHealthStatus() {
			case corev3.HealthStatus_HEALTHY, corev3.HealthStatus_UNKNOWN:
			default:
				continue
			}
			addr, err := socketAddress(le.GetEndpoint().GetAddress())
			if err != nil {
				continue // rejected by validateCLA
			}
			out = append(out, addr)
		}
	}
	return out
}

// fingerprint identifies the settings an upstream transport depends on;
// endpoints are not part of it (they are chosen per request).
func (c *cluster) fingerprint() string {
	var b strings.Builder
	fmt.Fprintf(&b, "h2=%t ct=%s", c.http2, c.connectTimeout)
	if c.tls != nil {
		fmt.Fprintf(&b, " tls alpn=%v allowed=%v", c.tls.alpn, c.tls.allowed)
	}
	return b.String()
}
