package model

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The actions and policies of a VirtualService http[] rule: redirect,
// directResponse, rewrite, header operations, retries, fault and mirrors,
// checked as Istio's validation does.

// redirect checks an HTTPRedirect: Envoy can answer 301, 302, 303, 307 and 308 only.
func (v *validator) redirect(p string, r *HTTPRedirect) {
	if r == nil {
		return
	}
	if r.URI == "" && r.Authority == "" && r.Scheme == "" && r.Port == 0 && r.DerivePort == "" {
		v.errf(p, "one of uri, authority, scheme, port or derivePort is required")
	}
	switch c := r.RedirectCode; c {
	case 0, 301, 302, 303, 307, 308:
	default:
		v.errf(p+".redirectCode", "%d is not a redirect status Envoy can answer (301, 302, 303, 307 or 308)", c)
	}
	if r.Scheme != "" && r.Scheme != "http" && r.Scheme != "https" {
		v.errf(p+".scheme", "%q is not http or https", r.Scheme)
	}
	v.port(p+".port", r.Port, false)
	switch d := r.DerivePort; {
	case d != "" && d != "FROM_PROTOCOL_DEFAULT" && d != "FROM_REQUEST_PORT":
		v.errf(p+".derivePort", "%q is not FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT", d)
	case d != "" && r.Port != 0:
		v.errf(p+".derivePort", "port and derivePort are mutually exclusive")
	}
}

// maxDirectResponseBody is the largest directResponse body Istio accepts.
const maxDirectResponseBody = 1 << 20

func (v *validator) directResponse(p string, d *HTTPDirectResponse) {
	if d == nil {
		return
	}
	if d.Status < 200 || d.Status > 599 {
		v.errf(p+".status", "%d is not an HTTP status (200..599)", d.Status)
	}
	b := d.Body
	if b == nil {
		return
	}
	size := len(b.String)
	switch {
	case b.String != "" && b.Bytes != "":
		v.errf(p+".body", "string and bytes are mutually exclusive")
	case b.Bytes != "":
		raw, err := DecodeBodyBytes(b.Bytes)
		if err != nil {
			v.errf(p+".body.bytes", "%v", err)
		}
		size = len(raw)
	}
	if size > maxDirectResponseBody {
		v.errf(p+".body", "%d bytes, larger than the 1 MiB limit", size)
	}
}

// DecodeBodyBytes decodes a directResponse body's bytes: base64, as the
// JSON form of a protobuf bytes field (standard or URL alphabet, padded or not).
func DecodeBodyBytes(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("not base64")
}

func (v *validator) rewrite(p string, r *HTTPRewrite) {
	if r == nil {
		return
	}
	rr := r.URIRegexRewrite
	switch {
	case r.URI != "" && rr != nil:
		v.errf(p, "uri and uriRegexRewrite are mutually exclusive")
	case r.URI == "" && rr == nil && r.Authority == "":
		v.errf(p, "one of uri, uriRegexRewrite or authority is required")
	}
	if rr != nil {
		if rr.Match == "" {
			v.errf(p+".uriRegexRewrite.match", "required")
		} else {
			v.regex(p+".uriRegexRewrite.match", rr.Match)
		}
		if rr.Rewrite == "" {
			v.errf(p+".uriRegexRewrite.rewrite", "required")
		}
	}
}

// isAuthorityHeader reports whether a header operation on name rewrites the authority.
func isAuthorityHeader(name string) bool {
	return strings.EqualFold(name, "host") || strings.EqualFold(name, ":authority")
}

