package model

import "slices"

// Names of the buffer form of EnvoyFilter: envoy.filters.http.buffer with
// its Buffer config, and BufferPerRoute in a typed_per_filter_config.
const (
	bufferFilter       = "envoy.filters.http.buffer"
	bufferType         = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
	bufferPerRouteType = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute"
)

// LargeRequestBuffer is the max_request_bytes above which apply warns:
// every request being buffered may hold that much of the sidecar's memory.
const LargeRequestBuffer = 64 << 20

// RequestBuffer is request buffering an EnvoyFilter configures with
// envoy.filters.http.buffer: the server's sidecar reads a request's whole
// body before forwarding it (with a Content-Length), and answers 413 to a
// body larger than MaxRequestBytes.
type RequestBuffer struct {
	// Port is the inbound port, 0 for every inbound HTTP port of the
	// workloads the EnvoyFilter selects.
	Port uint32
	// PerRoute: from an HTTP_ROUTE or VIRTUAL_HOST patch (Envoy's
	// BufferPerRoute on the port's virtual host). It overrides the filter's
	// own config on Port.
	PerRoute bool
	// MaxRequestBytes is the largest body buffered; > 0 unless Disabled.
	MaxRequestBytes uint32
	// Disabled (PerRoute only): bodies on Port are not buffered.
	Disabled bool
}

// RequestBuffers returns the request buffering the EnvoyFilter configures:
// at most one entry that is not PerRoute (the filter itself, on Port or on
// every port), and per-route overrides, at most one per port, each on a
// port the filter is inserted on. nil when the EnvoyFilter is invalid or
// does not insert the buffer filter.
func (e *EnvoyFilter) RequestBuffers() []RequestBuffer {
	v := &validator{doc: e.Key().String()}
	out := v.envoyFilter(&e.Spec)
	if len(v.errs) > 0 {
		return nil
	}
	return out.buffers
}

// efBufferConfig reads the typed_config of an HTTP_FILTER patch inserting
// the buffer filter: a Buffer.
func (v *validator) efBufferConfig(p string, raw any) (RequestBuffer, bool) {
	body, bp, ok := v.efTypedBody(p, raw, bufferType)
	if !ok {
		return RequestBuffer{}, false
	}
	n, ok := v.efBuffer(bp, body)
	return RequestBuffer{MaxRequestBytes: n}, ok
}

// efBufferPerRoute reads a typed_per_filter_config entry of the buffer
// filter: a BufferPerRoute, either disabled (true) or a Buffer.
func (v *validator) efBufferPerRoute(p string, raw any) (RequestBuffer, bool) {
	body, bp, ok := v.efTypedBody(p, raw, bufferPerRouteType)
	if !ok {
		return RequestBuffer{}, false
	}
	errs := len(v.errs)
	var rb RequestBuffer
	set := 0
	for _, k := range sortedKeys(body) {
		kp := keyPath(bp, k)
		switch snakeCase(k) {
		case "disabled":
			set++
			if b, ok := body[k].(bool); !ok || !b {
				v.errf(kp, "%v: want true (Envoy requires it; leave BufferPerRoute out to keep buffering)", body[k])
			}
			rb.Disabled = true
		case "buffer":
			set++
			m, ok := body[k].(map[string]any)
			if !ok {
				v.errf(kp, "want an object, got %s", jsonKind(body[k]))
				continue
			}
			rb.MaxRequestBytes, _ = v.efBuffer(kp, m)
		default:
			v.errf(kp, "unknown field of a BufferPerRoute (want disabled or buffer)")
		}
	}
	switch set {
	case 0:
		v.errf(bp, "want disabled: true or a buffer")
	case 2:
		v.errf(bp, "disabled and buffer are exclusive (Envoy's override oneof)")
	}
	return rb, len(v.errs) == errs
}

// efBuffer reads an envoy.extensions.filters.http.buffer.v3.Buffer and
// returns its max_request_bytes.
func (v *validator) efBuffer(p string, m map[string]any) (uint32, bool) {
	errs := len(v.errs)
	var n uint32
	for _, k := range sortedKeys(m) {
		kp := keyPath(p, k)
		switch snakeCase(k) {
		case "max_request_bytes":
			u, ok := v.protoUint32(kp, m[k])
			switch {
			case !ok:
			case u == 0:
				v.errf(kp, "must be greater than 0")
			case u > LargeRequestBuffer:
				v.warnf(kp, "%d bytes: every request being buffered may hold this much of the sidecar's memory", u)
			}
			n = u
		case "max_request_time":
			v.errf(kp, "not supported (not a field of Envoy's v3 Buffer)")
		default:
			v.errf(kp, "unknown field of a Buffer (supported: max_request_bytes)")
		}
	}
	if _, key := lookup(m, "max_request_bytes"); key == "" {
		v.errf(p+".max_request_bytes", "required (greater than 0)")
	}
	return n, len(v.errs) == errs
}

// efBuffers keeps the last config of each port (filter and per-route
// apart), as later patches override earlier ones in Envoy, and drops a
// per-route config of a port the filter is not inserted on (it does
// nothing there), with warnings.
func (v *validator) efBuffers(in []RequestBuffer) []RequestBuffer {
	var out []RequestBuffer
	for _, b := range in {
		i := slices.IndexFunc(out, func(o RequestBuffer) bool { return o.Port == b.Port && o.PerRoute == b.PerRoute })
		if i >= 0 {
			v.warnf("spec.configPatches", "port %d has two buffer configs; the later patch is used", b.Port)
			out[i] = b
			continue
		}
		out = append(out, b)
	}
	f := slices.IndexFunc(out, func(o RequestBuffer) bool { return !o.PerRoute })
	if f < 0 {
		return nil
	}
	filterPort := out[f].Port
	return slices.DeleteFunc(out, func(o RequestBuffer) bool {
		if o.PerRoute && filterPort != 0 && o.Port != 0 && o.Port != filterPort {
			v.warnf("spec.configPatches", "the buffer filter is inserted on port %d only: its per-route config for port %d does nothing, ignored", filterPort, o.Port)
			return true
		}
		return false
	})
}
