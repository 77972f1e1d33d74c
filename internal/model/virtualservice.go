package model

// VirtualService (networking.istio.io v1alpha3, v1beta1, v1) routes requests
// addressed to its hosts. Field names follow Istio's schema exactly so that
// examples from Istio's documentation decode unchanged; Validate says which
// fields the compiler does not act on yet.
type VirtualService struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       VirtualServiceSpec `json:"spec"`
}

// Key implements Object.
func (v *VirtualService) Key() Key {
	return Key{Kind: KindVirtualService, Namespace: v.NamespaceOrDefault(), Name: v.Name}
}

// Duration is an Istio duration as written in YAML ("1.5s", "100ms", "3m").
type Duration string

// VirtualServiceSpec is istio.networking.v1alpha3.VirtualService.
type VirtualServiceSpec struct {
	Hosts    []string    `json:"hosts,omitempty"`
	Gateways []string    `json:"gateways,omitempty"`
	HTTP     []HTTPRoute `json:"http,omitempty"`
	TLS      []TLSRoute  `json:"tls,omitempty"`
	TCP      []TCPRoute  `json:"tcp,omitempty"`
	ExportTo []string    `json:"exportTo,omitempty"`
}

// HTTPRoute is one ordered rule for HTTP traffic.
type HTTPRoute struct {
	Name             string                 `json:"name,omitempty"`
	Match            []HTTPMatchRequest     `json:"match,omitempty"`
	Route            []HTTPRouteDestination `json:"route,omitempty"`
	Redirect         *HTTPRedirect          `json:"redirect,omitempty"`
	DirectResponse   *HTTPDirectResponse    `json:"directResponse,omitempty"`
	Delegate         *Delegate              `json:"delegate,omitempty"`
	Rewrite          *HTTPRewrite           `json:"rewrite,omitempty"`
	Timeout          Duration               `json:"timeout,omitempty"`
	Retries          *HTTPRetry             `json:"retries,omitempty"`
	Fault            *HTTPFaultInjection    `json:"fault,omitempty"`
	Mirror           *Destination           `json:"mirror,omitempty"`
	Mirrors          []HTTPMirrorPolicy     `json:"mirrors,omitempty"`
	MirrorPercent    *uint32                `json:"mirrorPercent,omitempty"` // deprecated in Istio
	MirrorPercentage *Percent               `json:"mirrorPercentage,omitempty"`
	CorsPolicy       *CorsPolicy            `json:"corsPolicy,omitempty"`
	Headers          *Headers               `json:"headers,omitempty"`
}

// StringMatch matches a string exactly, by prefix or by RE2 regex; exactly one is set.
type StringMatch struct {
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Regex  string `json:"regex,omitempty"`
}

// HTTPMatchRequest is one alternative of a rule's match list; its fields are ANDed.
type HTTPMatchRequest struct {
	Name            string                 `json:"name,omitempty"`
	URI             *StringMatch           `json:"uri,omitempty"`
	Scheme          *StringMatch           `json:"scheme,omitempty"`
	Method          *StringMatch           `json:"method,omitempty"`
	Authority       *StringMatch           `json:"authority,omitempty"`
	Headers         map[string]StringMatch `json:"headers,omitempty"`
	Port            uint32                 `json:"port,omitempty"`
	SourceLabels    map[string]string      `json:"sourceLabels,omitempty"`
	Gateways        []string               `json:"gateways,omitempty"`
	QueryParams     map[string]StringMatch `json:"queryParams,omitempty"`
	IgnoreURICase   bool                   `json:"ignoreUriCase,omitempty"`
	WithoutHeaders  map[string]StringMatch `json:"withoutHeaders,omitempty"`
	SourceNamespace string                 `json:"sourceNamespace,omitempty"`
	StatPrefix      string                 `json:"statPrefix,omitempty"`
}

// PortSelector selects a service port by number.
type PortSelector struct {
	Number uint32 `json:"number,omitempty"`
}

// Destination is a service (and optionally a subset and port) traffic goes to.
type Destination struct {
	Host   string        `json:"host"`
	Subset string        `json:"subset,omitempty"`
	Port   *PortSelector `json:"port,omitempty"`
}

// HTTPRouteDestination is one weighted destination of an HTTP rule.
type HTTPRouteDestination struct {
	Destination Destination `json:"destination"`
	Weight      int32       `json:"weight,omitempty"`
	Headers     *Headers    `json:"headers,omitempty"`
}

// RouteDestination is one weighted destination of a TCP or TLS rule.
type RouteDestination struct {
	Destination Destination `json:"destination"`
	Weight      int32       `json:"weight,omitempty"`
}

// Headers manipulates request and response headers.
type Headers struct {
	Request  *HeaderOperations `json:"request,omitempty"`
	Response *HeaderOperations `json:"response,omitempty"`
}