// headerOperations checks header names and values: a request's set and add
// may name the authority (host, :authority), which rewrites it; no other
// pseudo-header may be touched, and values hold no control characters.
func (v *validator) headerOperations(p string, h *Headers) {
	if h == nil {
		return
	}
	check := func(p string, ops *HeaderOperations, request bool) {
		if ops == nil {
			return
		}
		for _, f := range []struct {
			name string
			m    map[string]string
		}{{"set", ops.Set}, {"add", ops.Add}} {
			for _, k := range sortedKeys(f.m) {
				kp := keyPath(p+"."+f.name, k)
				switch {
				case k == "":
					v.errf(kp, "header name must not be empty")
				case request && isAuthorityHeader(k):
				case strings.HasPrefix(k, ":") || strings.EqualFold(k, "host"):
					v.errf(kp, "header %q cannot be modified", k)
				}
				if strings.ContainsFunc(f.m[k], func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
					v.errf(kp, "value contains a control character")
				}
			}
		}
		for i, k := range ops.Remove {
			ip := fmt.Sprintf("%s.remove[%d]", p, i)
			switch {
			case k == "":
				v.errf(ip, "header name must not be empty")
			case strings.HasPrefix(k, ":") || strings.EqualFold(k, "host"):
				v.errf(ip, "header %q cannot be removed", k)
			}
		}
	}
	check(p+".request", h.Request, true)
	check(p+".response", h.Response, false)
}

// authorityOnce checks the authority is rewritten in one place at most:
// rewrite.authority, or a host/:authority header in request set or add.
func (v *validator) authorityOnce(p string, rw *HTTPRewrite, h *Headers) {
	var where []string
	if rw != nil && rw.Authority != "" {
		where = append(where, p+".rewrite.authority")
	}
	if h != nil && h.Request != nil {
		for _, f := range []struct {
			name string
			m    map[string]string
		}{{"set", h.Request.Set}, {"add", h.Request.Add}} {
			for _, k := range sortedKeys(f.m) {
				if isAuthorityHeader(k) {
					where = append(where, keyPath(p+".headers.request."+f.name, k))
				}
			}
		}
	}
	if len(where) > 1 {
		v.errf(where[1], "the authority is already rewritten by %s", where[0])
	}
}

// retryOnConditions are the retryOn entries Istio accepts: Envoy's
// x-envoy-retry-on and x-envoy-retry-grpc-on conditions.
var retryOnConditions = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
	"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

// ParseRetryOn splits a retryOn list as Istio does: HTTP status codes go to
// codes, conditions to conditions (in order); unknown entries are returned
// in bad (Validate rejects them).
func ParseRetryOn(s string) (conditions []string, codes []uint32, bad []string) {
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if n, err := strconv.Atoi(e); err == nil && http.StatusText(n) != "" {
			codes = append(codes, uint32(n))
			continue
		}
		if slices.Contains(retryOnConditions, e) {
			conditions = append(conditions, e)
			continue
		}
		bad = append(bad, e)
	}
	return conditions, codes, bad
}

func (v *validator) retries(p string, r *HTTPRetry) {
	if r == nil {
		return
	}
	if r.Attempts < 0 {
		v.errf(p+".attempts", "must not be negative")
	}
	if r.Attempts == 0 && (r.PerTryTimeout != "" || r.RetryOn != "" || r.RetryRemoteLocalities != nil) {
		v.errf(p+".attempts", "0 disables retries, but perTryTimeout, retryOn or retryRemoteLocalities is set")
	}
	v.positiveDuration(p+".perTryTimeout", r.PerTryTimeout)
	v.positiveDuration(p+".backoff", r.Backoff)
	if r.RetryOn != "" {
		_, _, bad := ParseRetryOn(r.RetryOn)
		for _, b := range bad {
			v.errf(p+".retryOn", "%q is not a retry condition (%s) or an HTTP status code", b, strings.Join(retryOnConditions, ", "))
		}
	}
	if r.RetryRemoteLocalities != nil && *r.RetryRemoteLocalities {
		v.notImplemented(p + ".retryRemoteLocalities")
	}
}

// positiveDuration checks an optional duration is at least 1ms, as Istio requires.
func (v *validator) positiveDuration(p string, d Duration) {
	if d == "" {
		return
	}
	t, err := ParseDuration(d)
	switch {
	case err != nil:
		v.errf(p, "%v", err)
	case t < time.Millisecond:
		v.errf(p, "%s is shorter than 1ms", d)
	}
}

