package model

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// decodeOne decodes one valid document.
func decodeOne(t *testing.T, doc string) Object {
	t.Helper()
	objs, err := Decode([]byte(doc), "x.yaml")
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(objs) != 1 {
		t.Fatalf("got %d objects, want 1", len(objs))
	}
	return objs[0]
}

// TestFrontEndExamples applies the upstream examples unchanged.
func TestFrontEndExamples(t *testing.T) {
	data, err := os.ReadFile("testdata/frontend-examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, warns, err := DecodeAndValidate(data, "frontend-examples.yaml")
	if err != nil {
		t.Fatalf("DecodeAndValidate: %v", err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.Key().String())
	}
	want := []string{
		"TrafficSplit default/canary",
		"TrafficSplit default/foobar-rollout",
		"TrafficSplit default/ab-test",
		"ServiceProfile booksapp/books.booksapp.svc.cluster.local",
		"HTTPRoute faces/smiley-route",
		"HTTPRoute test/backend-router",
		"RateLimit default/ratings",
		"EnvoyFilter istio-system/filter-local-ratelimit-svc",
		"EnvoyFilter istio-system/filter-local-ratelimit-port",
	}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	wantWarns := []string{
		"TrafficSplit default/ab-test: spec.matches: HTTPRouteGroup matches are not implemented: this TrafficSplit is ignored (splitting every request would route traffic the split does not select)",
	}
	if diff := cmp.Diff(wantWarns, warns); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if refs := CheckReferences(objs); len(refs) != 0 {
		t.Errorf("CheckReferences: %q", refs)
	}
	for _, o := range objs {
		b, err := Marshal(o, "yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(b, "again.yaml"); err != nil {
			t.Errorf("%s does not survive a round trip: %v\n%s", o.Key(), err, b)
		}
	}
}

const (
	tsHead = "apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {name: s}\nspec:\n"
	spHead = "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: books.default.svc.cluster.local}\nspec:\n"
	gwHead = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n"
	rlHead = "apiVersion: trellis.dev/v1\nkind: RateLimit\nmetadata: {name: rl}\nspec:\n"
	efHead = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: ef}\nspec:\n"
	// efFilter is the HTTP_FILTER patch of the local rate limit form,
	// its typed_config value to be completed.
	efFilter = `  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          value:
            stat_prefix: rl
`
	efEnforced = `            filter_enabled: {default_value: {numerator: 100}}
            filter_enforced: {default_value: {numerator: 100}}
`
	gwParentRef = "  parentRefs: [{group: \"\", kind: Service, name: reviews, port: 9080}]\n"
)

