package demoapp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

const (
	// upstreamTimeout bounds one call to an upstream, through the sidecar.
	upstreamTimeout = 3 * time.Second
	// maxUpstreamBody bounds what the apps read from an upstream answer.
	maxUpstreamBody = 1 << 20
)

// propagatedHeaders are copied from the incoming request to upstream calls,
// as Istio's bookinfo does: the user (for header routing) and trace context.
var propagatedHeaders = []string{
	"End-User",
	"X-Request-Id",
	"Traceparent",
	"Tracestate",
	"B3",
	"X-B3-Traceid",
	"X-B3-Spanid",
	"X-B3-Parentspanid",
	"X-B3-Sampled",
	"X-B3-Flags",
}

// upstreamClient calls upstream services through the local sidecar's
// outbound listeners, over plain HTTP/1.1 with keep-alive.
type upstreamClient struct {
	cfg    config
	client *http.Client
}

func newUpstreamClient(cfg config) *upstreamClient {
	dialer := &net.Dialer{Timeout: upstreamTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 nil, // never an HTTP proxy from the environment: only the sidecar
		DialContext:           dialer.DialContext,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: upstreamTimeout,
		DisableCompression:    true,
	}
	return &upstreamClient{cfg: cfg, client: &http.Client{Transport: transport, Timeout: upstreamTimeout}}
}

// close releases idle connections.
func (u *upstreamClient) close() { u.client.CloseIdleConnections() }

// UpstreamError says why a call to an upstream failed: no address configured,
// a transport error, or an answer that was not 2xx.
type UpstreamError struct {
	Service string `json:"service"`
	// Status is the HTTP status code of the answer, 0 when there was none.
	Status int `json:"status,omitempty"`
	// Reason is the sidecar's x-trellis-reason header, when it gave one.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

func (e *UpstreamError) Error() string {
	var b strings.Builder
	b.WriteString(e.Service)
	b.WriteString(": ")
	if e.Status != 0 {
		fmt.Fprintf(&b, "HTTP %d %s", e.Status, http.StatusText(e.Status))
		if e.Reason != "" {
			fmt.Fprintf(&b, " (x-trellis-reason: %s)", e.Reason)
		}
		if e.Message != "" {
			b.WriteString(": ")
		}
	}
	b.WriteString(e.Message)
	return b.String()
}

// getJSON calls GET path on service through the sidecar, copying the
// propagated headers of in, and decodes a 2xx JSON answer into out. Any
// failure is an *UpstreamError.
func (u *upstreamClient) getJSON(ctx context.Context, service, path string, in http.Header, out any) error {
	addr, err := u.cfg.upstream(service)
	if err != nil {
		return &UpstreamError{Service: service, Message: err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return &UpstreamError{Service: service, Message: fmt.Sprintf("build request: %v", err)}
	}
	// The sidecar routes on the service name, as Istio's does on the Host header.
	req.Host = service
	req.Header.Set("Accept", "application/json")
	for _, h := range propagatedHeaders {
		if v := in.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return &UpstreamError{Service: service, Message: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		return &UpstreamError{Service: service, Status: resp.StatusCode, Message: fmt.Sprintf("read body: %v", err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &UpstreamError{
			Service: service,
			Status:  resp.StatusCode,
			Reason:  resp.Header.Get("X-Trellis-Reason"),
			Message: snippet(body),
		}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return &UpstreamError{Service: service, Status: resp.StatusCode, Message: fmt.Sprintf("decode JSON answer: %v", err)}
	}
	return nil
}

// snippet shortens an error body to one readable line.
func snippet(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	const max = 200
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
