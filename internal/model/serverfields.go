package model

// serverSetMetadata are metadata fields a Kubernetes API server writes.
// `kubectl get -o yaml` output carries them; like `kubectl apply`, Trellis
// accepts such documents and drops these fields instead of calling them
// unknown.
var serverSetMetadata = []string{
	"uid", "resourceVersion", "generation", "creationTimestamp", "selfLink",
	"managedFields", "deletionTimestamp", "deletionGracePeriodSeconds",
}

// serverSetStatus are the kinds whose top-level status is written by the
// server (Istio's validation messages, Gateway API route conditions), never
// by the user.
var serverSetStatus = map[string]bool{
	KindVirtualService: true, KindDestinationRule: true, KindEnvoyFilter: true, KindGatewayHTTPRoute: true,
}

// dropServerSetFields removes server-written fields from a raw document
// before it is checked and decoded, so they are neither errors nor stored.
func dropServerSetFields(kind string, doc map[string]any) {
	if serverSetStatus[kind] {
		delete(doc, "status")
	}
	md, ok := doc["metadata"].(map[string]any)
	if !ok {
		return
	}
	for _, f := range serverSetMetadata {
		delete(md, f)
	}
}
