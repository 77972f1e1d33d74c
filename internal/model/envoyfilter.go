package model

// EnvoyFilter (networking.istio.io v1alpha3) patches the Envoy configuration
// Istio generates. Trellis accepts two forms of it, alone or together:
// the local rate limit of Istio's documentation, an HTTP_FILTER patch
// inserting envoy.filters.http.local_ratelimit into the SIDECAR_INBOUND
// connection manager, its token bucket either in that filter's config
// (every inbound HTTP port) or in HTTP_ROUTE / VIRTUAL_HOST MERGE patches of
// typed_per_filter_config (the ports their vhost names); and request
// buffering, an HTTP_FILTER patch inserting envoy.filters.http.buffer
// (max_request_bytes), overridden or disabled per port by a BufferPerRoute
// in the same kind of route patch. It is converted into rate limits and
// request buffers on the workloads its selector picks
// (convert_envoyfilter*.go); any other EnvoyFilter is rejected.
type EnvoyFilter struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       EnvoyFilterSpec `json:"spec"`
}

// Key implements Object.
func (e *EnvoyFilter) Key() Key {
	return Key{Kind: KindEnvoyFilter, Namespace: e.NamespaceOrDefault(), Name: e.Name}
}

// EnvoyFilterSpec is istio.networking.v1alpha3.EnvoyFilter.
type EnvoyFilterSpec struct {
	WorkloadSelector *EnvoyFilterWorkloadSelector `json:"workloadSelector,omitempty"`
	TargetRefs       []PolicyTargetReference      `json:"targetRefs,omitempty"`
	ConfigPatches    []EnvoyConfigObjectPatch     `json:"configPatches,omitempty"`
	Priority         int32                        `json:"priority,omitempty"`
}

// EnvoyFilterWorkloadSelector selects workloads by labels; an empty selector
// selects every workload of the EnvoyFilter's namespace.
type EnvoyFilterWorkloadSelector struct {
	Labels map[string]string `json:"labels,omitempty"`
}

// PolicyTargetReference names the resource a policy attaches to.
type PolicyTargetReference struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// EnvoyConfigObjectPatch is one patch: what it applies to, where, and how.
type EnvoyConfigObjectPatch struct {
	ApplyTo string                  `json:"applyTo,omitempty"`
	Match   *EnvoyConfigObjectMatch `json:"match,omitempty"`
	Patch   *EnvoyFilterPatch       `json:"patch,omitempty"`
}

// EnvoyConfigObjectMatch selects the generated objects a patch applies to.
type EnvoyConfigObjectMatch struct {
	Context            string                   `json:"context,omitempty"`
	Proxy              *EnvoyFilterProxyMatch   `json:"proxy,omitempty"`
	Listener           *EnvoyFilterListener     `json:"listener,omitempty"`
	RouteConfiguration *EnvoyFilterRouteConfig  `json:"routeConfiguration,omitempty"`
	Cluster            *EnvoyFilterClusterMatch `json:"cluster,omitempty"`
}

// EnvoyFilterProxyMatch matches proxies by version and metadata.
type EnvoyFilterProxyMatch struct {
	ProxyVersion string            `json:"proxyVersion,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

// EnvoyFilterListener matches listeners.
type EnvoyFilterListener struct {
	PortNumber     uint32                  `json:"portNumber,omitempty"`
	PortName       string                  `json:"portName,omitempty"`
	FilterChain    *EnvoyFilterFilterChain `json:"filterChain,omitempty"`
	ListenerFilter string                  `json:"listenerFilter,omitempty"`
	Name           string                  `json:"name,omitempty"`
}

// EnvoyFilterFilterChain matches a listener's filter chains.
type EnvoyFilterFilterChain struct {
	Name                 string             `json:"name,omitempty"`
	SNI                  string             `json:"sni,omitempty"`
	TransportProtocol    string             `json:"transportProtocol,omitempty"`
	ApplicationProtocols string             `json:"applicationProtocols,omitempty"`
	Filter               *EnvoyFilterFilter `json:"filter,omitempty"`
	DestinationPort      uint32             `json:"destinationPort,omitempty"`
}

// EnvoyFilterFilter matches a network filter, and optionally one of its HTTP filters.
type EnvoyFilterFilter struct {
	Name      string                `json:"name,omitempty"`
	SubFilter *EnvoyFilterSubFilter `json:"subFilter,omitempty"`
}

// EnvoyFilterSubFilter matches an HTTP filter.
type EnvoyFilterSubFilter struct {
	Name string `json:"name,omitempty"`
}

// EnvoyFilterRouteConfig matches route configurations, virtual hosts and routes.
type EnvoyFilterRouteConfig struct {
	PortNumber uint32            `json:"portNumber,omitempty"`
	PortName   string            `json:"portName,omitempty"`
	Gateway    string            `json:"gateway,omitempty"`
	Vhost      *EnvoyFilterVhost `json:"vhost,omitempty"`
	Name       string            `json:"name,omitempty"`
}

// EnvoyFilterVhost matches a virtual host.
type EnvoyFilterVhost struct {
	Name       string            `json:"name,omitempty"`
	DomainName string            `json:"domainName,omitempty"`
	Route      *EnvoyFilterRoute `json:"route,omitempty"`
}

// EnvoyFilterRoute matches routes of a virtual host.
type EnvoyFilterRoute struct {
	Name   string `json:"name,omitempty"`
	Action string `json:"action,omitempty"` // ANY | ROUTE | REDIRECT | DIRECT_RESPONSE
}

// EnvoyFilterClusterMatch matches clusters.
type EnvoyFilterClusterMatch struct {
	PortNumber uint32 `json:"portNumber,omitempty"`
	Service    string `json:"service,omitempty"`
	Subset     string `json:"subset,omitempty"`
	Name       string `json:"name,omitempty"`
}

// EnvoyFilterPatch is the operation and the Envoy config it applies. Value
// is Envoy configuration in its JSON form, checked by the converter.
type EnvoyFilterPatch struct {
	Operation   string         `json:"operation,omitempty"`
	Value       map[string]any `json:"value,omitempty"`
	FilterClass string         `json:"filterClass,omitempty"`
}
