package api

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// EnvAdminToken names the environment variable the CLI reads the admin
// token from (needed when the control plane runs with --admin-token-file).
const EnvAdminToken = "TRELLIS_ADMIN_TOKEN"

// Duration is a time.Duration written in JSON as a Go duration string
// ("1m30s"). It reads that form or a number of nanoseconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		var n int64
		if err := json.Unmarshal(data, &n); err != nil {
			return fmt.Errorf("duration: want a string like \"1m30s\" or nanoseconds, got %s", data)
		}
		*d = Duration(n)
		return nil
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// CertInfo describes one certificate.
type CertInfo struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	SPIFFEID    string    `json:"spiffeID,omitempty"`
	Serial      string    `json:"serial"`      // hex
	Fingerprint string    `json:"fingerprint"` // SHA-256 of the DER, hex
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	// Remaining is the time left until NotAfter when the answer was made
	// (negative once expired).
	Remaining Duration `json:"remaining"`
	IsCA      bool     `json:"isCA,omitempty"`
}

// NewCertInfo describes cert as seen at now.
func NewCertInfo(cert *x509.Certificate, now time.Time) CertInfo {
	sum := sha256.Sum256(cert.Raw)
	ci := CertInfo{
		Subject:     cert.Subject.String(),
		Issuer:      cert.Issuer.String(),
		Serial:      cert.SerialNumber.Text(16),
		Fingerprint: hex.EncodeToString(sum[:]),
		NotBefore:   cert.NotBefore.UTC(),
		NotAfter:    cert.NotAfter.UTC(),
		Remaining:   Duration(cert.NotAfter.Sub(now).Round(time.Second)),
		IsCA:        cert.IsCA,
	}
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			ci.SPIFFEID = u.String()
			break
		}
	}
	return ci
}

// CA sources.
const (
	CASourceGenerated = "generated" // roots made by the control plane, kept in its store
	CASourceOperator  = "operator"  // --ca-cert/--ca-key/--ca-bundle files
)

// CAStatus answers GET /v1/ca.
type CAStatus struct {
	TrustDomain   string   `json:"trustDomain"`
	Source        string   `json:"source"`
	LeafTTL       Duration `json:"leafTTL"`
	BundleRefresh Duration `json:"bundleRefresh"`
	// Signer is the certificate that signs leaves now: the active root, or
	// the operator's root or intermediate.
	Signer CertInfo `json:"signer"`
	// Chain is what every leaf carries after itself.
	Chain []CertInfo `json:"chain"`
	Roots []CARoot   `json:"roots"`
}

// CARoot is one root the CA knows.
type CARoot struct {
	CertInfo
	// ActiveFrom is when a generated root starts (or started) signing.
	ActiveFrom time.Time `json:"activeFrom,omitzero"`
	// TrustedUntil is when the root leaves the trust bundle.
	TrustedUntil time.Time `json:"trustedUntil"`
	// Active: leaves issued now chain to this root.
	Active bool `json:"active"`
	// Trusted: the root is in the trust bundle now.
	Trusted bool `json:"trusted"`
	// HasKey: the control plane holds the root's private key.
	HasKey bool `json:"hasKey"`
}

// RotateRequest is POSTed to /v1/ca/rotate. Zero durations take the
// control plane's defaults.
type RotateRequest struct {
	Overlap       Duration `json:"overlap,omitempty"`
	ActivateAfter Duration `json:"activateAfter,omitempty"`
	Force         bool     `json:"force,omitempty"`
}

// RotateResponse answers POST /v1/ca/rotate.
type RotateResponse struct {
	NewRoot         CertInfo  `json:"newRoot"`
	ActivateAt      time.Time `json:"activateAt"`
	OldTrustedUntil time.Time `json:"oldTrustedUntil"`
	Status          CAStatus  `json:"status"`
}

// BundleResponse answers GET /v1/ca/bundle (join token): what a sidecar
// polls to learn of new roots and of a new signer.
type BundleResponse struct {
	Bundle string `json:"bundle"` // PEM, every root trusted now
	// Signer is the fingerprint of the certificate that signs leaves now;
	// a sidecar whose leaf was signed by another renews it.
	Signer string `json:"signer"`
	// BundleRefresh is how often the sidecar should poll.
	BundleRefresh Duration `json:"bundleRefresh"`
}

// SidecarCerts is a sidecar's admin /certs: its SVID, chain and trust bundle.
type SidecarCerts struct {
	// Identity, Serial, NotBefore, NotAfter describe the leaf (as Chain[0]).
	Identity  string    `json:"identity"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	// Rotations counts the certificates obtained after the first.
	Rotations int `json:"rotations"`
	// LastRotation is when the current certificate was installed;
	// NextRotation when the sidecar plans to renew it.
	LastRotation time.Time  `json:"lastRotation"`
	NextRotation time.Time  `json:"nextRotation"`
	Chain        []CertInfo `json:"chain"`  // leaf first
	Bundle       []CertInfo `json:"bundle"` // trusted roots
	// BundleUpdated is when the trust bundle last changed.
	BundleUpdated time.Time `json:"bundleUpdated"`
	// Signer is the fingerprint of what the control plane signs with, as
	// last heard.
	Signer        string   `json:"signer,omitempty"`
	BundleRefresh Duration `json:"bundleRefresh"`
}

// CAStatus returns the CA's roots and signer.
func (c *Client) CAStatus(ctx context.Context) (*CAStatus, error) {
	var out CAStatus
	return &out, c.doJSON(ctx, http.MethodGet, "/v1/ca", nil, &out)
}

// RotateCA adds a new root (see RotateRequest).
func (c *Client) RotateCA(ctx context.Context, req RotateRequest) (*RotateResponse, error) {
	var out RotateResponse
	return &out, c.doJSON(ctx, http.MethodPost, "/v1/ca/rotate", req, &out)
}

// Bundle returns the trust bundle and the current signer (join token).
func (c *Client) Bundle(ctx context.Context) (*BundleResponse, error) {
	var out BundleResponse
	return &out, c.doJSON(ctx, http.MethodGet, "/v1/ca/bundle", nil, &out)
}
