package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store"
)

const maxApplyBody = 8 << 20

func (cp *ControlPlane) routes() http.Handler {
	mux := http.NewServeMux()
	// Operator API: the admin token, or loopback trust (admin_auth.go).
	mux.HandleFunc("POST /v1/apply", cp.handleApply)
	mux.HandleFunc("GET /v1/config/{kind}", cp.handleList)
	mux.HandleFunc("GET /v1/config/{kind}/{ns}/{name}", cp.handleGet)
	mux.HandleFunc("DELETE /v1/config/{kind}/{ns}/{name}", cp.handleDelete)
	mux.HandleFunc("GET /v1/status", cp.handleStatus)
	mux.HandleFunc("POST /v1/tokens", cp.handleCreateToken)
	mux.HandleFunc("PUT /v1/mesh", cp.handlePutMesh)
	mux.Handle("GET /v1/info", cp.withTokenOrOperator(cp.handleInfo))
	mux.HandleFunc("GET /v1/ca", cp.handleCAStatus)             // ca_admin.go
	mux.HandleFunc("POST /v1/ca/rotate", cp.handleCARotate)     // ca_admin.go
	mux.HandleFunc("GET /v1/xds/{ns}/{name}", cp.handleXDSDump) // xdsdump.go: what `trellis explain` falls back to
	// Go profiles of the control plane (heap, allocations, CPU, goroutines).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	// Sidecar API: join token required.
	mux.Handle("POST /v1/workloads", cp.withToken(cp.handleRegister))
	mux.Handle("POST /v1/workloads/{ns}/{name}/heartbeat", cp.withToken(cp.handleHeartbeat))
	mux.Handle("DELETE /v1/workloads/{ns}/{name}", cp.withToken(cp.handleDeregister))
	mux.Handle("POST /v1/certificates", cp.withToken(cp.handleCertificate))
	mux.Handle("GET /v1/ca/bundle", cp.withToken(cp.handleBundle))
	return cp.withAdminAuth(mux)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.Error{Error: err.Error()})
}

// applyableKinds are the kinds `trellis apply` stores.
var applyableKinds = map[string]bool{
	model.KindVirtualService:        true,
	model.KindDestinationRule:       true,
	model.KindTrafficSplit:          true,
	model.KindServiceProfile:        true,
	model.KindGatewayHTTPRoute:      true,
	model.KindRateLimit:             true,
	model.KindEnvoyFilter:           true,
	model.KindPeerAuthentication:    true,
	model.KindAuthorizationPolicy:   true,
	model.KindRequestAuthentication: true,
}

// canonicalKind maps the names users type (vs, virtualservices,
// VirtualService: the kind, its plural and the short names of the upstream
// CRDs) to a kind.
func canonicalKind(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "virtualservice", "virtualservices", "vs":
		return model.KindVirtualService, true
	case "destinationrule", "destinationrules", "dr":
		return model.KindDestinationRule, true
	case "trafficsplit", "trafficsplits", "ts":
		return model.KindTrafficSplit, true
	case "serviceprofile", "serviceprofiles", "sp":
		return model.KindServiceProfile, true
	case "httproute", "httproutes":
		return model.KindGatewayHTTPRoute, true
	case "ratelimit", "ratelimits", "rl":
		return model.KindRateLimit, true
	case "envoyfilter", "envoyfilters":
		return model.KindEnvoyFilter, true
	case "peerauthentication", "peerauthentications", "pa":
		return model.KindPeerAuthentication, true
	case "authorizationpolicy", "authorizationpolicies", "ap":
		return model.KindAuthorizationPolicy, true
	case "requestauthentication", "requestauthentications", "ra":
		return model.KindRequestAuthentication, true
	case "workload", "workloads":
		return model.KindWorkload, true
	}
	return "", false
}

func (cp *ControlPlane) handleApply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxApplyBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("read documents: %w", err))
		return
	}
	source := r.URL.Query().Get("source")
	if source == "" {
		source = "request"
	}
	plan, err := cp.planApply(r.Context(), body, source)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	resp := api.ApplyResponse{Results: plan.results, Warnings: plan.warnings}
	if r.URL.Query().Get("dryRun") == "true" {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	if _, err := cp.store.PutAll(r.Context(), plan.records); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("store: %w", err))
		return
	}
	for _, line := range plan.results {
		cp.logger.Info("applied", "result", line)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (cp *ControlPlane) handleList(w http.ResponseWriter, r *http.Request) {
	kind, ok := canonicalKind(r.PathValue("kind"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("unknown kind %q", r.PathValue("kind")))
		return
	}
	recs, err := cp.store.List(r.Context(), kind)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	items := make([]json.RawMessage, 0, len(recs))
	for _, rec := range recs {
		items = append(items, rec.Data)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (cp *ControlPlane) handleGet(w http.ResponseWriter, r *http.Request) {
	kind, ok := canonicalKind(r.PathValue("kind"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("unknown kind %q", r.PathValue("kind")))
		return
	}
	rec, err := cp.store.Get(r.Context(), kind, r.PathValue("ns"), r.PathValue("name"))
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, store.ErrNotFound) {
			code = http.StatusNotFound
			err = fmt.Errorf("%s %s/%s not found", kind, r.PathValue("ns"), r.PathValue("name"))
		}
		writeError(w, code, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(rec.Data)
}

func (cp *ControlPlane) handleDelete(w http.ResponseWriter, r *http.Request) {
	kind, ok := canonicalKind(r.PathValue("kind"))
	if !ok || !applyableKinds[kind] {
		writeError(w, http.StatusBadRequest, fmt.Errorf("kind %q cannot be deleted through the config API", r.PathValue("kind")))
		return
	}
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if err := cp.store.Delete(r.Context(), kind, ns, name); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, store.ErrNotFound) {
			code = http.StatusNotFound
			err = fmt.Errorf("%s %s/%s not found", kind, ns, name)
		}
		writeError(w, code, err)
		return
	}
	cp.logger.Info("deleted", "kind", kind, "namespace", ns, "name", name)
	writeJSON(w, http.StatusOK, map[string]string{"result": fmt.Sprintf("%s %s/%s deleted", kind, ns, name)})
}

func (cp *ControlPlane) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	token, err := cp.tokens.create(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, api.TokenResponse{Token: token})
}

func (cp *ControlPlane) handleInfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, api.Info{TrustDomain: cp.cfg.TrustDomain, XDSAddr: cp.XDSAddr()})
}

func (cp *ControlPlane) handlePutMesh(w http.ResponseWriter, r *http.Request) {
	var m api.MeshInfo
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&m); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("mesh info: %w", err))
		return
	}
	data, _ := json.Marshal(m)
	if _, err := cp.store.Put(r.Context(), store.Record{Kind: kindMeshInfo, Namespace: systemNamespace, Name: "mesh", Data: data}); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}
