package api

import (
	"context"
	"net/http"
	"net/url"
)

// ConfigDump returns the configuration the control plane last published
// for a workload's sidecar, as an Envoy /config_dump (JSON). The sidecar's
// own /config_dump shows what it applied; this is what it was sent.
func (c *Client) ConfigDump(ctx context.Context, namespace, name string) ([]byte, error) {
	var out []byte
	err := c.do(ctx, http.MethodGet, "/v1/xds/"+url.PathEscape(namespace)+"/"+url.PathEscape(name), "", nil, &out)
	return out, err
}