// HeaderOperations sets, adds and removes headers.
type HeaderOperations struct {
	Set    map[string]string `json:"set,omitempty"`
	Add    map[string]string `json:"add,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// HTTPRedirect answers with a redirect instead of forwarding.
type HTTPRedirect struct {
	URI          string `json:"uri,omitempty"`
	Authority    string `json:"authority,omitempty"`
	Port         uint32 `json:"port,omitempty"`
	DerivePort   string `json:"derivePort,omitempty"` // FROM_PROTOCOL_DEFAULT | FROM_REQUEST_PORT
	Scheme       string `json:"scheme,omitempty"`
	RedirectCode uint32 `json:"redirectCode,omitempty"`
}

// HTTPDirectResponse answers with a fixed status and body.
type HTTPDirectResponse struct {
	Status uint32    `json:"status"`
	Body   *HTTPBody `json:"body,omitempty"`
}

// HTTPBody is a direct response body, as a string or base64 bytes.
type HTTPBody struct {
	String string `json:"string,omitempty"`
	Bytes  string `json:"bytes,omitempty"`
}

// Delegate names another VirtualService that holds the rule's routes.
type Delegate struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// HTTPRewrite rewrites the path or authority before forwarding.
type HTTPRewrite struct {
	URI             string        `json:"uri,omitempty"`
	Authority       string        `json:"authority,omitempty"`
	URIRegexRewrite *RegexRewrite `json:"uriRegexRewrite,omitempty"`
}

// RegexRewrite rewrites the path with an RE2 regex.
type RegexRewrite struct {
	Match   string `json:"match,omitempty"`
	Rewrite string `json:"rewrite,omitempty"`
}

// HTTPRetry is the retry policy of a rule.
type HTTPRetry struct {
	Attempts                 int32    `json:"attempts,omitempty"`
	PerTryTimeout            Duration `json:"perTryTimeout,omitempty"`
	RetryOn                  string   `json:"retryOn,omitempty"`
	RetryRemoteLocalities    *bool    `json:"retryRemoteLocalities,omitempty"`
	RetryIgnorePreviousHosts *bool    `json:"retryIgnorePreviousHosts,omitempty"`
	Backoff                  Duration `json:"backoff,omitempty"`
}

// Percent is a percentage 0..100 with fractions.
type Percent struct {
	Value float64 `json:"value,omitempty"`
}

// HTTPFaultInjection delays or aborts requests.
type HTTPFaultInjection struct {
	Delay *FaultDelay `json:"delay,omitempty"`
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay delays a percentage of requests.
type FaultDelay struct {
	FixedDelay       Duration `json:"fixedDelay,omitempty"`
	ExponentialDelay Duration `json:"exponentialDelay,omitempty"`
	Percentage       *Percent `json:"percentage,omitempty"`
	Percent          int32    `json:"percent,omitempty"` // deprecated in Istio
}

// FaultAbort aborts a percentage of requests.
type FaultAbort struct {
	HTTPStatus int32    `json:"httpStatus,omitempty"`
	GRPCStatus string   `json:"grpcStatus,omitempty"`
	HTTP2Error string   `json:"http2Error,omitempty"`
	Percentage *Percent `json:"percentage,omitempty"`
}

// HTTPMirrorPolicy mirrors a percentage of requests to a destination.
type HTTPMirrorPolicy struct {
	Destination Destination `json:"destination"`
	Percentage  *Percent    `json:"percentage,omitempty"`
}

// CorsPolicy is the CORS policy of a rule.
type CorsPolicy struct {
	AllowOrigin         []string      `json:"allowOrigin,omitempty"` // deprecated in Istio
	AllowOrigins        []StringMatch `json:"allowOrigins,omitempty"`
	AllowMethods        []string      `json:"allowMethods,omitempty"`
	AllowHeaders        []string      `json:"allowHeaders,omitempty"`
	ExposeHeaders       []string      `json:"exposeHeaders,omitempty"`
	MaxAge              Duration      `json:"maxAge,omitempty"`
	AllowCredentials    *bool         `json:"allowCredentials,omitempty"`
	UnmatchedPreflights string        `json:"unmatchedPreflights,omitempty"`
}

// TLSRoute routes non-terminated TLS traffic by SNI.
type TLSRoute struct {
	Match []TLSMatchAttributes `json:"match"`
	Route []RouteDestination   `json:"route,omitempty"`
}

// TLSMatchAttributes matches TLS connections.
type TLSMatchAttributes struct {
	SNIHosts           []string          `json:"sniHosts"`
	DestinationSubnets []string          `json:"destinationSubnets,omitempty"`
	Port               uint32            `json:"port,omitempty"`
	SourceLabels       map[string]string `json:"sourceLabels,omitempty"`
	Gateways           []string          `json:"gateways,omitempty"`
	SourceNamespace    string            `json:"sourceNamespace,omitempty"`
}

// TCPRoute routes opaque TCP traffic.
type TCPRoute struct {
	Match []L4MatchAttributes `json:"match,omitempty"`
	Route []RouteDestination  `json:"route,omitempty"`
}

// L4MatchAttributes matches TCP connections.
type L4MatchAttributes struct {
	DestinationSubnets []string          `json:"destinationSubnets,omitempty"`
	Port               uint32            `json:"port,omitempty"`
	SourceSubnet       string            `json:"sourceSubnet,omitempty"`
	SourceLabels       map[string]string `json:"sourceLabels,omitempty"`
	Gateways           []string          `json:"gateways,omitempty"`
	SourceNamespace    string            `json:"sourceNamespace,omitempty"`
}
