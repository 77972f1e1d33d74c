package model

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConvertPrecedence checks which front end routes a host: a
// VirtualService, else a ServiceProfile merged with a TrafficSplit, else
// HTTPRoutes.
func TestConvertPrecedence(t *testing.T) {
	split := func(name, root string) string {
		return "apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {name: " + name + "}\nspec:\n  service: " + root +
			"\n  backends: [{service: " + root + "-v2, weight: 1}]\n"
	}
	profile := func(svc string) string {
		return "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: " + svc + ".default.svc.cluster.local}\n" +
			"spec:\n  routes: [{name: r, condition: {method: GET}}]\n  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}\n"
	}
	route := func(name, svc string) string {
		return "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: " + name + "}\nspec:\n" +
			"  parentRefs: [{group: \"\", kind: Service, name: " + svc + "}]\n  rules: [{backendRefs: [{name: " + svc + ", port: 80}]}]\n"
	}
	var fe FrontEnds
	for _, d := range []string{
		split("a-split", "a"), profile("a"), route("a-route", "a"), // profile + split; the route is shadowed
		split("b-split", "b"), route("b-route", "b"), // the split alone beats the route
		split("c-split-2", "c"), split("c-split-1", "c"), // the first by name
		route("d-route", "d"),               // the route alone
		profile("e"), route("e-route", "e"), // routed by a VirtualService: nothing converted
	} {
		switch o := decodeOne(t, d).(type) {
		case *TrafficSplit:
			fe.TrafficSplits = append(fe.TrafficSplits, o)
		case *ServiceProfile:
			fe.ServiceProfiles = append(fe.ServiceProfiles, o)
		case *GatewayHTTPRoute:
			fe.HTTPRoutes = append(fe.HTTPRoutes, o)
		}
	}
	conv := fe.Convert(func(r ServiceRef) bool { return r.Name == "e" }, nil)
	got := map[string]string{}
	for _, vs := range conv.VirtualServices {
		got[vs.Spec.Hosts[0]] = vs.Annotations[AnnotationConvertedFrom]
	}
	want := map[string]string{
		"a.default": "ServiceProfile default/a.default.svc.cluster.local",
		"b":         "TrafficSplit default/b-split",
		"c":         "TrafficSplit default/c-split-1",
		"d.default": "HTTPRoute default/d-route",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("host → converted from (-want +got):\n%s", diff)
	}
	for _, vs := range conv.VirtualServices {
		if vs.Spec.Hosts[0] == "a.default" && vs.Spec.HTTP[0].Route[0].Destination.Host != "a-v2.default" {
			t.Errorf("the profile of a does not route to its split's backend: %+v", vs.Spec.HTTP[0].Route)
		}
	}
	if len(conv.DestinationRules) != 1 || conv.DestinationRules[0].Spec.Host != "a.default" {
		t.Errorf("retry budgets: %+v, want only a's (e's profile is shadowed)", conv.DestinationRules)
	}
}

func TestFrontEndReferences(t *testing.T) {
	docs := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: reviews-split}
spec: {service: reviews, backends: [{service: reviews-v2, weight: 1}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ratings}
spec:
  parentRefs: [{group: "", kind: Service, name: ratings}]
  rules: [{backendRefs: [{name: ratings-v2, port: 80}]}]
---
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: ratings.default.svc.cluster.local}
spec:
  routes: [{name: r, condition: {method: GET}}]
  dstOverrides: [{authority: "ratings-v1.default.svc.cluster.local:80", weight: 1}]
---
apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: ratings-split}
spec: {service: ratings, backends: [{service: ratings-v3, weight: 1}]}
---
apiVersion: trellis.dev/v1
kind: RateLimit
metadata: {name: a}
spec: {service: ratings, tokenBucket: {maxTokens: 1, fillInterval: 1s}}
---
apiVersion: trellis.dev/v1
kind: RateLimit
metadata: {name: b}
spec: {service: ratings.default.svc.cluster.local, tokenBucket: {maxTokens: 1, fillInterval: 1s}}
---
apiVersion: trellis.dev/v1
kind: Workload
metadata: {name: ratings-v1}
spec:
  service: ratings-v1
  ports: [{port: 80, protocol: http, app: "127.0.0.1:1", inbound: "127.0.0.1:2"}]
`
	objs, err := Decode([]byte(docs), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`HTTPRoute default/ratings: spec.parentRefs[0]: service "ratings" is also routed by ServiceProfile default/ratings.default.svc.cluster.local, which takes precedence: this route is ignored for it`,
		`RateLimit default/b: spec.service: service "ratings.default.svc.cluster.local" (port 0) is also limited by RateLimit default/a: only RateLimit default/a is used`,
		"ServiceProfile default/ratings.default.svc.cluster.local: destination service \"ratings-v3.default\" has no workloads",
		`TrafficSplit default/ratings-split: spec.backends: replace the dstOverrides of ServiceProfile default/ratings.default.svc.cluster.local, as in Linkerd`,
		`TrafficSplit default/reviews-split: spec.service: host "reviews" is also routed by VirtualService default/reviews, which takes precedence: this TrafficSplit is ignored`,
		`VirtualService default/reviews: spec.http[0].route[0].destination.host: service "reviews" has no workloads`,
	}
	if diff := cmp.Diff(want, CheckReferences(objs)); diff != "" {
		t.Errorf("CheckReferences (-want +got):\n%s", diff)
	}
}

func TestQuantityMilli(t *testing.T) {
	tests := []struct {
		in   any
		want uint64
		err  string
	}{
		{"500m", 500, ""},
		{"1", 1000, ""},
		{float64(2), 2000, ""},
		{"0.5", 500, ""},
		{"1.5k", 1_500_000, ""},
		{"1Ki", 1_024_000, ""},
		{"0.5m", 0, `"0.5m" is finer than 1m`},
		{"-1", 0, `"-1" is not a non-negative quantity such as "500m" or "1"`},
		{"1e3", 0, `"1e3" is not a non-negative quantity such as "500m" or "1"`},
		{"5G", 0, `"5G" is too large`},
		{nil, 0, "required"},
		{true, 0, `want a quantity such as "500m" or 1, got boolean`},
	}
	for _, tc := range tests {
		got, err := quantityMilli(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%v: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
