package model

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// errorLines splits a joined error into its messages.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

const vsHead = `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
`

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "malformed YAML",
			in:   "apiVersion: v1\nkind: [Mesh\n",
			want: []string{"x.yaml: document 1: yaml: line 2: did not find expected ',' or ']'"},
		},
		{
			name: "malformed YAML in second document",
			in:   vsHead + "  http:\n  - route:\n    - destination: {host: reviews}\n---\nkind: : :\n",
			want: []string{"x.yaml: document 2: yaml: mapping values are not allowed in this context"},
		},
		{
			name: "unknown kind",
			in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
			want: []string{`x.yaml: document 1: kind: unknown kind "Pod"`},
		},
		{
			name: "missing kind",
			in:   "apiVersion: v1\nmetadata: {name: x}\n",
			want: []string{`x.yaml: document 1: kind: required`},
		},
		{
			name: "wrong apiVersion",
			in:   "apiVersion: trellis.dev/v1\nkind: VirtualService\nmetadata: {name: x}\n",
			want: []string{`x.yaml: document 1: apiVersion: "trellis.dev/v1" is not an apiVersion of VirtualService, want one of networking.istio.io/v1alpha3, networking.istio.io/v1beta1, networking.istio.io/v1`},
		},
		{
			name: "unknown field deep inside, two documents",
			in: vsHead + "  http:\n  - route:\n    - destination: {host: reviews}\n---\n" + vsHead +
				"  http:\n  - rout:\n    - destination: {host: reviews}\n    route:\n    - destination: {host: reviews, port: {numbr: 9080}}\n",
			want: []string{
				"x.yaml: document 2: VirtualService default/reviews: spec.http[0].rout: unknown field",
				"x.yaml: document 2: VirtualService default/reviews: spec.http[0].route[0].destination.port.numbr: unknown field",
			},
		},
		{
			// status is server-written for Istio kinds and dropped
			// (serverfields.go); other unknown top-level fields are errors.
			name: "unknown top-level fields",
			in:   vsHead + "  http: []\nstatus: {}\nmetadata2: 1\n",
			want: []string{
				"x.yaml: VirtualService default/reviews: metadata2: unknown field",
			},
		},
		{
			name: "wrong types",
			in: vsHead + "  http:\n  - timeout: 5\n    match:\n    - ignoreUriCase: \"yes\"\n      headers: {x: {exact: 1}}\n" +
				"    route:\n    - destination: {host: reviews}\n      weight: \"100\"\n  tcp: {}\n",
			want: []string{
				"x.yaml: VirtualService default/reviews: spec.http[0].match[0].headers.x.exact: want string, got number",
				"x.yaml: VirtualService default/reviews: spec.http[0].match[0].ignoreUriCase: want boolean, got string",
				"x.yaml: VirtualService default/reviews: spec.http[0].route[0].weight: want integer, got string",
				"x.yaml: VirtualService default/reviews: spec.http[0].timeout: want string, got number",
				"x.yaml: VirtualService default/reviews: spec.tcp: want array, got object",
			},
		},
		{
			name: "integer ranges",
			in:   vsHead + "  http:\n  - route:\n    - destination: {host: reviews, port: {number: -1}}\n      weight: 3000000000\n    mirrorPercent: 1.5\n",
			want: []string{
				"x.yaml: VirtualService default/reviews: spec.http[0].mirrorPercent: want integer, got 1.5",
				"x.yaml: VirtualService default/reviews: spec.http[0].route[0].destination.port.number: want non-negative integer, got -1",
				"x.yaml: VirtualService default/reviews: spec.http[0].route[0].weight: integer 3000000000 out of range for int32",
			},
		},
		{
			name: "weights sum not 100",
			in: vsHead + "  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 60\n" +
				"    - destination: {host: reviews, subset: v2}\n      weight: 50\n",
			want: []string{"x.yaml: VirtualService default/reviews: spec.http[0].route[1].weight: weights sum to 110, want 100"},
		},
		{
			name: "bad regex and two match kinds",
			in: vsHead + "  http:\n  - match:\n    - uri: {regex: \"(\"}\n      headers: {end-user: {exact: a, prefix: b}}\n" +
				"    route:\n    - destination: {host: reviews}\n",
			want: []string{
				"x.yaml: VirtualService default/reviews: spec.http[0].match[0].uri.regex: invalid RE2 regex \"(\": error parsing regexp: missing closing ): `(`",
				"x.yaml: VirtualService default/reviews: spec.http[0].match[0].headers.end-user: exactly one of exact, prefix and regex may be set",
			},
		},
		{
			name: "missing hosts and destination host",
			in: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: prod}\nspec:\n" +
				"  http:\n  - route:\n    - destination: {subset: v1}\n",
			want: []string{
				"x.yaml: VirtualService prod/reviews: spec.hosts: required",
				"x.yaml: VirtualService prod/reviews: spec.http[0].route[0].destination.host: required",
			},
		},
		{
			name: "bad duration and names",
			in: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: Reviews_1}\nspec:\n  hosts: [r]\n" +
				"  http:\n  - route:\n    - destination: {host: r, subset: V1}\n    timeout: 10 seconds\n",
			want: []string{
				`x.yaml: VirtualService default/Reviews_1: metadata.name: "Reviews_1" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`,
				`x.yaml: VirtualService default/Reviews_1: spec.http[0].route[0].destination.subset: "V1" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`,
				`x.yaml: VirtualService default/Reviews_1: spec.http[0].timeout: invalid duration "10 seconds": want e.g. "1.5s" or "100ms"`,
			},
		},
		{
			name: "destination rule",
			in: "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n" +
				"  trafficPolicy:\n    loadBalancer: {simple: FASTEST}\n    outlierDetection: {interval: 1x}\n" +
				"  subsets:\n  - {name: v1}\n  - {name: v1}\n",
			want: []string{
				"x.yaml: DestinationRule default/reviews: spec.host: required",
				`x.yaml: DestinationRule default/reviews: spec.trafficPolicy.loadBalancer.simple: "FASTEST" is not one of [UNSPECIFIED LEAST_CONN RANDOM PASSTHROUGH ROUND_ROBIN LEAST_REQUEST]`,
				`x.yaml: DestinationRule default/reviews: spec.trafficPolicy.outlierDetection.interval: invalid duration "1x": want e.g. "1.5s" or "100ms"`,
				`x.yaml: DestinationRule default/reviews: spec.subsets[1].name: duplicate subset "v1" (also spec.subsets[0])`,
			},
		},
		{
			name: "duplicate object",
			in:   vsHead + "  http:\n  - route:\n    - destination: {host: reviews}\n---\n" + vsHead + "  http:\n  - route:\n    - destination: {host: reviews}\n",
			want: []string{"x.yaml: document 2: VirtualService default/reviews: metadata.name: duplicate of document 1"},
		},
		{
			name: "not an object",
			in:   "- a\n- b\n",
			want: []string{"x.yaml: document 1: want an object with apiVersion and kind, got array"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in), "x.yaml")
			if diff := cmp.Diff(tc.want, errorLines(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			checkFieldErrors(t, err)
		})
	}
}

// checkFieldErrors asserts every joined error is a *FieldError with a source and reason.
func checkFieldErrors(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T is not a joined error", err)
	}
	for _, e := range j.Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Errorf("%v is %T, want *FieldError", e, e)
			continue
		}
		if fe.Reason == "" {
			t.Errorf("%v has no reason", e)
		}
	}
}
