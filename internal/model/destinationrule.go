package model

// DestinationRule (networking.istio.io v1alpha3, v1beta1, v1) defines the
// subsets of a service and the policies applied to traffic sent to it.
type DestinationRule struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       DestinationRuleSpec `json:"spec"`
}

// Key implements Object.
func (d *DestinationRule) Key() Key {
	return Key{Kind: KindDestinationRule, Namespace: d.NamespaceOrDefault(), Name: d.Name}
}

// DestinationRuleSpec is istio.networking.v1alpha3.DestinationRule.
type DestinationRuleSpec struct {
	Host             string            `json:"host"`
	TrafficPolicy    *TrafficPolicy    `json:"trafficPolicy,omitempty"`
	Subsets          []Subset          `json:"subsets,omitempty"`
	ExportTo         []string          `json:"exportTo,omitempty"`
	WorkloadSelector *WorkloadSelector `json:"workloadSelector,omitempty"`
}

// WorkloadSelector selects the workloads a rule applies to.
type WorkloadSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

// Subset is a named group of a service's endpoints, selected by labels.
type Subset struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels,omitempty"`
	TrafficPolicy *TrafficPolicy    `json:"trafficPolicy,omitempty"`
}

// TrafficPolicy holds the client-side policies for a destination.
type TrafficPolicy struct {
	LoadBalancer      *LoadBalancerSettings   `json:"loadBalancer,omitempty"`
	ConnectionPool    *ConnectionPoolSettings `json:"connectionPool,omitempty"`
	OutlierDetection  *OutlierDetection       `json:"outlierDetection,omitempty"`
	TLS               *ClientTLSSettings      `json:"tls,omitempty"`
	PortLevelSettings []PortTrafficPolicy     `json:"portLevelSettings,omitempty"`
	Tunnel            *TunnelSettings         `json:"tunnel,omitempty"`
	ProxyProtocol     *ProxyProtocol          `json:"proxyProtocol,omitempty"`
	RetryBudget       *RetryBudget            `json:"retryBudget,omitempty"`
}

// RetryBudget caps retries to a share of the requests sent to the
// destination. Istio has it on the TrafficPolicy only (not per port).
// Linkerd's ServiceProfile retryBudget maps onto it: retryRatio × 100 →
// percent, minRetriesPerSecond → minRetryConcurrency, ttl → budgetInterval.
type RetryBudget struct {
	Percent             *float64 `json:"percent,omitempty"`             // 0..100, default 20
	MinRetryConcurrency uint32   `json:"minRetryConcurrency,omitempty"` // default: see the compiler
	BudgetInterval      Duration `json:"budgetInterval,omitempty"`
}

// PortTrafficPolicy is a TrafficPolicy for one port.
type PortTrafficPolicy struct {
	Port             *PortSelector           `json:"port,omitempty"`
	LoadBalancer     *LoadBalancerSettings   `json:"loadBalancer,omitempty"`
	ConnectionPool   *ConnectionPoolSettings `json:"connectionPool,omitempty"`
	OutlierDetection *OutlierDetection       `json:"outlierDetection,omitempty"`
	TLS              *ClientTLSSettings      `json:"tls,omitempty"`
}

// TunnelSettings tunnels TCP over HTTP CONNECT or POST.
type TunnelSettings struct {
	Protocol   string `json:"protocol,omitempty"`
	TargetHost string `json:"targetHost"`
	TargetPort uint32 `json:"targetPort"`
}

// ProxyProtocol sends a PROXY protocol header upstream.
type ProxyProtocol struct {
	Version string `json:"version,omitempty"` // V1 | V2
}

// LoadBalancerSettings picks the load balancing algorithm.
type LoadBalancerSettings struct {
	Simple             string               `json:"simple,omitempty"`
	ConsistentHash     *ConsistentHashLB    `json:"consistentHash,omitempty"`
	LocalityLbSetting  *LocalityLbSetting   `json:"localityLbSetting,omitempty"`
	WarmupDurationSecs Duration             `json:"warmupDurationSecs,omitempty"`
	Warmup             *WarmupConfiguration `json:"warmup,omitempty"`
}

// WarmupConfiguration ramps traffic to new endpoints.
type WarmupConfiguration struct {
	Duration       Duration `json:"duration,omitempty"`
	MinimumPercent *float64 `json:"minimumPercent,omitempty"`
	Aggression     *float64 `json:"aggression,omitempty"`
}

// ConsistentHashLB hashes requests to endpoints.
type ConsistentHashLB struct {
	HTTPHeaderName         string      `json:"httpHeaderName,omitempty"`
	HTTPCookie             *HTTPCookie `json:"httpCookie,omitempty"`
	UseSourceIP            bool        `json:"useSourceIp,omitempty"`
	HTTPQueryParameterName string      `json:"httpQueryParameterName,omitempty"`
	RingHash               *RingHash   `json:"ringHash,omitempty"`
	Maglev                 *MagLev     `json:"maglev,omitempty"`
	MinimumRingSize        uint64      `json:"minimumRingSize,omitempty"`
}

