package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/store"
)

// handleCAStatus answers GET /v1/ca (`trellis ca status`).
func (cp *ControlPlane) handleCAStatus(w http.ResponseWriter, _ *http.Request) {
	st, err := cp.caStatus()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// handleCARotate answers POST /v1/ca/rotate (`trellis ca rotate`).
func (cp *ControlPlane) handleCARotate(w http.ResponseWriter, r *http.Request) {
	var req api.RotateRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("rotate request: %w", err))
		return
	}
	rot, err := cp.ca.Rotate(r.Context(), ca.RotateOptions{
		Overlap: time.Duration(req.Overlap), ActivateAfter: time.Duration(req.ActivateAfter), Force: req.Force,
	})
	if err != nil {
		code := http.StatusInternalServerError
		var oe *ca.OptionsError
		switch {
		case errors.As(err, &oe):
			code = http.StatusBadRequest
		case errors.Is(err, ca.ErrOperatorCA), errors.Is(err, ca.ErrRotationInProgress), errors.Is(err, store.ErrConflict):
			code = http.StatusConflict
		}
		writeError(w, code, err)
		return
	}
	cp.logger.Info("CA root rotation started", "newRoot", ca.Fingerprint(rot.Root.Cert), "signsFrom", rot.ActivateAt,
		"oldRootsTrustedUntil", rot.OldTrustedEnd, "force", req.Force)
	st, err := cp.caStatus()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, api.RotateResponse{
		NewRoot:         api.NewCertInfo(rot.Root.Cert, time.Now()),
		ActivateAt:      rot.ActivateAt.UTC(),
		OldTrustedUntil: rot.OldTrustedEnd.UTC(),
		Status:          *st,
	})
}

func (cp *ControlPlane) caStatus() (*api.CAStatus, error) {
	now := time.Now()
	signer, chain, err := cp.ca.Signer()
	if err != nil {
		return nil, err
	}
	st := &api.CAStatus{
		TrustDomain:   cp.ca.TrustDomain().Name(),
		Source:        api.CASourceGenerated,
		LeafTTL:       api.Duration(cp.ca.TTL()),
		BundleRefresh: api.Duration(cp.ca.BundleRefresh()),
		Signer:        api.NewCertInfo(signer, now),
		Chain:         make([]api.CertInfo, 0, len(chain)),
	}
	if cp.ca.Operator() {
		st.Source = api.CASourceOperator
	}
	for _, c := range chain {
		st.Chain = append(st.Chain, api.NewCertInfo(c, now))
	}
	for _, r := range cp.ca.Roots() {
		st.Roots = append(st.Roots, api.CARoot{
			CertInfo: api.NewCertInfo(r.Cert, now), ActiveFrom: r.ActiveFrom.UTC(), TrustedUntil: r.TrustedUntil.UTC(),
			Active: r.Active, Trusted: r.Trusted, HasKey: r.HasKey,
		})
	}
	return st, nil
}
