package proxy

import (
	"fmt"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/breaker"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/outlier"
	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

var typeHTTPProtocolOptions = typeURL(&httpv3.HttpProtocolOptions{})

// defaultConnectTimeout is Envoy's default connect_timeout.
const defaultConnectTimeout = 5 * time.Second

// translateCluster translates a Cluster. EDS clusters take their endpoints
// from eds (the Set's ClusterLoadAssignment of the same name, or of
// eds_cluster_config.service_name); a missing assignment means no endpoints.
func translateCluster(c *clusterv3.Cluster, eds map[string]*endpointv3.ClusterLoadAssignment) (*cluster, error) {
	out := &cluster{name: c.GetName(), connectTimeout: defaultConnectTimeout}
	if d := c.GetConnectTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
			return nil, fmt.Errorf("connect_timeout: invalid duration")
		}
		out.connectTimeout = d.AsDuration()
	}
	pol, err := translateClusterPolicy(c)
	if err != nil {
		return nil, err
	}
	out.policy = pol
	if len(c.GetHealthChecks()) > 0 {
		return nil, fmt.Errorf("health_checks: not supported")
	}
	if len(c.GetTransportSocketMatches()) > 0 || len(c.GetFilters()) > 0 {
		return nil, fmt.Errorf("transport_socket_matches/filters: not supported")
	}
	h2, pool, err := clusterProtocol(c)
	if err != nil {
		return nil, err
	}
	out.http2, out.pool = h2, pool
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

// translateClusterPolicy reads the load balancer, circuit breakers, outlier
// detection and the retry budget (cluster metadata) of a Cluster.
func translateClusterPolicy(c *clusterv3.Cluster) (clusterPolicy, error) {
	var pol clusterPolicy
	var err error
	if pol.lb, err = lb.Translate(c); err != nil {
		return pol, err
	}
	if pol.limits, err = breaker.Translate(c.GetCircuitBreakers()); err != nil {
		return pol, fmt.Errorf("circuit_breakers.%w", err)
	}
	if pol.outlier, err = outlier.Translate(c.GetOutlierDetection()); err != nil {
		return pol, fmt.Errorf("outlier_detection.%w", err)
	}
	if pol.budget, err = retry.TranslateBudget(c.GetMetadata()); err != nil {
		return pol, err
	}
	return pol, nil
}

// clusterProtocol reports whether the cluster speaks HTTP/2 to its
// endpoints, and reads the connection pool options of
// common_http_protocol_options (the typed HttpProtocolOptions, or the
// deprecated Cluster fields it replaces).
func clusterProtocol(c *clusterv3.Cluster) (bool, poolOptions, error) {
	var pool poolOptions
	//nolint:staticcheck // deprecated fields still accepted.
	h2 := c.GetHttp2ProtocolOptions() != nil
	//nolint:staticcheck // deprecated fields still accepted.
	if err := pool.apply(c.GetCommonHttpProtocolOptions()); err != nil {
		return false, pool, fmt.Errorf("common_http_protocol_options.%w", err)
	}
	//nolint:staticcheck // deprecated fields still accepted.
	if v := c.GetMaxRequestsPerConnection(); v != nil {
		pool.maxRequestsPerConn = v.GetValue()
	}
	for key, a := range c.GetTypedExtensionProtocolOptions() {
		if key != httpProtocolOptionsKey {
			return false, pool, fmt.Errorf("typed_extension_protocol_options[%q]: not supported", key)
		}
		var o httpv3.HttpProtocolOptions
		if err := unpackAny(a, typeHTTPProtocolOptions, &o); err != nil {
			return false, pool, fmt.Errorf("typed_extension_protocol_options[%q].%w", key, err)
		}
		ex, ok := o.GetUpstreamProtocolOptions().(*httpv3.HttpProtocolOptions_ExplicitHttpConfig_)
		if !ok {
			return false, pool, fmt.Errorf("typed_extension_protocol_options[%q].upstream_protocol_options: %T not supported, want explicit_http_config", key, o.GetUpstreamProtocolOptions())
		}
		switch ex.ExplicitHttpConfig.GetProtocolConfig().(type) {
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions:
			h2 = true
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions:
			h2 = false
		default:
			return false, pool, fmt.Errorf("typed_extension_protocol_options[%q].explicit_http_config: only http_protocol_options or http2_protocol_options supported", key)
		}
		if err := pool.apply(o.GetCommonHttpProtocolOptions()); err != nil {
			return false, pool, fmt.Errorf("typed_extension_protocol_options[%q].common_http_protocol_options.%w", key, err)
		}
		if o.GetUpstreamHttpProtocolOptions() != nil || len(o.GetHttpFilters()) > 0 || o.GetHeaderValidationConfig() != nil ||
			o.GetOutlierDetection() != nil || len(o.GetRequestMirrorPolicies()) > 0 || len(o.GetHashPolicy()) > 0 || o.GetRetryPolicy() != nil {
			return false, pool, fmt.Errorf("typed_extension_protocol_options[%q]: only upstream_protocol_options and common_http_protocol_options supported", key)
		}
	}
	return h2, pool, nil
}

// apply reads common_http_protocol_options into the pool options.
func (p *poolOptions) apply(o *corev3.HttpProtocolOptions) error {
	if o == nil {
		return nil
	}
	if o.GetMaxHeadersCount() != nil || o.GetMaxResponseHeadersKb() != nil || o.GetMaxStreamDuration() != nil ||
		o.GetHeadersWithUnderscoresAction() != corev3.HttpProtocolOptions_ALLOW || o.GetMaxConnectionDurationJitter() != nil {
		return fmt.Errorf("max_headers_count/max_response_headers_kb/max_stream_duration/headers_with_underscores_action/max_connection_duration_jitter: not supported")
	}
	if d := o.GetIdleTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return fmt.Errorf("idle_timeout: invalid duration")
		}
		p.idleTimeout, p.idleTimeoutSet = d.AsDuration(), true
	}
	if d := o.GetMaxConnectionDuration(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return fmt.Errorf("max_connection_duration: invalid duration")
		}
		p.maxConnDuration = d.AsDuration()
	}
	if v := o.GetMaxRequestsPerConnection(); v != nil {
		p.maxRequestsPerConn = v.GetValue()
	}
	return nil
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

// fingerprint identifies the settings an upstream transport and its
// connection pool depend on; endpoints are not part of it (they are chosen
// per request).
func (c *cluster) fingerprint() string {
	var b strings.Builder
	fmt.Fprintf(&b, "h2=%t ct=%s pool=%+v maxconn=%d maxpending=%d", c.http2, c.connectTimeout, c.pool,
		c.policy.limits.MaxConnections, c.policy.limits.MaxPendingRequests)
	if c.tls != nil {
		fmt.Fprintf(&b, " tls alpn=%v allowed=%v", c.tls.alpn, c.tls.allowed)
	}
	return b.String()
}
