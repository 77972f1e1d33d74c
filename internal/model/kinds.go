package model

// Kinds Trellis accepts, and their API versions.
const (
	KindMesh            = "Mesh"
	KindWorkload        = "Workload"
	KindVirtualService  = "VirtualService"
	KindDestinationRule = "DestinationRule"

	// Front ends: converted into VirtualServices and DestinationRules
	// (convert*.go) before the compiler sees them.
	KindTrafficSplit     = "TrafficSplit"   // SMI, split.smi-spec.io
	KindServiceProfile   = "ServiceProfile" // Linkerd, linkerd.io
	KindGatewayHTTPRoute = "HTTPRoute"      // Gateway API (GAMMA), gateway.networking.k8s.io

	// Local rate limiting: a Trellis RateLimit, or the Istio EnvoyFilter form.
	KindRateLimit   = "RateLimit"
	KindEnvoyFilter = "EnvoyFilter"

	APIVersionTrellis = "trellis.dev/v1"
)

// IstioNetworkingVersions are the apiVersions accepted for Istio networking kinds.
var IstioNetworkingVersions = []string{
	"networking.istio.io/v1alpha3",
	"networking.istio.io/v1beta1",
	"networking.istio.io/v1",
}

// EnvoyFilterVersions: EnvoyFilter only exists in v1alpha3.
var EnvoyFilterVersions = []string{"networking.istio.io/v1alpha3"}

// TrafficSplitVersions are the SMI TrafficSplit versions. v1alpha1 weights
// are Kubernetes quantities ("500m"); later ones are integers.
var TrafficSplitVersions = []string{
	"split.smi-spec.io/v1alpha1",
	"split.smi-spec.io/v1alpha2",
	"split.smi-spec.io/v1alpha3",
	"split.smi-spec.io/v1alpha4",
}

// ServiceProfileVersions are the Linkerd ServiceProfile versions.
var ServiceProfileVersions = []string{"linkerd.io/v1alpha2"}

// GatewayAPIVersions are the Gateway API versions HTTPRoute is served in.
var GatewayAPIVersions = []string{
	"gateway.networking.k8s.io/v1",
	"gateway.networking.k8s.io/v1beta1",
	"gateway.networking.k8s.io/v1alpha2",
}
