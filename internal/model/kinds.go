package model

// Kinds Trellis accepts, and their API versions.
const (
	KindMesh            = "Mesh"
	KindWorkload        = "Workload"
	KindVirtualService  = "VirtualService"
	KindDestinationRule = "DestinationRule"

	APIVersionTrellis = "trellis.dev/v1"
)

// IstioNetworkingVersions are the apiVersions accepted for Istio networking kinds.
var IstioNetworkingVersions = []string{
	"networking.istio.io/v1alpha3",
	"networking.istio.io/v1beta1",
	"networking.istio.io/v1",
}