// grpcStatusCodes are the gRPC status names (google.golang.org/grpc/codes) by code.
var grpcStatusCodes = []string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// GRPCStatusCode returns the code of a gRPC status name ("UNAVAILABLE" → 14).
func GRPCStatusCode(name string) (uint32, bool) {
	i := slices.Index(grpcStatusCodes, name)
	return uint32(i), i >= 0
}

// fault checks an HTTPFaultInjection as Istio does. A fault without a
// percentage affects no request (Istio's and Envoy's default): warned.
func (v *validator) fault(p string, f *HTTPFaultInjection) {
	if f == nil {
		return
	}
	if f.Delay == nil && f.Abort == nil {
		v.errf(p, "one of delay and abort is required")
	}
	if d := f.Delay; d != nil {
		dp := p + ".delay"
		switch {
		case d.ExponentialDelay != "":
			v.errf(dp+".exponentialDelay", "not supported (as in Istio), use fixedDelay")
		case d.FixedDelay == "":
			v.errf(dp+".fixedDelay", "required")
		}
		v.positiveDuration(dp+".fixedDelay", d.FixedDelay)
		v.faultPercent(dp, d.Percentage, d.Percent, "delayed")
	}
	if a := f.Abort; a != nil {
		ap := p + ".abort"
		switch {
		case a.HTTP2Error != "":
			v.errf(ap+".http2Error", "not supported (as in Istio), use httpStatus or grpcStatus")
		case a.HTTPStatus != 0 && a.GRPCStatus != "":
			v.errf(ap, "httpStatus and grpcStatus are mutually exclusive")
		case a.HTTPStatus != 0:
			if a.HTTPStatus < 200 || a.HTTPStatus > 599 {
				v.errf(ap+".httpStatus", "%d is not an HTTP status (200..599)", a.HTTPStatus)
			}
		case a.GRPCStatus != "":
			if _, ok := GRPCStatusCode(a.GRPCStatus); !ok {
				v.errf(ap+".grpcStatus", "%q is not a gRPC status name (e.g. UNAVAILABLE, NOT_FOUND)", a.GRPCStatus)
			}
		default:
			v.errf(ap, "one of httpStatus and grpcStatus is required")
		}
		v.faultPercent(ap, a.Percentage, 0, "aborted")
	}
}

// faultPercent checks a fault's percentage (or the deprecated integer percent of a delay).
func (v *validator) faultPercent(p string, pc *Percent, deprecated int32, verb string) {
	v.percent(p+".percentage", pc)
	switch {
	case deprecated < 0 || deprecated > 100:
		v.errf(p+".percent", "%d out of range, want 0..100", deprecated)
	case pc != nil && deprecated != 0:
		v.errf(p+".percent", "percent and percentage are mutually exclusive")
	case pc == nil && deprecated == 0:
		v.warnf(p+".percentage", "not set: no request is %s (as in Istio)", verb)
	}
}

// mirrors checks mirror (with mirrorPercentage or the deprecated mirrorPercent) and mirrors[].
func (v *validator) mirrors(p string, r *HTTPRoute) {
	if r.Mirror != nil {
		v.destination(p+".mirror", r.Mirror)
	}
	for j := range r.Mirrors {
		mp := fmt.Sprintf("%s.mirrors[%d]", p, j)
		v.destination(mp+".destination", &r.Mirrors[j].Destination)
		v.percent(mp+".percentage", r.Mirrors[j].Percentage)
	}
	if r.MirrorPercent != nil && *r.MirrorPercent > 100 {
		v.errf(p+".mirrorPercent", "%d out of range, want 0..100", *r.MirrorPercent)
	}
	if r.MirrorPercent != nil && r.MirrorPercentage != nil {
		v.errf(p+".mirrorPercent", "mirrorPercent and mirrorPercentage are mutually exclusive")
	}
	v.percent(p+".mirrorPercentage", r.MirrorPercentage)
	if r.Mirror == nil && (r.MirrorPercent != nil || r.MirrorPercentage != nil) {
		v.warnf(p+".mirrorPercentage", "has no effect without mirror, ignored")
	}
}
