package compile

import (
	"slices"
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// bufferFilter is the HTTP filter of request buffering (the buffer form of
// EnvoyFilter): the inbound sidecar reads a whole request body, up to
// max_request_bytes (413 beyond), before the router sends it.
const bufferFilter = "envoy.filters.http.buffer"

// envoyFilterBuffers is the request buffering of one valid EnvoyFilter.
type envoyFilterBuffers struct {
	filter  *model.EnvoyFilter
	buffers []model.RequestBuffer
}

// addRequestBuffers indexes the EnvoyFilters that insert the buffer filter,
// in the precedence order of their rate limits (efPrecedes).
func (ix *Index) addRequestBuffers(in *Input) {
	for _, e := range in.EnvoyFilters {
		if e == nil {
			continue
		}
		if bufs := e.RequestBuffers(); len(bufs) > 0 {
			ix.filterBufs = append(ix.filterBufs, envoyFilterBuffers{filter: e, buffers: bufs})
		}
	}
	sort.Slice(ix.filterBufs, func(i, j int) bool { return efPrecedes(ix.filterBufs[i].filter, ix.filterBufs[j].filter) })
}

// efPrecedes orders EnvoyFilters as Istio applies them to a workload:
// those of its own namespace before those of the root namespace, then by
// name.
func efPrecedes(a, b *model.EnvoyFilter) bool {
	if ra, rb := a.NamespaceOrDefault() == model.IstioRootNamespace, b.NamespaceOrDefault() == model.IstioRootNamespace; ra != rb {
		return rb
	}
	return a.Key().String() < b.Key().String()
}

// requestBuffer is the buffering of w's inbound port: the first EnvoyFilter
// selecting w whose buffer filter is inserted on the port gives the
// filter's config, and its per-route config for the port (else for every
// port), if any. filter is nil when no EnvoyFilter buffers the port.
func (ix *Index) requestBuffer(w *model.Workload, port uint32) (filter, perRoute *model.RequestBuffer) {
	for _, f := range ix.filterBufs {
		if !f.filter.Selects(w) {
			continue
		}
		for i := range f.buffers {
			b := &f.buffers[i]
			switch {
			case b.Port != 0 && b.Port != port:
			case !b.PerRoute:
				filter = b
			case perRoute == nil || perRoute.Port == 0:
				perRoute = b
			}
		}
		if filter != nil {
			return filter, perRoute
		}
		perRoute = nil
	}
	return nil, nil
}

// bufferedRoutes inserts the buffer filter before the router at the end of
// tail, and puts the per-route config, if any, on the inbound virtual host
// (it applies to every route of the port, rate-limited ones included).
func bufferedRoutes(vh *routev3.VirtualHost, tail []*hcmv3.HttpFilter, filter, perRoute *model.RequestBuffer) ([]*hcmv3.HttpFilter, error) {
	cfg, err := toAny(&bufferv3.Buffer{MaxRequestBytes: wrapperspb.UInt32(filter.MaxRequestBytes)})
	if err != nil {
		return nil, err
	}
	if perRoute != nil {
		pr := &bufferv3.BufferPerRoute{Override: &bufferv3.BufferPerRoute_Disabled{Disabled: true}}
		if !perRoute.Disabled {
			pr.Override = &bufferv3.BufferPerRoute_Buffer{Buffer: &bufferv3.Buffer{MaxRequestBytes: wrapperspb.UInt32(perRoute.MaxRequestBytes)}}
		}
		a, err := toAny(pr)
		if err != nil {
			return nil, err
		}
		if vh.TypedPerFilterConfig == nil {
			vh.TypedPerFilterConfig = map[string]*anypb.Any{}
		}
		vh.TypedPerFilterConfig[bufferFilter] = a
	}
	n := len(tail) - 1 // the router
	return append(slices.Clone(tail[:n]), typedHTTPFilter(bufferFilter, cfg), tail[n]), nil
}
