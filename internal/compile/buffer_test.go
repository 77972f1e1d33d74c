package compile

import (
	"fmt"
	"testing"

	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// bufferDoc is an EnvoyFilter in ns buffering the inbound ports of the
// workloads labelled app, at most max bytes (on port only, when set), with
// per-route configs: "" none, "off" disabled, else a limit; for the
// virtual host of routePort ("" every port).
func bufferDoc(name, ns, app, port string, max int, perRoute, routePort string) string {
	listener := ""
	if port != "" {
		listener = ", listener: {portNumber: " + port + "}"
	}
	doc := fmt.Sprintf(`apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: %s, namespace: %s}
spec:
  workloadSelector: {labels: {app: %s}}
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND%s}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.buffer
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
          max_request_bytes: %d
`, name, ns, app, listener, max)
	if perRoute == "" {
		return doc
	}
	rc := "{}"
	if routePort != "" {
		rc = `{vhost: {name: "inbound|http|` + routePort + `"}}`
	}
	override := "disabled: true"
	if perRoute != "off" {
		override = "buffer: {max_request_bytes: " + perRoute + "}"
	}
	return doc + fmt.Sprintf(`  - applyTo: VIRTUAL_HOST
    match: {context: SIDECAR_INBOUND, routeConfiguration: %s}
    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          envoy.filters.http.buffer:
            "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute
            %s
`, rc, override)
}

// inboundBuffers describes, per inbound HTTP listener, its buffer filter
// and the virtual host's override: "-" no buffer filter, else
// "max[/override]"; the filter must come right before the router.
func inboundBuffers(t *testing.T, set *resources.Set) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, l := range set.Listeners {
		var hcm hcmv3.HttpConnectionManager
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
			continue // tcp_proxy
		}
		out[name] = "-"
		fs := hcm.GetHttpFilters()
		for i, f := range fs {
			if f.GetName() != bufferFilter {
				continue
			}
			if i != len(fs)-2 || fs[i+1].GetName() != routerFilter {
				t.Errorf("%s: the buffer filter is http_filters[%d] of %d, want the one before the router", name, i, len(fs))
			}
			var b bufferv3.Buffer
			if err := f.GetTypedConfig().UnmarshalTo(&b); err != nil {
				t.Fatal(err)
			}
			out[name] = fmt.Sprint(b.GetMaxRequestBytes().GetValue())
			cfg := hcm.GetRouteConfig().GetVirtualHosts()[0].GetTypedPerFilterConfig()[bufferFilter]
			if cfg == nil {
				continue
			}
			var pr bufferv3.BufferPerRoute
			if err := cfg.UnmarshalTo(&pr); err != nil {
				t.Fatal(err)
			}
			if pr.GetDisabled() {
				out[name] += "/off"
			} else {
				out[name] += fmt.Sprintf("/%d", pr.GetBuffer().GetMaxRequestBytes().GetValue())
			}
		}
	}
	return out
}

// TestRequestBufferPrecedence checks which buffering each inbound HTTP port
// of a-0 gets.
func TestRequestBufferPrecedence(t *testing.T) {
	tests := []struct {
		name string
		docs []string
		want map[string]string
	}{
		{"none", nil, map[string]string{"inbound|80": "-", "inbound|81": "-"}},
		{"every port", []string{bufferDoc("ef", "default", "a", "", 1024, "", "")},
			map[string]string{"inbound|80": "1024", "inbound|81": "1024"}},
		{"one port", []string{bufferDoc("ef", "default", "a", "81", 1024, "", "")},
			map[string]string{"inbound|80": "-", "inbound|81": "1024"}},
		{"disabled on one port", []string{bufferDoc("ef", "default", "a", "", 1024, "off", "80")},
			map[string]string{"inbound|80": "1024/off", "inbound|81": "1024"}},
		{"overridden on every port", []string{bufferDoc("ef", "default", "a", "", 1024, "10", "")},
			map[string]string{"inbound|80": "1024/10", "inbound|81": "1024/10"}},
		{"the workload's namespace before the root namespace",
			[]string{bufferDoc("a", model.IstioRootNamespace, "a", "", 9, "", ""), bufferDoc("b", "default", "a", "", 3, "", "")},
			map[string]string{"inbound|80": "3", "inbound|81": "3"}},
		{"the first by name; another filter for a port it does not buffer",
			[]string{bufferDoc("b", "default", "a", "", 2, "", ""), bufferDoc("a", "default", "a", "80", 1, "off", "")},
			map[string]string{"inbound|80": "1/off", "inbound|81": "2"}},
		{"an EnvoyFilter selecting other workloads", []string{bufferDoc("ef", "default", "b", "", 1024, "", "")},
			map[string]string{"inbound|80": "-", "inbound|81": "-"}},
		{"an invalid EnvoyFilter does nothing", []string{bufferDoc("invalid", "default", "a", "", 7, "", "")},
			map[string]string{"inbound|80": "-", "inbound|81": "-"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := &Input{}
			for _, d := range append([]string{rlWorkload}, tc.docs...) {
				objs, err := model.Decode([]byte(d), "x.yaml")
				if err != nil {
					t.Fatal(err)
				}
				in.Add(objs[0])
			}
			for _, ef := range in.EnvoyFilters {
				if ef.Name == "invalid" { // Decode refuses it: made invalid afterwards
					ef.Spec.ConfigPatches[0].Patch.Value["typed_config"].(map[string]any)["max_request_bytes"] = 0.0
				}
			}
			set, err := Proxy(in, "a-0")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, inboundBuffers(t, set)); diff != "" {
				t.Errorf("inbound buffering (-want +got):\n%s", diff)
			}
		})
	}
}
