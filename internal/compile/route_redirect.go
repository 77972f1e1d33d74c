package compile

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellis-mesh/trellis/internal/model"
)

// Envoy answers a direct response body of at most 4 KiB unless the
// RouteConfiguration raises the limit; Istio raises it to the 1 MiB its
// validation allows.
const (
	envoyDirectResponseBodyLimit = 4096
	maxDirectResponseBody        = 1 << 20
)

// redirectCode is Envoy's name for an HTTP redirect status; 0 means 301.
func redirectCode(code uint32) (routev3.RedirectAction_RedirectResponseCode, bool) {
	switch code {
	case 0, 301:
		return routev3.RedirectAction_MOVED_PERMANENTLY, true
	case 302:
		return routev3.RedirectAction_FOUND, true
	case 303:
		return routev3.RedirectAction_SEE_OTHER, true
	case 307:
		return routev3.RedirectAction_TEMPORARY_REDIRECT, true
	case 308:
		return routev3.RedirectAction_PERMANENT_REDIRECT, true
	}
	return 0, false
}

// redirectAction translates an HTTPRedirect as Istio's ApplyRedirect does
// for a sidecar: uri replaces the whole path, authority the host; a port
// (or derivePort FROM_REQUEST_PORT: the port the request was sent to, the
// listener's) replaces the port, except the scheme's default port, which is
// left out. It returns nil for a code Envoy cannot send (Validate rejects it).
func redirectAction(r *model.HTTPRedirect, listenerPort uint32) *routev3.RedirectAction {
	code, ok := redirectCode(r.RedirectCode)
	if !ok {
		return nil
	}
	ra := &routev3.RedirectAction{HostRedirect: r.Authority, ResponseCode: code}
	if r.URI != "" {
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: r.URI}
	}
	if r.Scheme != "" {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: r.Scheme}
	}
	switch {
	case r.Port != 0:
		ra.PortRedirect = r.Port
	case r.DerivePort == "FROM_REQUEST_PORT":
		ra.PortRedirect = listenerPort
	}
	scheme := r.Scheme
	if scheme == "" {
		scheme = "http" // a sidecar's outbound listener is plaintext
	}
	if scheme == "http" && ra.PortRedirect == 80 || scheme == "https" && ra.PortRedirect == 443 {
		ra.PortRedirect = 0
	}
	return ra
}

// directResponseAction translates an HTTPDirectResponse; the body is a
// string or base64 bytes. It returns nil for bytes that do not decode or a
// body over 1 MiB (Validate rejects both).
func directResponseAction(d *model.HTTPDirectResponse) *routev3.DirectResponseAction {
	dr := &routev3.DirectResponseAction{Status: d.Status}
	b := d.Body
	switch {
	case b == nil:
	case b.Bytes != "":
		raw, err := model.DecodeBodyBytes(b.Bytes)
		if err != nil || len(raw) > maxDirectResponseBody {
			return nil
		}
		dr.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: raw}}
	case b.String != "":
		if len(b.String) > maxDirectResponseBody {
			return nil
		}
		dr.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: b.String}}
	}
	return dr
}

// directResponseBodySize is the size of a direct response's body.
func directResponseBodySize(dr *routev3.DirectResponseAction) int {
	return len(dr.GetBody().GetInlineString()) + len(dr.GetBody().GetInlineBytes())
}
