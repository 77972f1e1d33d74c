package model

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIstioExamplesDecode(t *testing.T) {
	data, err := os.ReadFile("testdata/istio-examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(data, "istio-examples.yaml")
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(objs) != 2 {
		t.Fatalf("got %d objects, want 2", len(objs))
	}
	warns, err := Validate(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"VirtualService default/ratings-route: spec.http[0].retries: not implemented yet, ignored",
		"VirtualService default/ratings-route: spec.http[0].fault: not implemented yet, ignored",
		"VirtualService default/ratings-route: spec.http[0].match[0].queryParams: not implemented yet, ignored",
		"VirtualService default/ratings-route: spec.http[1].redirect: not implemented yet, ignored",
		"VirtualService default/ratings-route: spec.tcp[0]: not implemented yet, ignored",
	} {
		if !contains(warns, w) {
			t.Errorf("missing warning %q in:\n%s", w, strings.Join(warns, "\n"))
		}
	}
	for _, w := range warns {
		if strings.Contains(w, ".uri") || strings.Contains(w, "timeout") || strings.Contains(w, "headers:") && strings.Contains(w, "match[0].headers") {
			t.Errorf("warning about an implemented field: %s", w)
		}
	}
	warns, err = Validate(objs[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"DestinationRule default/bookinfo-ratings: spec.trafficPolicy.connectionPool: not implemented yet, ignored",
		"DestinationRule default/bookinfo-ratings: spec.workloadSelector: not implemented yet, ignored",
	} {
		if !contains(warns, w) {
			t.Errorf("missing warning %q in:\n%s", w, strings.Join(warns, "\n"))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

const meshHead = "apiVersion: trellis.dev/v1\nkind: Mesh\nmetadata: {name: bookinfo}\nspec:\n"

func TestMeshValidation(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "valid",
			in: meshHead + "  entry: {workload: pp, path: /productpage}\n  workloads:\n" +
				"  - {name: pp, service: productpage, demo: productpage, upstreams: [reviews]}\n" +
				"  - {name: reviews-v1, service: reviews, command: [./reviews], port: {port: 9080, protocol: grpc}}\n",
		},
		{
			name: "everything wrong",
			in: meshHead + "  entry: {workload: nope, path: productpage}\n  workloads:\n" +
				"  - {name: pp, service: productpage, upstreams: [reviews, ratings]}\n" +
				"  - {name: pp, service: Reviews, demo: x, command: [run], port: {port: 70000, protocol: udp}}\n",
			want: []string{
				`m.yaml: Mesh default/bookinfo: spec.workloads[0]: one of demo and command is required`,
				`m.yaml: Mesh default/bookinfo: spec.workloads[1].name: duplicate workload name "pp" (also spec.workloads[0])`,
				`m.yaml: Mesh default/bookinfo: spec.workloads[1].service: "Reviews" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`,
				`m.yaml: Mesh default/bookinfo: spec.workloads[1]: demo and command are mutually exclusive`,
				`m.yaml: Mesh default/bookinfo: spec.workloads[1].port.port: port 70000 out of range, want 1..65535`,
				`m.yaml: Mesh default/bookinfo: spec.workloads[1].port.protocol: protocol "udp" is not one of http, http2, grpc, tcp`,
				`m.yaml: Mesh default/bookinfo: spec.workloads[0].upstreams[0]: service "reviews" is not defined by any workload`,
				`m.yaml: Mesh default/bookinfo: spec.workloads[0].upstreams[1]: service "ratings" is not defined by any workload`,
				`m.yaml: Mesh default/bookinfo: spec.entry.workload: workload "nope" is not defined`,
				`m.yaml: Mesh default/bookinfo: spec.entry.path: "productpage" must start with /`,
			},
		},
		{
			name: "no workloads",
			in:   meshHead + "  workloads: []\n",
			want: []string{"m.yaml: Mesh default/bookinfo: spec.workloads: required"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in), "m.yaml")
			if diff := cmp.Diff(tc.want, errorLines(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMeshDefaults(t *testing.T) {
	objs, err := Decode([]byte(meshHead+"  workloads:\n  - {name: a, service: a, demo: a}\n"), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := objs[0].(*Mesh)
	want := MeshPort{Port: 80, Protocol: ProtocolHTTP}
	if diff := cmp.Diff(want, m.Spec.Workloads[0].Port); diff != "" {
		t.Errorf("port defaults (-want +got):\n%s", diff)
	}
	if m.Namespace != DefaultNamespace {
		t.Errorf("namespace %q, want default", m.Namespace)
	}
}

func TestWorkloadValidation(t *testing.T) {
	w := &Workload{
		TypeMeta:   TypeMeta{APIVersion: APIVersionTrellis, Kind: KindWorkload},
		ObjectMeta: ObjectMeta{Name: "reviews-v1"},
		Spec: WorkloadSpec{
			Service: "reviews",
			Ports: []WorkloadPort{
				{Port: 9080, Protocol: ProtocolHTTP, App: "127.0.0.1:1", Inbound: "127.0.0.1:2"},
				{Port: 9080, Protocol: "h3", App: "nope", Inbound: "127.0.0.1:0"},
			},
			Upstreams: []Upstream{{Service: "ratings"}},
		},
	}
	_, err := Validate(w)
	want := []string{
		`Workload default/reviews-v1: spec.ports[1].port: duplicate port 9080 (also spec.ports[0])`,
		`Workload default/reviews-v1: spec.ports[1].protocol: protocol "h3" is not one of http, http2, grpc, tcp`,
		`Workload default/reviews-v1: spec.ports[1].app: "nope" is not host:port`,
		`Workload default/reviews-v1: spec.ports[1].inbound: "127.0.0.1:0": port must be 1..65535`,
		`Workload default/reviews-v1: spec.upstreams[0].local: required`,
	}
	if diff := cmp.Diff(want, errorLines(err)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestCheckReferences(t *testing.T) {
	vs := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v3}
      weight: 50
`
	dr := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
`
	a, err := Decode([]byte(vs+"---\n"+dr), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`VirtualService default/reviews: spec.http[0].route[1].destination.subset: subset "v3" of host "reviews" is not defined by any DestinationRule`}
	if diff := cmp.Diff(want, CheckReferences(a)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	reversed := []Object{a[1], a[0]}
	if diff := cmp.Diff(want, CheckReferences(reversed)); diff != "" {
		t.Errorf("order matters (-want +got):\n%s", diff)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/istio-examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(data, "istio-examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		for _, format := range []string{"yaml", "json"} {
			b, err := Marshal(o, format)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Decode(b, "out")
			if err != nil {
				t.Fatalf("%s: re-decode: %v", format, err)
			}
			if diff := cmp.Diff(o, back[0]); diff != "" {
				t.Errorf("%s round trip (-want +got):\n%s", format, diff)
			}
		}
		js, _ := Marshal(o, "json")
		stored, err := DecodeObject(o.Key().Kind, js)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(o, stored); diff != "" {
			t.Errorf("DecodeObject (-want +got):\n%s", diff)
		}
	}
	if _, err := Marshal(objs[0], "xml"); err == nil {
		t.Error("want error for unknown format")
	}
	if _, err := DecodeObject("VirtualService", []byte(`{"spec":{"hostz":[]}}`)); err == nil ||
		err.Error() != "VirtualService: spec.hostz: unknown field" {
		t.Errorf("DecodeObject error = %v", err)
	}
}

func TestCheckReferencesServicesAndDuplicates(t *testing.T) {
	w := &Workload{ObjectMeta: ObjectMeta{Name: "reviews-v1"}, Spec: WorkloadSpec{Service: "reviews"}}
	vs := func(name string, hosts ...string) *VirtualService {
		return &VirtualService{ObjectMeta: ObjectMeta{Name: name}, Spec: VirtualServiceSpec{
			Hosts: hosts,
			HTTP:  []HTTPRoute{{Route: []HTTPRouteDestination{{Destination: Destination{Host: "ratings"}}}}},
		}}
	}
	got := CheckReferences([]Object{vs("b", "reviews.default.svc.cluster.local"), w, vs("a", "reviews")})
	want := []string{
		`VirtualService default/a: spec.http[0].route[0].destination.host: service "ratings" has no workloads`,
		`VirtualService default/b: spec.hosts[0]: host "reviews.default.svc.cluster.local" is also routed by VirtualService default/a; only VirtualService default/a is used`,
		`VirtualService default/b: spec.http[0].route[0].destination.host: service "ratings" has no workloads`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
