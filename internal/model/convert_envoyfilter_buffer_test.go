package model

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// efBufferFilter is the HTTP_FILTER patch of the buffer form as Istio users
// write it, its max_request_bytes to be completed.
const efBufferFilter = `  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.buffer
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
          value:
`

// efBufferRoute is a VIRTUAL_HOST patch for the inbound virtual host of
// port 9080, its BufferPerRoute fields to be completed.
const efBufferRoute = `  - applyTo: VIRTUAL_HOST
    match: {context: SIDECAR_INBOUND, routeConfiguration: {vhost: {name: "inbound|http|9080"}}}
    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          envoy.filters.http.buffer:
            "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute
`

func TestEnvoyFilterRequestBuffers(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []RequestBuffer
		warns []string
	}{
		{"Istio's form, every inbound port", efHead + efBufferFilter + "            max_request_bytes: 1048576\n",
			[]RequestBuffer{{MaxRequestBytes: 1 << 20}}, nil},
		{"a per-port override and a port where buffering is disabled", efHead + efBufferFilter + "            maxRequestBytes: \"1048576\"\n" +
			efBufferRoute + "            disabled: true\n" + `  - applyTo: HTTP_ROUTE
    match: {context: SIDECAR_INBOUND, routeConfiguration: {portNumber: 8080, vhost: {route: {action: ANY}}}}
    patch:
      operation: MERGE
      value:
        typedPerFilterConfig:
          envoy.filters.http.buffer:
            "@type": type.googleapis.com/xds.type.v3.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute
            value: {buffer: {max_request_bytes: 2048}}
`, []RequestBuffer{
			{MaxRequestBytes: 1 << 20},
			{Port: 9080, PerRoute: true, Disabled: true},
			{Port: 8080, PerRoute: true, MaxRequestBytes: 2048},
		}, nil},
		{"Envoy's own form on one port; an override for another port does nothing", efHead + `  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND, listener: {portNumber: 8080}}
    patch:
      operation: INSERT_FIRST
      value:
        name: envoy.filters.http.buffer
        typedConfig:
          "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
          maxRequestBytes: 4096
` + efBufferRoute + "            buffer: {max_request_bytes: 10}\n", []RequestBuffer{{Port: 8080, MaxRequestBytes: 4096}}, []string{
			"EnvoyFilter default/ef: spec.configPatches: the buffer filter is inserted on port 8080 only: its per-route config for port 9080 does nothing, ignored",
		}},
		{"with the local rate limit in one EnvoyFilter; a large limit", efHead + efFilter + efEnforced +
			"            token_bucket: {max_tokens: 1, fill_interval: 1s}\n" +
			strings.TrimPrefix(efBufferFilter, "  configPatches:\n") + "            max_request_bytes: 134217728\n" +
			efBufferRoute + "            buffer: {max_request_bytes: 1024}\n",
			[]RequestBuffer{{MaxRequestBytes: 128 << 20}, {Port: 9080, PerRoute: true, MaxRequestBytes: 1024}}, []string{
				"EnvoyFilter default/ef: spec.configPatches[1].patch.value.typed_config.value.max_request_bytes: 134217728 bytes: every request being buffered may hold this much of the sidecar's memory",
			}},
		{"the later of two overrides for a port wins", efHead + efBufferFilter + "            max_request_bytes: 100\n" +
			efBufferRoute + "            disabled: true\n" + efBufferRoute + "            buffer: {max_request_bytes: 200}\n",
			[]RequestBuffer{{MaxRequestBytes: 100}, {Port: 9080, PerRoute: true, MaxRequestBytes: 200}}, []string{
				"EnvoyFilter default/ef: spec.configPatches: port 9080 has two buffer configs; the later patch is used",
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ef := decodeOne(t, tc.in).(*EnvoyFilter)
			warns, err := Validate(ef)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.warns, warns); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, ef.RequestBuffers()); diff != "" {
				t.Errorf("request buffers (-want +got):\n%s", diff)
			}
		})
	}
	rl := decodeOne(t, efHead+efFilter+efEnforced+"            token_bucket: {max_tokens: 1, fill_interval: 1s}\n").(*EnvoyFilter)
	if got := rl.RequestBuffers(); got != nil {
		t.Errorf("a local rate limit EnvoyFilter buffers %v", got)
	}
}

