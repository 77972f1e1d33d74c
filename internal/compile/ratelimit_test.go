package compile

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

const rlWorkload = `apiVersion: trellis.dev/v1
kind: Workload
metadata: {name: a-0}
spec:
  service: a
  labels: {app: a}
  ports:
  - {port: 80, protocol: http, app: "127.0.0.1:1080", inbound: "127.0.0.1:2080"}
  - {port: 81, protocol: grpc, app: "127.0.0.1:1081", inbound: "127.0.0.1:2081"}
  - {port: 82, protocol: tcp, app: "127.0.0.1:1082", inbound: "127.0.0.1:2082"}
`

func rateLimitDoc(name string, port, tokens int) string {
	return fmt.Sprintf("apiVersion: trellis.dev/v1\nkind: RateLimit\nmetadata: {name: %s}\nspec:\n  service: a\n  port: %d\n"+
		"  tokenBucket: {maxTokens: %d, fillInterval: 1s}\n", name, port, tokens)
}

func envoyFilterDoc(ns, app, port string, tokens int) string {
	vhost := ""
	if port != "" {
		vhost = "      routeConfiguration: {vhost: {name: \"inbound|http|" + port + "\"}}\n"
	}
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ef, namespace: %s}
spec:
  workloadSelector: {labels: {app: %s}}
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          value: {stat_prefix: x}
  - applyTo: HTTP_ROUTE
    match:
      context: SIDECAR_INBOUND
%s    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          envoy.filters.http.local_ratelimit:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: x
              token_bucket: {max_tokens: %d, fill_interval: 1s}
              filter_enabled: {default_value: {numerator: 100}}
              filter_enforced: {default_value: {numerator: 100}}
`, ns, app, vhost, tokens)
}

// inboundBuckets returns, per inbound listener, the max_tokens of its
// virtual host's bucket (-1: the local_ratelimit filter is not in the chain).
func inboundBuckets(t *testing.T, set *resources.Set) map[string]int {
	t.Helper()
	out := map[string]int{}
	for name, l := range set.Listeners {
		var hcm hcmv3.HttpConnectionManager
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
			continue // tcp_proxy
		}
		out[name] = -1
		if hcm.GetHttpFilters()[0].GetName() != localRateLimitFilter {
			continue
		}
		out[name] = 0
		cfg := hcm.GetRouteConfig().GetVirtualHosts()[0].GetTypedPerFilterConfig()[localRateLimitFilter]
		if cfg == nil {
			continue
		}
		var lrl localratelimitv3.LocalRateLimit
		if err := cfg.UnmarshalTo(&lrl); err != nil {
			t.Fatal(err)
		}
		out[name] = int(lrl.GetTokenBucket().GetMaxTokens())
	}
	return out
}

// TestRateLimitPrecedence checks which bucket each inbound port of a-0 gets.
func TestRateLimitPrecedence(t *testing.T) {
	tests := []struct {
		name string
		docs []string
		want map[string]int
	}{
		{"none", nil, map[string]int{"inbound|80": -1, "inbound|81": -1}},
		{"service-wide", []string{rateLimitDoc("rl", 0, 5)}, map[string]int{"inbound|80": 5, "inbound|81": 5}},
		{"a port's limit wins over the service's, whatever the names",
			[]string{rateLimitDoc("a", 0, 5), rateLimitDoc("b", 81, 7)}, map[string]int{"inbound|80": 5, "inbound|81": 7}},
		{"the first by name among equals",
			[]string{rateLimitDoc("b", 0, 5), rateLimitDoc("a", 0, 6)}, map[string]int{"inbound|80": 6, "inbound|81": 6}},
		{"a RateLimit wins over an EnvoyFilter",
			[]string{envoyFilterDoc("default", "a", "", 3), rateLimitDoc("rl", 80, 5)}, map[string]int{"inbound|80": 5, "inbound|81": 3}},
		{"an EnvoyFilter for one port", []string{envoyFilterDoc("default", "a", "81", 3)}, map[string]int{"inbound|80": -1, "inbound|81": 3}},
		{"the workload's namespace before the root namespace",
			[]string{envoyFilterDoc(model.IstioRootNamespace, "a", "", 9), envoyFilterDoc("default", "a", "", 3)}, map[string]int{"inbound|80": 3, "inbound|81": 3}},
		{"an EnvoyFilter selecting other workloads", []string{envoyFilterDoc("default", "b", "", 3)}, map[string]int{"inbound|80": -1, "inbound|81": -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := &Input{}
			docs := append([]string{rlWorkload}, tc.docs...)
			for _, d := range docs {
				objs, err := model.Decode([]byte(d), "x.yaml")
				if err != nil {
					t.Fatal(err)
				}
				in.Add(objs[0])
			}
			set, err := Proxy(in, "a-0")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, inboundBuckets(t, set)); diff != "" {
				t.Errorf("inbound buckets (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLimitedReplyHeaders checks the response_headers_to_add of a RateLimit's
// headers: each append action, "%" escaped for Envoy's format strings, and
// an empty value kept.
func TestLimitedReplyHeaders(t *testing.T) {
	hvo := func(k, v string, a corev3.HeaderValueOption_HeaderAppendAction, keep bool) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a, KeepEmptyValue: keep}
	}
	tests := []struct {
		name string
		in   []model.RateLimitHeader
		want []*corev3.HeaderValueOption
	}{
		{"none", nil, nil},
		{"default action", []model.RateLimitHeader{{Name: "x-a", Value: "1"}},
			[]*corev3.HeaderValueOption{hvo("x-a", "1", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, false)}},
		{"every action", []model.RateLimitHeader{
			{Name: "x-a", Value: "a", AppendAction: model.AppendIfExistsOrAdd},
			{Name: "x-b", Value: "b", AppendAction: model.AddIfAbsent},
			{Name: "x-c", Value: "c", AppendAction: model.OverwriteIfExistsOrAdd},
			{Name: "x-d", Value: "d", AppendAction: model.OverwriteIfExists},
		}, []*corev3.HeaderValueOption{
			hvo("x-a", "a", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, false),
			hvo("x-b", "b", corev3.HeaderValueOption_ADD_IF_ABSENT, false),
			hvo("x-c", "c", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, false),
			hvo("x-d", "d", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS, false),
		}},
		{"percent escaped", []model.RateLimitHeader{{Name: "x-a", Value: "%START_TIME% 100%"}},
			[]*corev3.HeaderValueOption{hvo("x-a", "%%START_TIME%% 100%%", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, false)}},
		{"empty value kept", []model.RateLimitHeader{{Name: "x-a"}},
			[]*corev3.HeaderValueOption{hvo("x-a", "", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, true)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, limitedReplyHeaders(tc.in), protocmp.Transform()); diff != "" {
				t.Errorf("response_headers_to_add (-want +got):\n%s", diff)
			}
		})
	}
}