// TestFrontEndErrors checks that invalid documents are rejected with the
// document and the field path named.
func TestFrontEndErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"split without backends", tsHead + "  service: website\n", []string{
			"x.yaml: TrafficSplit default/s: spec.backends: required",
		}},
		{"split quantity in v1alpha4", tsHead + "  service: website\n  backends: [{service: a, weight: 500m}]\n", []string{
			"x.yaml: TrafficSplit default/s: spec.backends[0].weight: want a whole number, got string",
		}},
		{"split bad quantity in v1alpha1", strings.Replace(tsHead, "v1alpha4", "v1alpha1", 1) + "  service: website\n  backends: [{service: a, weight: 5x}]\n", []string{
			`x.yaml: TrafficSplit default/s: spec.backends[0].weight: "5x" is not a non-negative quantity such as "500m" or "1"`,
		}},
		{"split all zero", tsHead + "  service: website\n  backends: [{service: a, weight: 0}, {service: b, weight: 0}]\n", []string{
			"x.yaml: TrafficSplit default/s: spec.backends: weights are all zero: no backend would get traffic",
		}},
		{"split backend not a service name", tsHead + "  service: website\n  backends: [{service: A_b, weight: 1}]\n", []string{
			`x.yaml: TrafficSplit default/s: spec.backends[0].service: "A_b" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`,
		}},
		{"profile negated path", spHead + "  routes:\n  - name: r\n    condition: {not: {pathRegex: /a}}\n", []string{
			`x.yaml: ServiceProfile default/books.default.svc.cluster.local: spec.routes[0].condition: not pathRegex "/a" cannot be expressed: RE2 has no negation`,
		}},
		{"profile two paths", spHead + "  routes:\n  - name: r\n    condition: {all: [{pathRegex: /a.*}, {pathRegex: /.*b}]}\n", []string{
			`x.yaml: ServiceProfile default/books.default.svc.cluster.local: spec.routes[0].condition: pathRegex "/a.*" and pathRegex "/.*b" must both match: their intersection cannot be written as one RE2 match`,
		}},
		{"profile empty condition and bad parts", spHead + "  routes:\n  - name: r\n    condition: {}\n  - name: r\n    condition: {pathRegex: \"(\"}\n    timeout: soon\n" +
			"    responseClasses: [{condition: {status: {min: 500, max: 400}}}]\n  retryBudget: {retryRatio: -1, minRetriesPerSecond: 1}\n", []string{
			"x.yaml: ServiceProfile default/books.default.svc.cluster.local: spec.routes[0].condition: one of pathRegex, method, all, any and not is required",
			`x.yaml: ServiceProfile default/books.default.svc.cluster.local: spec.routes[1].name: duplicate route "r" (also spec.routes[0])`,
			"x.yaml: ServiceProfile default/books.default.svc.cluster.local: spec.routes[1].condition.pathRegex: invalid RE2 regex \"(\": error parsing regexp: missing closing ): `(`",
			"x.yaml: ServiceProfile default/books.default.svc.cluster.local: spec.routes[1].responseClasses[0].condition.status: min 500 is greater than max 400",
			`x.yaml: ServiceProfile default/books.default.svc.cluster.local: spec.routes[1].timeout: invalid duration "soon": want e.g. "1.5s" or "100ms"`,
			"x.yaml: ServiceProfile default/books.default.svc.cluster.local: spec.retryBudget.retryRatio: must not be negative",
			"x.yaml: ServiceProfile default/books.default.svc.cluster.local: spec.retryBudget.ttl: required",
		}},
		{"profile name not an FQDN", strings.Replace(spHead, "books.default.svc.cluster.local", "Books!", 1) + "  routes: []\n", []string{
			`x.yaml: ServiceProfile default/Books!: metadata.name: "Books!" is not a service name or FQDN: "Books!" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`,
		}},
		{"route attached to a Gateway", gwHead + "  parentRefs: [{name: my-gateway}]\n  rules: [{backendRefs: [{name: reviews, port: 9080}]}]\n", []string{
			`x.yaml: HTTPRoute default/r: spec.parentRefs[0]: attached to Gateway "my-gateway": Trellis has no ingress gateway yet; attach the route to a Service (group "", kind Service)`,
		}},
		{"consumer route and sectionName", gwHead + "  parentRefs: [{kind: Service, group: \"\", name: a, namespace: other}, {kind: Service, group: \"\", name: b, sectionName: http}]\n  rules: [{backendRefs: [{name: b, port: 80}]}]\n", []string{
			`x.yaml: HTTPRoute default/r: spec.parentRefs[0].namespace: "other": a route for a Service of another namespace (a GAMMA consumer route) is not supported; put the route in namespace "other"`,
			"x.yaml: HTTPRoute default/r: spec.parentRefs[1].sectionName: not supported: select the Service port with port",
		}},
		{"route rule errors", gwHead + gwParentRef + `  rules:
  - matches: [{path: {type: Exact, value: /a}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}, statusCode: 305}
    backendRefs: [{name: reviews}]
  - matches: [{path: {type: Exact, value: /a}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}
    - type: RequestHeaderModifier
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: Auth, name: z}
    backendRefs: [{name: reviews, port: 9080, namespace: other}]
    timeouts: {request: 1.5s, backendRequest: 2s}
  - matches: [{path: {type: Regex, value: a}, method: BREW, headers: [{name: "a b", value: x}]}]
    backendRefs: [{name: reviews, port: 9080, weight: -1}]
    timeouts: {request: 1s, backendRequest: 2s}
`, []string{
			"x.yaml: HTTPRoute default/r: spec.rules[0].filters[0].requestRedirect.statusCode: 305 is not one of [301 302 303 307 308]",
			"x.yaml: HTTPRoute default/r: spec.rules[0].filters[0].requestRedirect.path.type: ReplacePrefixMatch in a RequestRedirect is not supported yet; use ReplaceFullPath",
			"x.yaml: HTTPRoute default/r: spec.rules[0].backendRefs: a RequestRedirect filter must not be used together with backendRefs",
			"x.yaml: HTTPRoute default/r: spec.rules[0].backendRefs[0].port: required for a Service backend",
			"x.yaml: HTTPRoute default/r: spec.rules[1].filters[1]: type RequestHeaderModifier needs its requestHeaderModifier field",
			"x.yaml: HTTPRoute default/r: spec.rules[1].filters[2].type: ExtensionRef filters are not supported",
			`x.yaml: HTTPRoute default/r: spec.rules[1].backendRefs[0].namespace: "other": a backend in another namespace needs a ReferenceGrant, which Trellis does not support`,
			`x.yaml: HTTPRoute default/r: spec.rules[1].timeouts.request: "1.5s" is not a Gateway API duration (e.g. "10s", "500ms", "1h30m")`,
			"x.yaml: HTTPRoute default/r: spec.rules[1].matches: a replacePrefixMatch rewrite needs exactly one PathPrefix match",
			"x.yaml: HTTPRoute default/r: spec.rules[2].backendRefs[0].weight: -1 out of range, want 0..1000000",
			"x.yaml: HTTPRoute default/r: spec.rules[2].timeouts.backendRequest: 2s is longer than the request timeout 1s",
			`x.yaml: HTTPRoute default/r: spec.rules[2].matches[0].headers[0].name: "a b" is not an HTTP header name`,
			`x.yaml: HTTPRoute default/r: spec.rules[2].matches[0].method: "BREW" is not one of [GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH]`,
			`x.yaml: HTTPRoute default/r: spec.rules[2].matches[0].path.type: "Regex" is not Exact, PathPrefix or RegularExpression`,
		}},
		{"rate limit without limits", rlHead + "  service: Ratings\n  port: 70000\n", []string{
			`x.yaml: RateLimit default/rl: spec.service: "Ratings" is not a service name or FQDN: "Ratings" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`,
			"x.yaml: RateLimit default/rl: spec.port: port 70000 out of range, want 1..65535",
			"x.yaml: RateLimit default/rl: spec: one of tokenBucket and routes is required",
		}},
		{"rate limit buckets", rlHead + "  service: ratings\n  tokenBucket: {maxTokens: 0, tokensPerFill: 0, fillInterval: 10ms}\n" +
			"  routes:\n  - match: [{uri: {regex: \"(\"}, sourceLabels: {app: x}}]\n  - tokenBucket: {maxTokens: 1}\n", []string{
			"x.yaml: RateLimit default/rl: spec.tokenBucket.maxTokens: must be at least 1",
			"x.yaml: RateLimit default/rl: spec.tokenBucket.tokensPerFill: must be at least 1",
			"x.yaml: RateLimit default/rl: spec.tokenBucket.fillInterval: 10ms is shorter than 50ms, the shortest interval Envoy's local rate limit accepts",
			"x.yaml: RateLimit default/rl: spec.routes[0].tokenBucket: required",
			"x.yaml: RateLimit default/rl: spec.routes[0].match[0].uri.regex: invalid RE2 regex \"(\": error parsing regexp: missing closing ): `(`",
			"x.yaml: RateLimit default/rl: spec.routes[0].match[0].sourceLabels: not supported in a RateLimit (the server's sidecar enforces it for every caller)",
			"x.yaml: RateLimit default/rl: spec.routes[1].tokenBucket.fillInterval: required",
		}},
		{"rate limit response headers", rlHead + "  service: ratings\n  tokenBucket: {maxTokens: 1, fillInterval: 1s}\n  responseHeadersToAdd:\n" +
			"  - {name: \":status\", value: x}\n  - {name: Transfer-Encoding, value: x}\n  - {name: \"a b\", value: \"x\\ny\"}\n" +
			"  - {name: host, value: x}\n  - {value: x, appendAction: APPEND}\n" + strings.Repeat("  - {name: x, value: v}\n", 6), []string{
			"x.yaml: RateLimit default/rl: spec.responseHeadersToAdd: 11 headers, at most 10 (Envoy's limit)",
			`x.yaml: RateLimit default/rl: spec.responseHeadersToAdd[0].name: pseudo-header ":status" cannot be added`,
			`x.yaml: RateLimit default/rl: spec.responseHeadersToAdd[1].name: hop-by-hop or framing header "Transfer-Encoding" cannot be added`,
			`x.yaml: RateLimit default/rl: spec.responseHeadersToAdd[2].name: "a b" is not an HTTP header name`,
			"x.yaml: RateLimit default/rl: spec.responseHeadersToAdd[2].value: control character 0xa at byte 1",
			`x.yaml: RateLimit default/rl: spec.responseHeadersToAdd[3].name: "host" cannot be added to a response`,
			"x.yaml: RateLimit default/rl: spec.responseHeadersToAdd[4].name: required",
			`x.yaml: RateLimit default/rl: spec.responseHeadersToAdd[4].appendAction: "APPEND" is not one of [APPEND_IF_EXISTS_OR_ADD ADD_IF_ABSENT OVERWRITE_IF_EXISTS_OR_ADD OVERWRITE_IF_EXISTS]`,
		}},
		{"EnvoyFilter response headers", efHead + efFilter + efEnforced + "            token_bucket: {max_tokens: 1, fill_interval: 1s}\n" + `            response_headers_to_add:
            - {header: {key: ":path", value: "%START_TIME%"}}
            - {header: {key: connection, raw_value: eA==}, append: "yes"}
            - {header: {value: x, extra: 1}, append: false, append_action: OVERWRITE_IF_EXISTS, keep_empty_value: 1}
            - {append_action: 9, header: {key: x, value: "a\u0000"}}
            - {append_action: PREPEND, header: {key: 7}, inline: true}
            - x
`, []string{
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[0].header.key: pseudo-header ":path" cannot be added`,
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[0].header.value: "%START_TIME%" uses a %VAR% formatter, not supported (write %% for a literal %)`,
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[1].append: want boolean, got string",
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[1].header.key: hop-by-hop or framing header "connection" cannot be added`,
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[1].header.raw_value: not supported: use value",
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[2].header.extra: unknown field of a HeaderValue",
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[2].header.key: required",
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[2].keep_empty_value: want boolean, got number",
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[2].append_action: cannot be set together with the deprecated append (Envoy rejects both)",
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[3].append_action: 9 is not one of [APPEND_IF_EXISTS_OR_ADD ADD_IF_ABSENT OVERWRITE_IF_EXISTS_OR_ADD OVERWRITE_IF_EXISTS] (0..3)",
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[3].header.value: control character 0x0 at byte 1",
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[4].append_action: "PREPEND" is not one of [APPEND_IF_EXISTS_OR_ADD ADD_IF_ABSENT OVERWRITE_IF_EXISTS_OR_ADD OVERWRITE_IF_EXISTS]`,
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[4].header.key: want string, got number",
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[4].inline: unknown field of a HeaderValueOption",
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add[5]: want an object, got string",
		}},
		{"other EnvoyFilter", efHead + "  configPatches:\n  - applyTo: CLUSTER\n    patch: {operation: ADD, value: {name: x}}\n", []string{
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[0].applyTo: "CLUSTER": only the local rate limit and buffer forms of EnvoyFilter are supported (HTTP_FILTER inserting envoy.filters.http.local_ratelimit or envoy.filters.http.buffer on SIDECAR_INBOUND, HTTP_ROUTE or VIRTUAL_HOST merging their typed_per_filter_config)`,
			"x.yaml: EnvoyFilter default/ef: spec.configPatches: no HTTP_FILTER patch inserts envoy.filters.http.local_ratelimit or envoy.filters.http.buffer: a typed_per_filter_config alone does nothing",
		}},
		{"other HTTP filter", efHead + strings.Replace(efFilter, "envoy.filters.http.local_ratelimit", "envoy.filters.http.lua", 1), []string{
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.name: "envoy.filters.http.lua": only envoy.filters.http.local_ratelimit and envoy.filters.http.buffer are supported`,
		}},
		{"outbound, after the router, partly enforced", efHead + strings.NewReplacer("SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "INSERT_BEFORE", "INSERT_AFTER").Replace(efFilter) +
			"            token_bucket: {max_tokens: 1, fill_interval: 1m}\n            filter_enabled: {default_value: {numerator: 50}}\n            descriptors: []\n", []string{
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[0].match.context: "SIDECAR_OUTBOUND": only SIDECAR_INBOUND (or ANY) is supported: local rate limits are enforced by the server's sidecar`,
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.operation: "INSERT_AFTER": want INSERT_BEFORE (the router) or INSERT_FIRST: the filter must run before the router`,
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.descriptors: not supported (supported: stat_prefix, token_bucket, filter_enabled, filter_enforced, response_headers_to_add)",
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.token_bucket.fill_interval: 1m: want a protobuf duration such as "1s" or "0.5s"`,
		}},
		{"partly enabled", efHead + efFilter + "            token_bucket: {max_tokens: 1, fill_interval: 1s}\n            filter_enabled: {default_value: {numerator: 50}}\n" +
			"            filter_enforced: {default_value: {numerator: 100}}\n", []string{
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.filter_enabled: 50%: only 100% (or 0%) is supported",
		}},
		{"route patch without bucket, bad vhost", efHead + efFilter + `  - applyTo: HTTP_ROUTE
    match:
      context: SIDECAR_INBOUND
      routeConfiguration: {vhost: {name: "outbound|http|80", route: {name: x}}}
    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          envoy.filters.http.local_ratelimit:
            "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            statPrefix: x
  targetRefs: [{kind: Service, name: x}]
`, []string{
			"x.yaml: EnvoyFilter default/ef: spec.targetRefs: not supported: select workloads with spec.workloadSelector",
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[1].match.routeConfiguration.vhost.name: "outbound|http|80": want the inbound virtual host "inbound|http|<port>"`,
			"x.yaml: EnvoyFilter default/ef: spec.configPatches[1].match.routeConfiguration.vhost.route.name: not supported: the limit applies to every route of the virtual host",
			`x.yaml: EnvoyFilter default/ef: spec.configPatches[1].patch.value.typed_per_filter_config["envoy.filters.http.local_ratelimit"].token_bucket: required in a per-route config`,
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
