package proxy

import (
	"fmt"
	"net/http"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// InboundDetail is the server side of a forwarded request: what the
// destination workload's sidecar does with it on its inbound listener
// (authentication, authorization and local rate limits live there, as in
// Istio).
type InboundDetail struct {
	Workload string `json:"workload,omitempty"` // filled in by the caller
	Listener string `json:"listener"`
	Address  string `json:"address"`
	// Route is the inbound route that matched ("" and Status 404 when none).
	Route   string         `json:"route,omitempty"`
	Status  int            `json:"status,omitempty"`
	Cluster string         `json:"cluster,omitempty"` // the app's
	Filters []FilterDetail `json:"filters,omitempty"`
	// Denied is the status of the jwt_authn or rbac reply that stops the
	// request (401, 403), 0 when it reaches the app.
	Denied int `json:"denied,omitempty"`
	// Path is the path the app receives, after the listener's normalization.
	Path string `json:"path,omitempty"`
}

// ExplainInbound explains what the sidecar whose configuration is set does
// with a request forwarded to its inbound listener at endpoint (an address
// of a client cluster's load assignment), as the client's cluster sends it
// (up, from Explain), from the caller whose SPIFFE ID is peer ("": no
// identity, a plaintext caller). Like Explain it only reads.
func ExplainInbound(set *resources.Set, endpoint, method, peer string, up *UpstreamDetail) (*InboundDetail, error) {
	ts, err := translateSet(set)
	if err != nil {
		return nil, err
	}
	var lc *listenerConfig
	for _, name := range resources.SortedKeys(ts.listeners) {
		if l := ts.listeners[name]; l.address == endpoint {
			lc = l
		}
	}
	if lc == nil {
		return nil, fmt.Errorf("no listener on %s in this sidecar's config", endpoint)
	}
	d := &InboundDetail{Listener: lc.name, Address: lc.address}
	if lc.kind != kindHTTP {
		return d, nil
	}
	r, err := readRequest(method, up.Target, up.Authority, up.Headers, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	if _, ok := normalizeRequest(r, lc.pathOpts); !ok {
		d.Status = http.StatusBadRequest
		return d, nil
	}
	d.Path = r.URL.RawPath
	if d.Path == "" {
		d.Path = r.URL.Path
	}
	table, rc := lc.inlineRoutes, ts.inlineRaw[lc.name]
	if table == nil {
		table, rc = ts.routes[lc.rdsName], set.Routes[lc.rdsName]
	}
	var rt *route
	view := stdRequest(r)
	if lc.tls != nil {
		view.scheme = "https" // the request arrived over mTLS
	}
	if table != nil {
		rt = matchRoute(table, &view)
	}
	if rt == nil {
		d.Status = http.StatusNotFound
		return d, nil
	}
	d.Route = rt.name
	if d.Route == "" {
		for i, x := range table.routes {
			if x == rt {
				d.Route = fmt.Sprintf("#%d", i)
			}
		}
	}
	var clusters []string
	if rt.forwards() {
		if rt.weighted != nil {
			clusters = rt.weighted.names
		} else {
			clusters = []string{rt.cluster}
		}
		d.Cluster = clusters[0]
	}
	d.Filters = filterDetails(lc, rt, rc, rawRoute(rc, rt, table), &view, clusters)
	d.Denied = explainAuthz(lc, r, &view, peer, d.Filters)
	return d, nil
}
