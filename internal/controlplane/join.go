package controlplane

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// sidecarRoute is a route sidecars call: it checks the join token itself,
// so the operator's admin token is not asked for (admin_auth.go).
type sidecarRoute struct {
	cp   *ControlPlane
	next http.HandlerFunc
	// operatorToo admits the operator as well (GET /v1/info).
	operatorToo bool
}

func isSidecarRoute(h http.Handler) bool {
	_, ok := h.(sidecarRoute)
	return ok
}

// withToken admits only requests carrying a join token this control plane issued.
func (cp *ControlPlane) withToken(next http.HandlerFunc) http.Handler {
	return sidecarRoute{cp: cp, next: next}
}

// withTokenOrOperator admits sidecars (join token) and operators.
func (cp *ControlPlane) withTokenOrOperator(next http.HandlerFunc) http.Handler {
	return sidecarRoute{cp: cp, next: next, operatorToo: true}
}

func (s sidecarRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.operatorToo && s.cp.isOperator(r) {
		s.next(w, r)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		writeError(w, http.StatusUnauthorized, errBadToken)
		return
	}
	if err := s.cp.tokens.check(r.Context(), token); err != nil {
		if errors.Is(err, errBadToken) {
			writeError(w, http.StatusUnauthorized, err)
		} else {
			writeError(w, http.StatusInternalServerError, err)
		}
		return
	}
	s.next(w, r)
}

func (cp *ControlPlane) handleRegister(w http.ResponseWriter, r *http.Request) {
	var wl model.Workload
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wl); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("workload: %w", err))
		return
	}
	if err := cp.registry.Register(r.Context(), &wl); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, api.RegisterResponse{Identity: cp.identity(&wl).String()})
}

func (cp *ControlPlane) identity(wl *model.Workload) spiffeid.ID {
	id, err := spiffeid.FromString(model.SPIFFEID(cp.cfg.TrustDomain, wl.NamespaceOrDefault(), wl.Spec.ServiceAccountOrDefault()))
	if err != nil {
		// Validation of the workload guarantees DNS-label names, so this cannot
		// happen for a registered workload; return the zero ID which Sign rejects.
		cp.logger.Error("invalid identity", "workload", wl.Name, "err", err)
	}
	return id
}

func (cp *ControlPlane) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var req api.HeartbeatRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("heartbeat: %w", err))
		return
	}
	if err := cp.registry.Heartbeat(r.Context(), r.PathValue("ns"), r.PathValue("name"), req.Ready); err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (cp *ControlPlane) handleDeregister(w http.ResponseWriter, r *http.Request) {
	if err := cp.registry.Deregister(r.Context(), r.PathValue("ns"), r.PathValue("name")); err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func statusFor(err error) int {
	if errors.Is(err, registry.ErrNotRegistered) {
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// handleCertificate signs a CSR for a registered workload. The identity comes
// from the registration (its service account), never from the CSR.
func (cp *ControlPlane) handleCertificate(w http.ResponseWriter, r *http.Request) {
	var req api.CertificateRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("certificate request: %w", err))
		return
	}
	ns := req.Namespace
	if ns == "" {
		ns = model.DefaultNamespace
	}
	wl, err := cp.registry.Get(r.Context(), ns, req.Workload)
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	block, _ := pem.Decode([]byte(req.CSR))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		writeError(w, http.StatusBadRequest, errors.New("csr: want one PEM block of type CERTIFICATE REQUEST"))
		return
	}
	chain, err := cp.ca.Sign(block.Bytes, cp.identity(wl), 0)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("sign: %w", err))
		return
	}
	if leaf, err := x509.ParseCertificate(chain[0]); err == nil {
		cp.logger.Info("certificate issued", "workload", wl.Name, "identity", cp.identity(wl).String(), "notAfter", leaf.NotAfter)
	}
	b := cp.bundle()
	writeJSON(w, http.StatusOK, api.CertificateResponse{
		Chain:         string(ca.EncodeChainPEM(chain)),
		Bundle:        b.Bundle,
		Signer:        b.Signer,
		BundleRefresh: b.BundleRefresh,
	})
}

// handleBundle is what sidecars poll: the roots trusted now, and which
// certificate signs, so that a sidecar holding a leaf of another signer
// renews it.
func (cp *ControlPlane) handleBundle(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, cp.bundle())
}

func (cp *ControlPlane) bundle() api.BundleResponse {
	out := api.BundleResponse{Bundle: string(cp.ca.BundlePEM()), BundleRefresh: api.Duration(cp.ca.BundleRefresh())}
	if signer, _, err := cp.ca.Signer(); err == nil {
		out.Signer = ca.Fingerprint(signer)
	}
	return out
}
