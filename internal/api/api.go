// Package api is the control plane's HTTP/JSON admin API: the request and
// response types and a client. The control plane serves it (internal/controlplane);
// the CLI, `trellis up` and the sidecar call it.
//
// Two audiences share one listener:
//
//	operator (CLI, trellis up)    /v1/apply /v1/config/... /v1/status /v1/tokens /v1/mesh /v1/ca...
//	                              with --admin-token-file: "Authorization: Bearer <admin token>"
//	                              (the CLI reads TRELLIS_ADMIN_TOKEN); without: loopback only
//	sidecar                       /v1/workloads... /v1/certificates /v1/ca/bundle
//	                              "Authorization: Bearer <join token>" required
//	either                        /v1/info (join or admin token);  /healthz: anyone
package api

import (
	"time"

	"github.com/trellis-mesh/trellis/internal/model"
)

// DefaultControl is the admin API address every CLI command uses unless
// --control or TRELLIS_CONTROL says otherwise; `trellis up` listens there.
const DefaultControl = "http://127.0.0.1:15080"

// DefaultXDSAddr is where the control plane serves ADS unless told otherwise.
const DefaultXDSAddr = "127.0.0.1:15012"

// EnvControl names the environment variable holding the admin API URL.
const EnvControl = "TRELLIS_CONTROL"

// EnvJoinToken names the environment variable a sidecar reads its join token from.
const EnvJoinToken = "TRELLIS_JOIN_TOKEN"

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// ApplyResponse answers POST /v1/apply.
type ApplyResponse struct {
	// Results has one line per document: "VirtualService default/reviews created".
	Results  []string `json:"results"`
	Warnings []string `json:"warnings,omitempty"`
}

// TokenResponse answers POST /v1/tokens.
type TokenResponse struct {
	Token string `json:"token"`
}

// Info answers GET /v1/info: what a sidecar needs to know to join.
type Info struct {
	TrustDomain string `json:"trustDomain"`
	XDSAddr     string `json:"xdsAddr"`
}

// RegisterResponse answers POST /v1/workloads.
type RegisterResponse struct {
	Identity string `json:"identity"`
}

// HeartbeatRequest is POSTed to /v1/workloads/{ns}/{name}/heartbeat.
type HeartbeatRequest struct {
	Ready bool `json:"ready"`
}

// CertificateRequest is POSTed to /v1/certificates. The key never leaves the sidecar.
type CertificateRequest struct {
	Namespace string `json:"namespace,omitempty"`
	Workload  string `json:"workload"`
	CSR       string `json:"csr"` // PEM "CERTIFICATE REQUEST"
}

// CertificateResponse carries the signed chain (leaf first) and the trust
// bundle, both PEM, with what GET /v1/ca/bundle says about the signer and
// the refresh period.
type CertificateResponse struct {
	Chain         string   `json:"chain"`
	Bundle        string   `json:"bundle"`
	Signer        string   `json:"signer,omitempty"`
	BundleRefresh Duration `json:"bundleRefresh,omitempty"`
}

// MeshInfo is stored by `trellis up` (PUT /v1/mesh) so `status` can show the entry page.
type MeshInfo struct {
	Name  string `json:"name,omitempty"`
	Entry string `json:"entry,omitempty"`
}

// Status answers GET /v1/status.
type Status struct {
	Mesh      string           `json:"mesh,omitempty"`
	Entry     string           `json:"entry,omitempty"`
	Workloads []WorkloadStatus `json:"workloads"`
}

// WorkloadStatus is one line of `trellis status`.
type WorkloadStatus struct {
	Name      string               `json:"name"`
	Namespace string               `json:"namespace"`
	Service   string               `json:"service"`
	Labels    map[string]string    `json:"labels"`
	Identity  string               `json:"identity"`
	Ready     bool                 `json:"ready"`
	Healthy   bool                 `json:"healthy"`
	App       string               `json:"app"`
	Inbound   string               `json:"inbound"`
	Admin     string               `json:"admin"`
	Protocol  model.Protocol       `json:"protocol"`
	Upstreams map[string]string    `json:"upstreams"`
	Ports     []model.WorkloadPort `json:"ports"`
	Config    ConfigStatus         `json:"config"`
	LastSeen  time.Time            `json:"lastSeen"`
}

// Config sync states.
const (
	ConfigSynced = "SYNCED"
	ConfigStale  = "STALE"
	ConfigNacked = "NACKED"
)

// ConfigStatus is the control plane's view of a sidecar's xDS sync.
type ConfigStatus struct {
	State     string `json:"state"`
	Version   string `json:"version"`
	Connected bool   `json:"connected"`
	Error     string `json:"error,omitempty"`
}
