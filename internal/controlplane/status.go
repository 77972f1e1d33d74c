package controlplane

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store"
)

const kindMeshInfo = "MeshInfo"

func (cp *ControlPlane) handleStatus(w http.ResponseWriter, r *http.Request) {
	workloads, err := cp.registry.Workloads(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	st := api.Status{Workloads: make([]api.WorkloadStatus, 0, len(workloads))}
	if rec, err := cp.store.Get(r.Context(), kindMeshInfo, systemNamespace, "mesh"); err == nil {
		var m api.MeshInfo
		if json.Unmarshal(rec.Data, &m) == nil {
			st.Mesh, st.Entry = m.Name, m.Entry
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	for _, wl := range workloads {
		st.Workloads = append(st.Workloads, cp.workloadStatus(wl))
	}
	writeJSON(w, http.StatusOK, st)
}

func (cp *ControlPlane) workloadStatus(wl *model.Workload) api.WorkloadStatus {
	ws := api.WorkloadStatus{
		Name:      wl.Name,
		Namespace: wl.NamespaceOrDefault(),
		Service:   wl.Spec.Service,
		Labels:    wl.Spec.Labels,
		Identity:  cp.identity(wl).String(),
		Admin:     wl.Spec.Admin,
		Ports:     wl.Spec.Ports,
		Upstreams: map[string]string{},
	}
	if ws.Labels == nil {
		ws.Labels = map[string]string{}
	}
	if wl.Status != nil {
		ws.Ready = wl.Status.Ready && wl.Status.Healthy
		ws.Healthy = wl.Status.Healthy
		ws.LastSeen = wl.Status.LastSeen
	}
	if len(wl.Spec.Ports) > 0 {
		ws.App = wl.Spec.Ports[0].App
		ws.Inbound = wl.Spec.Ports[0].Inbound
		ws.Protocol = wl.Spec.Ports[0].Protocol
	}
	for _, u := range wl.Spec.Upstreams {
		ws.Upstreams[u.Service] = u.Local
	}
	ns := cp.xds.NodeStatus(wl.Name)
	ws.Config = api.ConfigStatus{State: ns.State, Version: ns.Version, Connected: ns.Connected, Error: ns.LastError}
	if ws.Config.State == "" || (ws.Config.State == api.ConfigSynced && cp.pending()) {
		ws.Config.State = api.ConfigStale
	}
	return ws
}