// HTTPCookie is the cookie consistent hashing uses.
type HTTPCookie struct {
	Name       string            `json:"name"`
	Path       string            `json:"path,omitempty"`
	TTL        Duration          `json:"ttl,omitempty"`
	Attributes []CookieAttribute `json:"attributes,omitempty"`
}

// CookieAttribute is one attribute of a generated cookie.
type CookieAttribute struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// RingHash configures the ring hash algorithm.
type RingHash struct {
	MinimumRingSize uint64 `json:"minimumRingSize,omitempty"`
}

// MagLev configures the Maglev algorithm.
type MagLev struct {
	TableSize uint64 `json:"tableSize,omitempty"`
}

// LocalityLbSetting configures locality-weighted load balancing.
type LocalityLbSetting struct {
	Distribute       []LocalityDistribute `json:"distribute,omitempty"`
	Failover         []LocalityFailover   `json:"failover,omitempty"`
	FailoverPriority []string             `json:"failoverPriority,omitempty"`
	Enabled          *bool                `json:"enabled,omitempty"`
}

// LocalityDistribute spreads traffic from one locality to others.
type LocalityDistribute struct {
	From string            `json:"from,omitempty"`
	To   map[string]uint32 `json:"to,omitempty"`
}

// LocalityFailover names where traffic fails over to.
type LocalityFailover struct {
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// ConnectionPoolSettings limits connections and requests (circuit breaking).
type ConnectionPoolSettings struct {
	TCP  *TCPSettings  `json:"tcp,omitempty"`
	HTTP *HTTPSettings `json:"http,omitempty"`
}

// TCPSettings are connection pool settings common to TCP and HTTP.
type TCPSettings struct {
	MaxConnections        int32         `json:"maxConnections,omitempty"`
	ConnectTimeout        Duration      `json:"connectTimeout,omitempty"`
	TCPKeepalive          *TCPKeepalive `json:"tcpKeepalive,omitempty"`
	MaxConnectionDuration Duration      `json:"maxConnectionDuration,omitempty"`
	IdleTimeout           Duration      `json:"idleTimeout,omitempty"`
}

// TCPKeepalive configures TCP keepalive probes.
type TCPKeepalive struct {
	Probes   uint32   `json:"probes,omitempty"`
	Time     Duration `json:"time,omitempty"`
	Interval Duration `json:"interval,omitempty"`
}

// HTTPSettings are HTTP connection pool settings.
type HTTPSettings struct {
	HTTP1MaxPendingRequests  int32    `json:"http1MaxPendingRequests,omitempty"`
	HTTP2MaxRequests         int32    `json:"http2MaxRequests,omitempty"`
	MaxRequestsPerConnection int32    `json:"maxRequestsPerConnection,omitempty"`
	MaxRetries               int32    `json:"maxRetries,omitempty"`
	IdleTimeout              Duration `json:"idleTimeout,omitempty"`
	H2UpgradePolicy          string   `json:"h2UpgradePolicy,omitempty"`
	UseClientProtocol        bool     `json:"useClientProtocol,omitempty"`
	MaxConcurrentStreams     int32    `json:"maxConcurrentStreams,omitempty"`
}

// OutlierDetection ejects failing endpoints.
type OutlierDetection struct {
	SplitExternalLocalOriginErrors bool     `json:"splitExternalLocalOriginErrors,omitempty"`
	ConsecutiveLocalOriginFailures *uint32  `json:"consecutiveLocalOriginFailures,omitempty"`
	ConsecutiveGatewayErrors       *uint32  `json:"consecutiveGatewayErrors,omitempty"`
	Consecutive5xxErrors           *uint32  `json:"consecutive5xxErrors,omitempty"`
	ConsecutiveErrors              int32    `json:"consecutiveErrors,omitempty"` // deprecated in Istio
	Interval                       Duration `json:"interval,omitempty"`
	BaseEjectionTime               Duration `json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent             int32    `json:"maxEjectionPercent,omitempty"`
	MinHealthPercent               int32    `json:"minHealthPercent,omitempty"`
}

// ClientTLSSettings is the TLS mode used towards the destination.
type ClientTLSSettings struct {
	Mode               string   `json:"mode,omitempty"` // DISABLE | SIMPLE | MUTUAL | ISTIO_MUTUAL
	ClientCertificate  string   `json:"clientCertificate,omitempty"`
	PrivateKey         string   `json:"privateKey,omitempty"`
	CACertificates     string   `json:"caCertificates,omitempty"`
	CredentialName     string   `json:"credentialName,omitempty"`
	SubjectAltNames    []string `json:"subjectAltNames,omitempty"`
	SNI                string   `json:"sni,omitempty"`
	InsecureSkipVerify *bool    `json:"insecureSkipVerify,omitempty"`
	CACrl              string   `json:"caCrl,omitempty"`
}
