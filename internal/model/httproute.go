package model

// GatewayHTTPRoute is a Gateway API HTTPRoute (gateway.networking.k8s.io
// v1, v1beta1, v1alpha2). Trellis accepts routes attached to Services, as
// the GAMMA initiative defines them for meshes (parentRefs of group "" and
// kind Service): they route the requests addressed to that service. Routes
// attached to a Gateway are rejected: Trellis has no ingress gateway yet.
// All the routes of one service are merged into one VirtualService whose
// rules are ordered by Gateway API precedence (convert_httproute.go).
// The Go names carry "Gateway" so as not to clash with the Istio HTTPRoute
// rule of a VirtualService.
type GatewayHTTPRoute struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       GatewayHTTPRouteSpec `json:"spec"`
}

// Key implements Object.
func (r *GatewayHTTPRoute) Key() Key {
	return Key{Kind: KindGatewayHTTPRoute, Namespace: r.NamespaceOrDefault(), Name: r.Name}
}

// GatewayHTTPRouteSpec is the HTTPRoute spec.
type GatewayHTTPRouteSpec struct {
	ParentRefs []GatewayParentRef     `json:"parentRefs,omitempty"`
	Hostnames  []string               `json:"hostnames,omitempty"`
	Rules      []GatewayHTTPRouteRule `json:"rules,omitempty"`
}

// GatewayParentRef is what a route attaches to. Group defaults to
// gateway.networking.k8s.io and Kind to Gateway: a Service is group "".
type GatewayParentRef struct {
	Group       *string `json:"group,omitempty"`
	Kind        *string `json:"kind,omitempty"`
	Namespace   string  `json:"namespace,omitempty"`
	Name        string  `json:"name"`
	SectionName string  `json:"sectionName,omitempty"`
	Port        uint32  `json:"port,omitempty"`
}

// GatewayHTTPRouteRule matches requests, filters them and forwards them.
type GatewayHTTPRouteRule struct {
	Name               string                    `json:"name,omitempty"`
	Matches            []GatewayHTTPRouteMatch   `json:"matches,omitempty"`
	Filters            []GatewayHTTPRouteFilter  `json:"filters,omitempty"`
	BackendRefs        []GatewayHTTPBackendRef   `json:"backendRefs,omitempty"`
	Timeouts           *GatewayHTTPRouteTimeouts `json:"timeouts,omitempty"`
	Retry              *GatewayHTTPRouteRetry    `json:"retry,omitempty"`
	SessionPersistence map[string]any            `json:"sessionPersistence,omitempty"`
}

// GatewayHTTPRouteMatch is one alternative of a rule; its fields are ANDed.
// A match without a path matches the path prefix "/".
type GatewayHTTPRouteMatch struct {
	Path        *GatewayHTTPPathMatch    `json:"path,omitempty"`
	Headers     []GatewayHTTPHeaderMatch `json:"headers,omitempty"`
	QueryParams []GatewayHTTPHeaderMatch `json:"queryParams,omitempty"`
	Method      string                   `json:"method,omitempty"`
}

// GatewayHTTPPathMatch matches the path: Exact, PathPrefix (element-wise:
// "/abc" matches "/abc" and "/abc/def", not "/abcd"; the default) or
// RegularExpression (RE2, whole path). Value defaults to "/".
type GatewayHTTPPathMatch struct {
	Type  string  `json:"type,omitempty"`
	Value *string `json:"value,omitempty"`
}

// GatewayHTTPHeaderMatch matches a header or query parameter: Exact (the
// default) or RegularExpression.
type GatewayHTTPHeaderMatch struct {
	Type  string `json:"type,omitempty"`
	Name  string `json:"name"`
	Value string `json:"value"`
}

