package model

import (
	"encoding/json"
	"strings"
	"testing"
)

// Output of `kubectl get virtualservice reviews -o yaml` applies unchanged,
// and none of the server's fields are kept.
func TestKubectlOutputDecodes(t *testing.T) {
	const doc = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"networking.istio.io/v1","kind":"VirtualService"}
  creationTimestamp: "2026-11-20T10:00:00Z"
  generation: 3
  name: reviews
  namespace: default
  resourceVersion: "123456"
  uid: 6f1c2a9e-0000-4000-8000-000000000000
  managedFields:
  - manager: kubectl
    operation: Update
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
status:
  observedGeneration: 3
  validationMessages: []
`
	objs, err := Decode([]byte(doc), "kubectl.yaml")
	if err != nil {
		t.Fatalf("kubectl output rejected: %v", err)
	}
	data, err := json.Marshal(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"uid", "resourceVersion", "creationTimestamp", "managedFields", "observedGeneration"} {
		if strings.Contains(string(data), gone) {
			t.Errorf("%s kept in the stored object: %s", gone, data)
		}
	}
	// A real unknown field next to them is still an error.
	bad := strings.Replace(doc, "  generation: 3", "  generation: 3\n  colour: blue", 1)
	if _, err := Decode([]byte(bad), "kubectl.yaml"); err == nil || !strings.Contains(err.Error(), "metadata.colour: unknown field") {
		t.Errorf("unknown metadata field: %v", err)
	}
	// status stays an unknown field where it is not server-written.
	mesh := "apiVersion: trellis.dev/v1\nkind: Mesh\nmetadata: {name: m}\nspec:\n  workloads:\n  - {name: a, service: a, demo: details}\nstatus: {}\n"
	if _, err := Decode([]byte(mesh), "m.yaml"); err == nil || !strings.Contains(err.Error(), "status: unknown field") {
		t.Errorf("status on a Mesh: %v", err)
	}
}
