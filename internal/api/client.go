package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/trellis-mesh/trellis/internal/model"
)

// Client calls the admin API.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client for the admin API at base ("http://127.0.0.1:15080").
// token is sent as "Authorization: Bearer": a sidecar's join token, or the
// operator's admin token (TRELLIS_ADMIN_TOKEN; "" when the control plane
// has none and trusts its loopback listener).
func NewClient(base, token string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{
		base:  strings.TrimRight(base, "/"),
		token: token,
		http:  &http.Client{Timeout: 10 * time.Second},
	}
}

// Base returns the admin API URL.
func (c *Client) Base() string { return c.base }

// StatusError is a non-2xx answer.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return e.Message }

// IsNotFound reports whether err is a 404 from the admin API.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

func (c *Client) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("build request %s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("control plane at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	return c.do(ctx, method, path, "application/json", body, out)
}

// Apply sends documents (YAML or JSON, several separated by ---). With dryRun
// the control plane validates and stores nothing.
func (c *Client) Apply(ctx context.Context, data []byte, source string, dryRun bool) (*ApplyResponse, error) {
	q := url.Values{"source": {source}}
	if dryRun {
		q.Set("dryRun", "true")
	}
	var out ApplyResponse
	err := c.do(ctx, http.MethodPost, "/v1/apply?"+q.Encode(), "application/yaml", bytes.NewReader(data), &out)
	return &out, err
}

// Get returns the stored objects of kind as JSON (one object when name is set, else a list).
func (c *Client) Get(ctx context.Context, kind, namespace, name string) ([]byte, error) {
	path := "/v1/config/" + url.PathEscape(kind)
	if name != "" {
		path += "/" + url.PathEscape(namespace) + "/" + url.PathEscape(name)
	}
	var out []byte
	err := c.do(ctx, http.MethodGet, path, "", nil, &out)
	return out, err
}

// Delete removes one object.
func (c *Client) Delete(ctx context.Context, kind, namespace, name string) error {
	path := "/v1/config/" + url.PathEscape(kind) + "/" + url.PathEscape(namespace) + "/" + url.PathEscape(name)
	return c.do(ctx, http.MethodDelete, path, "", nil, nil)
}

// Status returns every workload and its sync state.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var out Status
	return &out, c.doJSON(ctx, http.MethodGet, "/v1/status", nil, &out)
}

// CreateToken issues a join token for sidecars.
func (c *Client) CreateToken(ctx context.Context) (string, error) {
	var out TokenResponse
	err := c.doJSON(ctx, http.MethodPost, "/v1/tokens", struct{}{}, &out)
	return out.Token, err
}

// PutMesh records the running mesh's name and entry page.
func (c *Client) PutMesh(ctx context.Context, m MeshInfo) error {
	return c.doJSON(ctx, http.MethodPut, "/v1/mesh", m, nil)
}

// Info returns what a sidecar needs to join.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var out Info
	return &out, c.doJSON(ctx, http.MethodGet, "/v1/info", nil, &out)
}

// Register registers (or updates) a workload; it needs the join token.
func (c *Client) Register(ctx context.Context, w *model.Workload) (*RegisterResponse, error) {
	var out RegisterResponse
	return &out, c.doJSON(ctx, http.MethodPost, "/v1/workloads", w, &out)
}

// Heartbeat tells the control plane the workload is alive and whether it is ready.
func (c *Client) Heartbeat(ctx context.Context, namespace, name string, ready bool) error {
	path := "/v1/workloads/" + url.PathEscape(namespace) + "/" + url.PathEscape(name) + "/heartbeat"
	return c.doJSON(ctx, http.MethodPost, path, HeartbeatRequest{Ready: ready}, nil)
}

// Deregister removes a workload: its endpoints are drained from every proxy.
func (c *Client) Deregister(ctx context.Context, namespace, name string) error {
	path := "/v1/workloads/" + url.PathEscape(namespace) + "/" + url.PathEscape(name)
	return c.do(ctx, http.MethodDelete, path, "", nil, nil)
}

// Sign asks the CA to sign a CSR for a registered workload.
func (c *Client) Sign(ctx context.Context, req CertificateRequest) (*CertificateResponse, error) {
	var out CertificateResponse
	return &out, c.doJSON(ctx, http.MethodPost, "/v1/certificates", req, &out)
}
