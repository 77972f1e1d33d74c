package proxy

import (
	"net/http"
	"strconv"
	"strings"
)

// Values of x-trellis-reason for the route features' local replies.
const (
	reasonFaultAbort  = "fault_abort"
	reasonRateLimited = "rate_limited"
)

// proxyReply is a response the proxy writes itself: a direct response, a
// redirect, an injected abort, a refused request, or a proxy error. For a
// gRPC request it is sent as Envoy does: trailers-only, HTTP 200, with
// grpc-status (mapped from the HTTP status unless grpcStatus is set) and
// the body as grpc-message.
type proxyReply struct {
	code        int
	reason      string // x-trellis-reason; "" for none
	body        string
	contentType string // sent with a non-empty body
	nosniff     bool
	location    []byte
	// authenticate is the www-authenticate value of a jwt_authn 401.
	authenticate []byte
	grpc         bool
	grpcStatus   int // >= 0: the grpc-status to send; else mapped from code
	// extra is a filter's response_headers_to_add (the rate limit's),
	// applied after the route's response headers, as Envoy does.
	extra *headerMutation
}

// proxyError is the reply of an error the proxy answers (404, 503, ...):
// the reason as a plain-text body.
func proxyError(code int, reason string) proxyReply {
	body := reason
	if body == "" {
		body = http.StatusText(code)
	}
	return proxyReply{code: code, reason: reason, body: body + "\n", contentType: "text/plain; charset=utf-8", nosniff: true, grpcStatus: -1}
}

func (lr *proxyReply) status() int {
	if lr.grpc {
		return http.StatusOK
	}
	return lr.code
}

func (lr *proxyReply) grpcCode() int {
	if lr.grpcStatus >= 0 {
		return lr.grpcStatus
	}
	return grpcStatusForHTTP(lr.code)
}

// grpcMessage is the body as a grpc-message value (one line).
func (lr *proxyReply) grpcMessage(dst []byte) []byte {
	return appendPercentEncoded(dst, strings.TrimSuffix(lr.body, "\n"))
}

// writeLocalHTTP writes lr on the net/http path. mut (the route's response
// headers) and rl apply to the head as on forwarded responses.
func writeLocalHTTP(w http.ResponseWriter, lr *proxyReply, isHead bool, mut *headerMutation, rl *rlHeaders) {
	h := w.Header()
	if lr.grpc {
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(lr.grpcCode()))
		if lr.body != "" {
			h.Set("Grpc-Message", string(lr.grpcMessage(nil)))
		}
	} else if lr.body != "" {
		h.Set("Content-Type", lr.contentType)
		h.Set("Content-Length", strconv.Itoa(len(lr.body)))
	} else {
		h.Set("Content-Length", "0")
	}
	if lr.nosniff {
		h.Set("X-Content-Type-Options", "nosniff")
	}
	if lr.reason != "" {
		h.Set(headerReason, lr.reason)
	}
	if lr.location != nil {
		h.Set("Location", string(lr.location))
	}
	if lr.authenticate != nil {
		h.Set("Www-Authenticate", string(lr.authenticate))
	}
	if rw, ok := w.(*routeWriter); ok {
		// The wrapper applies the route's headers and rl at WriteHeader.
		rw.extra = lr.extra
	} else {
		mut.applyHTTP(h)
		lr.extra.applyHTTP(h)
		rl.setHTTP(h)
	}
	w.WriteHeader(lr.status())
	if !isHead && !lr.grpc && lr.body != "" {
		_, _ = w.Write([]byte(lr.body))
	}
}

// routeWriter applies a route's response header mutation and the request's
// x-ratelimit-* headers to the final response head on the net/http path,
// whoever writes it (the upstream's response through ReverseProxy, or a
// local reply), as Envoy applies them to every response of a routed
// request. Informational (1xx) heads pass through unchanged.
type routeWriter struct {
	http.ResponseWriter
	mut   *headerMutation
	extra *headerMutation
	rl    rlHeaders
	wrote bool
}

func (w *routeWriter) WriteHeader(code int) {
	if code >= 200 && !w.wrote {
		w.wrote = true
		h := w.Header()
		w.mut.applyHTTP(h)
		w.extra.applyHTTP(h)
		w.rl.setHTTP(h)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *routeWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer
// (flushes for streams, hijacking for upgrades).
func (w *routeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