// TestEnvoyFilterBufferErrors checks that an invalid buffer form is refused
// with the field path of each mistake.
func TestEnvoyFilterBufferErrors(t *testing.T) {
	const pre = "x.yaml: EnvoyFilter default/ef: spec.configPatches"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"zero", efHead + efBufferFilter + "            max_request_bytes: 0\n", []string{
			pre + "[0].patch.value.typed_config.value.max_request_bytes: must be greater than 0",
		}},
		{"missing, unknown and removed fields", efHead + efBufferFilter + "            max_request_time: 5s\n            maxBytes: 10\n", []string{
			pre + "[0].patch.value.typed_config.value.maxBytes: unknown field of a Buffer (supported: max_request_bytes)",
			pre + "[0].patch.value.typed_config.value.max_request_time: not supported (not a field of Envoy's v3 Buffer)",
			pre + "[0].patch.value.typed_config.value.max_request_bytes: required (greater than 0)",
		}},
		{"not a number, too large", efHead + efBufferFilter + "            max_request_bytes: lots\n" +
			efBufferRoute + "            buffer: {max_request_bytes: 4294967296}\n", []string{
			pre + "[0].patch.value.typed_config.value.max_request_bytes: lots: want an integer 0..4294967295",
			pre + `[1].patch.value.typed_per_filter_config["envoy.filters.http.buffer"].buffer.max_request_bytes: 4294967296: want an integer 0..4294967295`,
		}},
		{"a TypedStruct without its type_url (a form seen in the wild)", efHead + strings.Replace(efBufferFilter,
			"          type_url: type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer\n", "", 1) +
			"            maxRequestBytes: 1024\n", []string{
			pre + "[0].patch.value.typed_config.type_url: <nil>: want type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
		}},
		{"BufferPerRoute as the filter's config", efHead + strings.Replace(efBufferFilter, "v3.Buffer\n", "v3.BufferPerRoute\n", 1) +
			"            disabled: true\n", []string{
			pre + "[0].patch.value.typed_config.type_url: type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute: want type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
		}},
		{"per-route: disabled false, both, neither, a Buffer type", efHead + efBufferFilter + "            max_request_bytes: 10\n" +
			efBufferRoute + "            disabled: false\n" +
			efBufferRoute + "            disabled: true\n            buffer: {max_request_bytes: 1}\n" +
			efBufferRoute + "            extra: 1\n" +
			strings.Replace(efBufferRoute, "v3.BufferPerRoute", "v3.Buffer", 1) + "            max_request_bytes: 1\n", []string{
			pre + `[1].patch.value.typed_per_filter_config["envoy.filters.http.buffer"].disabled: false: want true (Envoy requires it; leave BufferPerRoute out to keep buffering)`,
			pre + `[2].patch.value.typed_per_filter_config["envoy.filters.http.buffer"]: disabled and buffer are exclusive (Envoy's override oneof)`,
			pre + `[3].patch.value.typed_per_filter_config["envoy.filters.http.buffer"].extra: unknown field of a BufferPerRoute (want disabled or buffer)`,
			pre + `[3].patch.value.typed_per_filter_config["envoy.filters.http.buffer"]: want disabled: true or a buffer`,
			pre + `[4].patch.value.typed_per_filter_config["envoy.filters.http.buffer"]["@type"]: "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer": want type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute, or a TypedStruct (type.googleapis.com/udpa.type.v1.TypedStruct) of it`,
		}},
		{"a per-route config without the filter", efHead + efFilter + efEnforced + "            token_bucket: {max_tokens: 1, fill_interval: 1s}\n" +
			efBufferRoute + "            disabled: true\n", []string{
			pre + `[1].patch.value.typed_per_filter_config["envoy.filters.http.buffer"]: no HTTP_FILTER patch inserts envoy.filters.http.buffer: a typed_per_filter_config alone does nothing`,
		}},
		{"the filter twice, outbound, after the router", efHead + strings.NewReplacer("SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "INSERT_BEFORE", "INSERT_AFTER").Replace(efBufferFilter) +
			"            max_request_bytes: 10\n" + strings.TrimPrefix(efBufferFilter, "  configPatches:\n") + "            max_request_bytes: 20\n", []string{
			pre + `[0].match.context: "SIDECAR_OUTBOUND": only SIDECAR_INBOUND (or ANY) is supported: request bodies are buffered by the server's sidecar`,
			pre + `[0].patch.operation: "INSERT_AFTER": want INSERT_BEFORE (the router) or INSERT_FIRST: the filter must run before the router`,
			pre + ": 2 HTTP_FILTER patches: want exactly one inserting envoy.filters.http.buffer",
		}},
		{"inserted before another filter", efHead + strings.Replace(efBufferFilter, "envoy.filters.http.router", "envoy.filters.http.rbac", 1) +
			"            max_request_bytes: 10\n", []string{
			pre + `[0].match.listener.filterChain.filter.subFilter.name: "envoy.filters.http.rbac": the buffer filter can only be inserted before envoy.filters.http.router`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeAndValidate([]byte(tc.in), "x.yaml")
			if diff := cmp.Diff(tc.want, errorLines(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}
