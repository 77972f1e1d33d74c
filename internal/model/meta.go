// Package model holds the typed mesh resources Trellis accepts, their decoding
// and their validation. It does no I/O and knows nothing of xDS: the compiler
// (internal/compile) turns these types into proxy configuration.
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
