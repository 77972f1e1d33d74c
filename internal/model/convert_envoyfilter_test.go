package model

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func u32(n uint32) *uint32 { return &n }

func TestEnvoyFilterRateLimits(t *testing.T) {
	data, err := os.ReadFile("testdata/frontend-examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(data, "frontend-examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]RateLimitSpec{}
	for _, o := range objs {
		if ef, ok := o.(*EnvoyFilter); ok {
			got[ef.Name] = ef.RateLimits()
		}
	}
	bucket := &TokenBucket{MaxTokens: 4, TokensPerFill: u32(4), FillInterval: "60s"}
	want := map[string][]RateLimitSpec{
		"filter-local-ratelimit-svc": {{TokenBucket: bucket, ResponseHeadersToAdd: []RateLimitHeader{
			{Name: "x-local-rate-limit", Value: "true", AppendAction: OverwriteIfExistsOrAdd}, // append: false
		}}},
		"filter-local-ratelimit-port": {{Port: 9080, TokenBucket: bucket}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Istio's examples (-want +got):\n%s", diff)
	}

	tests := []struct {
		name  string
		in    string
		want  []RateLimitSpec
		warns []string
	}{
		{"Envoy's own form, camelCase, a port, and a per-port bucket", efHead + `  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        portNumber: 8080
        filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typedConfig:
          "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          statPrefix: x
          tokenBucket: {maxTokens: "10", fillInterval: 0.5s}
          filterEnabled: {defaultValue: {numerator: 10000, denominator: TEN_THOUSAND}}
          filterEnforced: {defaultValue: {numerator: 1000000, denominator: MILLION}}
          enableXRatelimitHeaders: DRAFT_VERSION_03
  - applyTo: VIRTUAL_HOST
    match:
      routeConfiguration: {portNumber: 9090}
    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          envoy.filters.http.local_ratelimit:
            "@type": type.googleapis.com/xds.type.v3.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: vhost
              token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 1s}
              filter_enabled: {default_value: {numerator: 100}}
              filter_enforced: {default_value: {numerator: 100}}
`, []RateLimitSpec{
			{Port: 8080, TokenBucket: &TokenBucket{MaxTokens: 10, FillInterval: "0.5s"}},
			{Port: 9090, TokenBucket: &TokenBucket{MaxTokens: 1, TokensPerFill: u32(1), FillInterval: "1s"}},
		}, []string{
			"EnvoyFilter default/ef: spec.configPatches[1].match.context: ANY: Istio also patches outbound and gateway listeners; Trellis enforces the limit on the inbound side only",
		}},
		{"response headers: actions by name and number, deprecated append, %% and empty values", efHead + efFilter + efEnforced +
			"            token_bucket: {max_tokens: 1, fill_interval: 1s}\n" + `            responseHeadersToAdd:
            - header: {key: x-a, value: "50%% used"}
            - {header: {key: x-b, value: b}, append_action: ADD_IF_ABSENT}
            - {header: {key: x-c, value: c}, appendAction: 3}
            - {header: {key: x-d, value: d}, append: true, append_action: APPEND_IF_EXISTS_OR_ADD}
            - {header: {key: x-e, value: ""}, keep_empty_value: true}
            - {header: {key: x-f}}
`, []RateLimitSpec{{TokenBucket: &TokenBucket{MaxTokens: 1, FillInterval: "1s"}, ResponseHeadersToAdd: []RateLimitHeader{
			{Name: "x-a", Value: "50% used"},
			{Name: "x-b", Value: "b", AppendAction: AddIfAbsent},
			{Name: "x-c", Value: "c", AppendAction: OverwriteIfExists},
			{Name: "x-d", Value: "d"},
			{Name: "x-e", Value: ""},
		}}}, []string{
			"EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.responseHeadersToAdd[5].header.value: empty: Envoy does not add the header unless keep_empty_value is true, ignored",
		}},
		{"response headers of a per-route bucket are its own", efHead + efFilter + `            response_headers_to_add: [{header: {key: x-filter, value: "1"}}]
  - applyTo: HTTP_ROUTE
    match: {context: SIDECAR_INBOUND, routeConfiguration: {vhost: {name: "inbound|http|9080"}}}
    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          envoy.filters.http.local_ratelimit:
            "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            stat_prefix: route
            token_bucket: {max_tokens: 2, fill_interval: 1s}
            filter_enabled: {default_value: {numerator: 100}}
            filter_enforced: {default_value: {numerator: 100}}
            response_headers_to_add: [{append: false, header: {key: x-route, value: "2"}}]
`, []RateLimitSpec{{Port: 9080, TokenBucket: &TokenBucket{MaxTokens: 2, FillInterval: "1s"}, ResponseHeadersToAdd: []RateLimitHeader{
			{Name: "x-route", Value: "2", AppendAction: OverwriteIfExistsOrAdd},
		}}}, nil},
		{"not enforced: limits nothing", efHead + efFilter + "            token_bucket: {max_tokens: 1, fill_interval: 1s}\n", nil, []string{
			"EnvoyFilter default/ef: spec.configPatches[0].patch.value.typed_config.value.filter_enabled: 0% (Envoy's default when unset): this token bucket limits nothing, ignored",
			"EnvoyFilter default/ef: spec.configPatches: no enforced token bucket: this EnvoyFilter limits nothing",
		}},
		{"enforced", efHead + efFilter + efEnforced + "            token_bucket: {max_tokens: 1, fill_interval: 1s}\n",
			[]RateLimitSpec{{TokenBucket: &TokenBucket{MaxTokens: 1, FillInterval: "1s"}}}, nil},
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
			if diff := cmp.Diff(tc.want, ef.RateLimits()); diff != "" {
				t.Errorf("rate limits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnvoyFilterSelects(t *testing.T) {
	w := func(ns string, labels map[string]string) *Workload {
		return &Workload{ObjectMeta: ObjectMeta{Name: "w", Namespace: ns}, Spec: WorkloadSpec{Service: "s", Labels: labels}}
	}
	ef := func(ns string, labels map[string]string) *EnvoyFilter {
		e := &EnvoyFilter{ObjectMeta: ObjectMeta{Name: "ef", Namespace: ns}}
		if labels != nil {
			e.Spec.WorkloadSelector = &EnvoyFilterWorkloadSelector{Labels: labels}
		}
		return e
	}
	app := map[string]string{"app": "productpage"}
	tests := []struct {
		name string
		ef   *EnvoyFilter
		w    *Workload
		want bool
	}{
		{"labels match", ef("", app), w("", map[string]string{"app": "productpage", "version": "v1"}), true},
		{"labels differ", ef("", app), w("", map[string]string{"app": "reviews"}), false},
		{"label missing", ef("", app), w("", nil), false},
		{"no selector: the whole namespace", ef("prod", nil), w("prod", nil), true},
		{"another namespace", ef("prod", nil), w("default", nil), false},
		{"root namespace: every namespace", ef(IstioRootNamespace, app), w("prod", app), true},
	}
	for _, tc := range tests {
		if got := tc.ef.Selects(tc.w); got != tc.want {
			t.Errorf("%s: Selects %v, want %v", tc.name, got, tc.want)
		}
	}
}