// GatewayHTTPRouteFilter is one processing step; Type says which field is set.
type GatewayHTTPRouteFilter struct {
	Type                   string                       `json:"type"`
	RequestHeaderModifier  *GatewayHTTPHeaderFilter     `json:"requestHeaderModifier,omitempty"`
	ResponseHeaderModifier *GatewayHTTPHeaderFilter     `json:"responseHeaderModifier,omitempty"`
	RequestMirror          *GatewayHTTPRequestMirror    `json:"requestMirror,omitempty"`
	RequestRedirect        *GatewayHTTPRequestRedirect  `json:"requestRedirect,omitempty"`
	URLRewrite             *GatewayHTTPURLRewrite       `json:"urlRewrite,omitempty"`
	ExtensionRef           *GatewayLocalObjectReference `json:"extensionRef,omitempty"`
	CORS                   map[string]any               `json:"cors,omitempty"`
}

// GatewayHTTPHeaderFilter sets, adds and removes headers.
type GatewayHTTPHeaderFilter struct {
	Set    []GatewayHTTPHeader `json:"set,omitempty"`
	Add    []GatewayHTTPHeader `json:"add,omitempty"`
	Remove []string            `json:"remove,omitempty"`
}

// GatewayHTTPHeader is a header name and value.
type GatewayHTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// GatewayHTTPRequestMirror copies requests to a backend, for a percent or
// fraction of them (all when neither is set).
type GatewayHTTPRequestMirror struct {
	BackendRef GatewayBackendObjectRef `json:"backendRef"`
	Percent    *int32                  `json:"percent,omitempty"`
	Fraction   *GatewayFraction        `json:"fraction,omitempty"`
}

// GatewayFraction is numerator/denominator (default 100).
type GatewayFraction struct {
	Numerator   int32  `json:"numerator"`
	Denominator *int32 `json:"denominator,omitempty"`
}

// GatewayHTTPRequestRedirect answers with a redirect (302 by default).
type GatewayHTTPRequestRedirect struct {
	Scheme     *string                  `json:"scheme,omitempty"`
	Hostname   *string                  `json:"hostname,omitempty"`
	Path       *GatewayHTTPPathModifier `json:"path,omitempty"`
	Port       *uint32                  `json:"port,omitempty"`
	StatusCode *int32                   `json:"statusCode,omitempty"`
}

// GatewayHTTPURLRewrite rewrites the host and path before forwarding.
type GatewayHTTPURLRewrite struct {
	Hostname *string                  `json:"hostname,omitempty"`
	Path     *GatewayHTTPPathModifier `json:"path,omitempty"`
}

// GatewayHTTPPathModifier replaces the whole path or the matched prefix.
type GatewayHTTPPathModifier struct {
	Type               string  `json:"type"`
	ReplaceFullPath    *string `json:"replaceFullPath,omitempty"`
	ReplacePrefixMatch *string `json:"replacePrefixMatch,omitempty"`
}

// GatewayLocalObjectReference names an object of the route's namespace.
type GatewayLocalObjectReference struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
}

// GatewayBackendObjectRef names a backend; Kind defaults to Service (group "").
type GatewayBackendObjectRef struct {
	Group     *string `json:"group,omitempty"`
	Kind      *string `json:"kind,omitempty"`
	Name      string  `json:"name"`
	Namespace string  `json:"namespace,omitempty"`
	Port      *uint32 `json:"port,omitempty"`
}

// GatewayHTTPBackendRef is a weighted backend (weight defaults to 1).
type GatewayHTTPBackendRef struct {
	GatewayBackendObjectRef `json:",inline"`
	Weight                  *int32                   `json:"weight,omitempty"`
	Filters                 []GatewayHTTPRouteFilter `json:"filters,omitempty"`
}

// GatewayHTTPRouteTimeouts are the request and per-backend-request timeouts
// (Gateway API durations: "10s", "1h30m", "500ms"; "0s" disables).
type GatewayHTTPRouteTimeouts struct {
	Request        *Duration `json:"request,omitempty"`
	BackendRequest *Duration `json:"backendRequest,omitempty"`
}

// GatewayHTTPRouteRetry retries a request on the listed status codes.
type GatewayHTTPRouteRetry struct {
	Codes    []int32   `json:"codes,omitempty"`
	Attempts *int32    `json:"attempts,omitempty"`
	Backoff  *Duration `json:"backoff,omitempty"`
}
