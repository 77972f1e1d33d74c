package model

import (
	"fmt"
	"strings"
	"time"
)

// Protocol of a port. It decides how the sidecar handles the bytes and which
// ALPN value is used between sidecars.
type Protocol string

const (
	ProtocolHTTP  Protocol = "http"  // HTTP/1.1 (h2c prior knowledge from the app is also accepted)
	ProtocolHTTP2 Protocol = "http2" // HTTP/2; h2c to the app, h2 between sidecars
	ProtocolGRPC  Protocol = "grpc"  // gRPC over HTTP/2
	ProtocolTCP   Protocol = "tcp"   // opaque bytes
)

// IsHTTP reports whether the protocol is handled by the HTTP stack.
func (p Protocol) IsHTTP() bool { return p == ProtocolHTTP || p == ProtocolHTTP2 || p == ProtocolGRPC }

// IsHTTP2 reports whether the protocol needs HTTP/2 end to end.
func (p Protocol) IsHTTP2() bool { return p == ProtocolHTTP2 || p == ProtocolGRPC }

// Valid reports whether p is a known protocol.
func (p Protocol) Valid() bool {
	switch p {
	case ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolTCP:
		return true
	}
	return false
}

// Workload (trellis.dev/v1) is one running instance of a service, registered
// by its sidecar in local and universal mode.
type Workload struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       WorkloadSpec    `json:"spec"`
	Status     *WorkloadStatus `json:"status,omitempty"`
}

// WorkloadSpec is what a sidecar registers.
type WorkloadSpec struct {
	Service        string            `json:"service"`
	ServiceAccount string            `json:"serviceAccount,omitempty"` // defaults to Service
	Labels         map[string]string `json:"labels,omitempty"`
	Ports          []WorkloadPort    `json:"ports"`
	Upstreams      []Upstream        `json:"upstreams,omitempty"`
	Admin          string            `json:"admin,omitempty"` // host:port of the sidecar admin server
}

// WorkloadPort is one port the workload serves.
type WorkloadPort struct {
	Name     string   `json:"name,omitempty"`
	Port     uint32   `json:"port"`     // logical service port (cluster names use it)
	Protocol Protocol `json:"protocol"` // http, http2, grpc, tcp
	App      string   `json:"app"`      // host:port the application listens on
	Inbound  string   `json:"inbound"`  // host:port of the sidecar's mTLS listener for this port
}

// Upstream is a service this workload calls, through a local outbound port.
type Upstream struct {
	Service string `json:"service"`
	Port    uint32 `json:"port,omitempty"` // service port; 0 means the service's first port
	Local   string `json:"local"`          // host:port the sidecar listens on for the app
}

// WorkloadStatus is maintained by the control plane, not by the sidecar.
type WorkloadStatus struct {
	Ready    bool      `json:"ready"`
	Healthy  bool      `json:"healthy"`
	LastSeen time.Time `json:"lastSeen"`
}

// Key implements Object.
func (w *Workload) Key() Key {
	return Key{Kind: KindWorkload, Namespace: w.NamespaceOrDefault(), Name: w.Name}
}

// ServiceAccountOrDefault returns the service account, defaulting to the service name.
func (s WorkloadSpec) ServiceAccountOrDefault() string {
	if s.ServiceAccount != "" {
		return s.ServiceAccount
	}
	return s.Service
}

// SPIFFEID returns the identity this workload's certificate carries:
// spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, namespace, serviceAccount)
}

// ServiceName strips a Kubernetes-style FQDN ("reviews.default.svc.cluster.local")
// down to the short service name Trellis keys services by. A short name is
// returned unchanged. The namespace part, when present, is returned too.
func ServiceName(host string) (name, namespace string) {
	parts := strings.Split(host, ".")
	if len(parts) == 1 {
		return parts[0], ""
	}
	return parts[0], parts[1]
}
