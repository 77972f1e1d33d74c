package controlplane

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/trellis-mesh/trellis/internal/registry"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// handleXDSDump serves GET /v1/xds/{ns}/{name}: the configuration the
// control plane last published for a workload's sidecar, as an Envoy
// /config_dump. `trellis explain` reads it when the sidecar's own admin
// port does not answer; the sidecar may not have applied it yet (its
// status says SYNCED once it has).
func (cp *ControlPlane) handleXDSDump(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if _, err := cp.registry.Get(r.Context(), ns, name); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, registry.ErrNotRegistered) {
			code, err = http.StatusNotFound, fmt.Errorf("workload %s/%s not found", ns, name)
		}
		writeError(w, code, err)
		return
	}
	set, ok := cp.xds.Resources(name) // the node id is the workload name
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("workload %s/%s: nothing compiled yet (its sidecar has not opened an xDS stream)", ns, name))
		return
	}
	data, err := resources.ConfigDump(set)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}
