package controlplane

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// TestFrontEndRecompile checks that applying and deleting each front end
// and rate limit kind recompiles, and pushes to, exactly the connected
// proxies it shapes: the callers of the service it routes, or the
// workloads whose inbound side it limits.
func TestFrontEndRecompile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const services = 12
	m := newMeshSim(t, ctx, services, 2)
	log := &compileLog{names: map[string]bool{}}
	m.cp.compiledHook = log.hook
	m.start(t, ctx, services)
	m.settle(t)
	log.take()
	admin := api.NewClient(m.cp.AdminURL(), "")

	const target = 5
	hub, callers := m.affectedClients(0), m.affectedClients(target)
	hubRoute, route := "outbound|80|"+svcName(0), "outbound|80|"+svcName(target)
	servers := []*simClient{m.clients[workloadName(target, 0)]} // its other workload is not connected
	apply := func(doc string) func() error {
		return func() error { _, err := admin.Apply(ctx, []byte(doc), "test", false); return err }
	}
	del := func(kind, name string) func() error {
		return func() error { return admin.Delete(ctx, kind, model.DefaultNamespace, name) }
	}
	split := func(s *resources.Set) bool {
		rc := s.Routes[hubRoute]
		return rc != nil && rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetWeightedClusters() != nil
	}
	cases := []struct {
		name     string
		affected []*simClient
		match    func(*resources.Set) bool
		change   func() error
	}{
		{"TrafficSplit apply", hub, split, apply(fmt.Sprintf(`apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: hub-split}
spec:
  service: %s
  backends: [{service: %s, weight: 1}, {service: %s, weight: 3}]
`, svcName(0), svcName(0), svcName(3)))},
		{"TrafficSplit delete", hub, func(s *resources.Set) bool { return s.Routes[hubRoute] != nil && !split(s) },
			del(model.KindTrafficSplit, "hub-split")},
		{"ServiceProfile apply", callers, func(s *resources.Set) bool { return routeTimeout(s, route) == 3*time.Second },
			apply(fmt.Sprintf(`apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: %s.default.svc.cluster.local}
spec:
  routes: [{name: all, condition: {pathRegex: "/.*"}, timeout: 3s}]
`, svcName(target)))},
		{"ServiceProfile delete", callers, func(s *resources.Set) bool { return s.Routes[route] != nil && routeTimeout(s, route) == 0 },
			del(model.KindServiceProfile, svcName(target)+".default.svc.cluster.local")},
		{"HTTPRoute apply", callers, func(s *resources.Set) bool { return routeTimeout(s, route) == 4*time.Second },
			apply(fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: target}
spec:
  parentRefs: [{group: "", kind: Service, name: %s}]
  rules: [{backendRefs: [{name: %s, port: 80}], timeouts: {request: 4s}}]
`, svcName(target), svcName(target)))},
		{"HTTPRoute delete", callers, func(s *resources.Set) bool { return s.Routes[route] != nil && routeTimeout(s, route) == 0 },
			del(model.KindGatewayHTTPRoute, "target")},
		{"RateLimit apply", servers, func(s *resources.Set) bool { return inboundRateLimited(s) },
			apply("apiVersion: trellis.dev/v1\nkind: RateLimit\nmetadata: {name: target}\nspec:\n  service: " + svcName(target) +
				"\n  tokenBucket: {maxTokens: 5, fillInterval: 1s}\n")},
		{"RateLimit delete", servers, func(s *resources.Set) bool { return s.Listeners["inbound|80"] != nil && !inboundRateLimited(s) },
			del(model.KindRateLimit, "target")},
		{"EnvoyFilter apply", m.clientList(), inboundRateLimited, apply(`apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: v0-limit}
spec:
  workloadSelector: {labels: {version: v0}}
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
          value:
            stat_prefix: x
            token_bucket: {max_tokens: 5, fill_interval: 1s}
            filter_enabled: {default_value: {numerator: 100}}
            filter_enforced: {default_value: {numerator: 100}}
`)},
		{"EnvoyFilter delete", m.clientList(), func(s *resources.Set) bool { return s.Listeners["inbound|80"] != nil && !inboundRateLimited(s) },
			del(model.KindEnvoyFilter, "v0-limit")},
	}
	for _, tc := range cases {
		r := m.measure(t, tc.affected, tc.match, tc.change, 10*time.Second, 300*time.Millisecond)
		if len(r.missing) > 0 {
			t.Errorf("%s: never reached %v", tc.name, r.missing)
		}
		want := clientNames(tc.affected)
		sort.Strings(want)
		if diff := cmp.Diff(want, log.take()); diff != "" {
			t.Errorf("%s: compiled proxies (-want +got):\n%s", tc.name, diff)
		}
		if r.pushed != len(tc.affected) {
			t.Errorf("%s: %d proxies got a push, want %d", tc.name, r.pushed, len(tc.affected))
		}
	}

	// apply warns when a front end is shadowed by a VirtualService.
	if _, err := admin.Apply(ctx, vsYAML(svcName(0), time.Second), "test", false); err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Apply(ctx, []byte("apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {name: hub-split}\n"+
		"spec: {service: "+svcName(0)+", backends: [{service: "+svcName(3)+", weight: 1}]}\n"), "test", true)
	if err != nil {
		t.Fatal(err)
	}
	want := `TrafficSplit default/hub-split: spec.service: host "s0000" is also routed by VirtualService default/s0000, which takes precedence: this TrafficSplit is ignored`
	if !slices.Contains(resp.Warnings, want) {
		t.Errorf("apply warnings %q, want %q", resp.Warnings, want)
	}
}

// inboundRateLimited reports whether the inbound|80 listener runs the local rate limit filter.
func inboundRateLimited(s *resources.Set) bool {
	l := s.Listeners["inbound|80"]
	if l == nil {
		return false
	}
	var hcm hcmv3.HttpConnectionManager
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		return false
	}
	return hcm.GetHttpFilters()[0].GetName() == "envoy.filters.http.local_ratelimit"
}

func TestCanonicalKind(t *testing.T) {
	for kind, names := range map[string][]string{
		model.KindTrafficSplit:     {"trafficsplit", "TrafficSplits", "ts"},
		model.KindServiceProfile:   {"serviceprofile", "serviceprofiles", "sp"},
		model.KindGatewayHTTPRoute: {"HTTPRoute", "httproutes"},
		model.KindRateLimit:        {"ratelimit", "RateLimits", "rl"},
		model.KindEnvoyFilter:      {"envoyfilter", "EnvoyFilters"},
	} {
		for _, n := range names {
			if got, ok := canonicalKind(n); !ok || got != kind || !applyableKinds[got] {
				t.Errorf("canonicalKind(%q) = %q, %v; want %q, applyable", n, got, ok, kind)
			}
		}
	}
}
