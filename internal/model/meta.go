// Package model holds the typed mesh resources Trellis accepts, their decoding
// and their validation. It does no I/O and knows nothing of xDS: the compiler
// (internal/compile) turns these types into proxy configuration.
//
//	YAML/JSON ─► Decode ─┬─ split at "---", YAML → JSON (sigs.k8s.io/yaml)
//	                     ├─ kind + apiVersion → Go type          (decode.go)
//	                     ├─ walk JSON against the type: unknown   (walk.go)
//	                     │  fields, wrong types, exact paths
//	                     ├─ json.Unmarshal, defaults
//	                     └─ Validate: semantics, warnings for    (validate*.go)
//	                        fields not acted on yet
//	stored set ─► CheckReferences: dangling subsets, hosts  (references.go)
//	object ─► Marshal: `trellis get -o yaml|json`            (marshal.go)
//
// Every error is a *FieldError ("mesh.yaml: VirtualService default/reviews:
// spec.http[0].route[1].weight: weights sum to 110, want 100"), joined with
// errors.Join so that a user sees all of them at once.
package model

import "fmt"

// DefaultNamespace is the namespace used in local and universal mode.
const DefaultNamespace = "default"

// DefaultTrustDomain is the SPIFFE trust domain unless configured.
const DefaultTrustDomain = "cluster.local"

// TypeMeta is the apiVersion/kind pair every document carries.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// ObjectMeta is the subset of Kubernetes object metadata Trellis uses.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Key identifies one stored object.
type Key struct {
	Kind      string
	Namespace string
	Name      string
}

// String renders the key the way error messages name a document:
// "VirtualService default/reviews".
func (k Key) String() string {
	return fmt.Sprintf("%s %s/%s", k.Kind, k.Namespace, k.Name)
}

// Object is any decoded mesh resource.
type Object interface {
	GetTypeMeta() TypeMeta
	GetObjectMeta() ObjectMeta
	// Key returns kind, namespace (defaulted) and name.
	Key() Key
}

func (t TypeMeta) GetTypeMeta() TypeMeta { return t }

func (o ObjectMeta) GetObjectMeta() ObjectMeta { return o }

// NamespaceOrDefault returns the namespace, or DefaultNamespace when empty.
func (o ObjectMeta) NamespaceOrDefault() string {
	if o.Namespace == "" {
		return DefaultNamespace
	}
	return o.Namespace
}
