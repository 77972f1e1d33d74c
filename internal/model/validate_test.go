package model

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
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
	// Every VirtualService field of the example is compiled except these.
	wantVS := []string{
		"VirtualService default/ratings-route: spec.exportTo: not implemented yet, ignored",
		"VirtualService default/ratings-route: spec.http[0].corsPolicy: not implemented yet, ignored",
		"VirtualService default/ratings-route: spec.tls[0]: not implemented yet, ignored",
	}
	if diff := cmp.Diff(wantVS, warns); diff != "" {
		t.Errorf("VirtualService warnings (-want +got):\n%s", diff)
	}
	warns, err = Validate(objs[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"DestinationRule default/bookinfo-ratings: spec.trafficPolicy.connectionPool.tcp.tcpKeepalive: not implemented yet, ignored",
		"DestinationRule default/bookinfo-ratings: spec.trafficPolicy.outlierDetection.consecutiveErrors: deprecated, use consecutiveGatewayErrors or consecutive5xxErrors (read as consecutiveGatewayErrors)",
		"DestinationRule default/bookinfo-ratings: spec.workloadSelector: not implemented yet, ignored",
	} {
		if !contains(warns, w) {
			t.Errorf("missing warning %q in:\n%s", w, strings.Join(warns, "\n"))
		}
	}
	for _, w := range warns {
		for _, implemented := range []string{"loadBalancer", "connectionPool:", "outlierDetection:", "portLevelSettings", "h2UpgradePolicy"} {
			if strings.Contains(w, implemented) {
				t.Errorf("warning about an implemented field: %s", w)
			}
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

// validateVS decodes one VirtualService document without validating it,
// then validates it: its errors (without the document prefix) and warnings.
func validateVS(t *testing.T, doc string) (errs, warns []string) {
	t.Helper()
	js, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	obj, ferrs := decodeDocument(js)
	if len(ferrs) > 0 {
		t.Fatalf("decode: %v", ferrs)
	}
	warns, err = Validate(obj)
	prefix := obj.Key().String() + ": "
	for _, e := range errorLines(err) {
		errs = append(errs, strings.TrimPrefix(e, prefix))
	}
	for i, w := range warns {
		warns[i] = strings.TrimPrefix(w, prefix)
	}
	return errs, warns
}

func TestVirtualServiceValidation(t *testing.T) {
	const route = "    route:\n    - destination: {host: reviews}\n"
	tests := []struct {
		name      string
		http      string // the spec.http list (or other spec fields), indented under spec
		wantErrs  []string
		wantWarns []string
	}{
		{
			name: "every implemented field is accepted without warnings",
			http: "  http:\n  - match:\n    - uri: {regex: \"/a/[0-9]+\"}\n      method: {exact: GET}\n      queryParams: {q: {exact: \"\"}}\n" +
				"      withoutHeaders: {x: {}}\n      sourceLabels: {app: a}\n      sourceNamespace: prod\n      port: 9080\n      gateways: [mesh]\n" +
				"    retries: {attempts: 2, retryOn: \"5xx,reset,503\", perTryTimeout: 1s, backoff: 50ms, retryIgnorePreviousHosts: false}\n" +
				"    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 1}}, delay: {fixedDelay: 1s, percent: 5}}\n" +
				"    mirror: {host: audit}\n    mirrorPercentage: {value: 10}\n" +
				"    rewrite: {uriRegexRewrite: {match: \"^/a/(.*)$\", rewrite: '/\\1'}}\n" +
				"    headers: {request: {set: {host: b.example, x: \"1\"}, remove: [x-y]}, response: {add: {z: \"2\"}}}\n" +
				"    timeout: 3s\n" + route +
				"  - redirect: {uri: /b, scheme: https, derivePort: FROM_REQUEST_PORT, redirectCode: 307}\n" +
				"  - directResponse: {status: 503, body: {bytes: aGVsbG8=}}\n" +
				"  tcp:\n  - match: [{port: 27017, sourceNamespace: prod}]\n    route:\n    - destination: {host: mongo}\n",
		},
		{
			name: "invalid regexes everywhere name their field",
			http: "  http:\n  - match:\n    - headers: {x: {regex: \"(\"}}\n      queryParams: {q: {regex: \"[\"}}\n      withoutHeaders: {w: {regex: \"*\"}}\n" +
				"      authority: {regex: \"a{2,1}\"}\n    rewrite: {uriRegexRewrite: {match: \"a**\", rewrite: /x}}\n" + route,
			wantErrs: []string{
				"spec.http[0].match[0].authority.regex: invalid RE2 regex \"a{2,1}\": error parsing regexp: invalid repeat count: `{2,1}`",
				"spec.http[0].match[0].headers.x.regex: invalid RE2 regex \"(\": error parsing regexp: missing closing ): `(`",
				"spec.http[0].match[0].queryParams.q.regex: invalid RE2 regex \"[\": error parsing regexp: missing closing ]: `[`",
				"spec.http[0].match[0].withoutHeaders.w.regex: invalid RE2 regex \"*\": error parsing regexp: missing argument to repetition operator: `*`",
				"spec.http[0].rewrite.uriRegexRewrite.match: invalid RE2 regex \"a**\": error parsing regexp: invalid nested repetition operator: `**`",
			},
		},
		{
			name:     "regex longer than Envoy allows",
			http:     "  http:\n  - match:\n    - uri: {regex: \"" + strings.Repeat("a", 1025) + "\"}\n" + route,
			wantErrs: []string{"spec.http[0].match[0].uri.regex: regex is 1025 characters long, longer than 1024"},
		},
		{
			name: "retries",
			http: "  http:\n  - retries: {attempts: 2, retryOn: \"5xx,nope,999,,gateway-error\", perTryTimeout: 0s, backoff: 1x}\n" + route +
				"  - retries: {retryOn: 5xx}\n" + route + "  - retries: {attempts: -1}\n" + route,
			wantErrs: []string{
				`spec.http[0].retries.perTryTimeout: 0s is shorter than 1ms`,
				`spec.http[0].retries.backoff: invalid duration "1x": want e.g. "1.5s" or "100ms"`,
				`spec.http[0].retries.retryOn: "nope" is not a retry condition (5xx, gateway-error, reset, reset-before-request, connect-failure, envoy-ratelimited, retriable-4xx, refused-stream, retriable-status-codes, retriable-headers, http3-post-connect-failure, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable) or an HTTP status code`,
				`spec.http[0].retries.retryOn: "999" is not a retry condition (5xx, gateway-error, reset, reset-before-request, connect-failure, envoy-ratelimited, retriable-4xx, refused-stream, retriable-status-codes, retriable-headers, http3-post-connect-failure, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable) or an HTTP status code`,
				`spec.http[0].retries.retryOn: "" is not a retry condition (5xx, gateway-error, reset, reset-before-request, connect-failure, envoy-ratelimited, retriable-4xx, refused-stream, retriable-status-codes, retriable-headers, http3-post-connect-failure, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable) or an HTTP status code`,
				`spec.http[1].retries.attempts: 0 disables retries, but perTryTimeout, retryOn or retryRemoteLocalities is set`,
				`spec.http[2].retries.attempts: must not be negative`,
			},
		},
		{
			name:      "retry to remote localities is not implemented",
			http:      "  http:\n  - retries: {attempts: 1, retryRemoteLocalities: true}\n" + route,
			wantWarns: []string{"spec.http[0].retries.retryRemoteLocalities: not implemented yet, ignored"},
		},
		{
			name: "fault",
			http: "  http:\n  - fault: {}\n" + route +
				"  - fault: {delay: {exponentialDelay: 1s, percentage: {value: 101}}, abort: {httpStatus: 600}}\n" + route +
				"  - fault: {delay: {percent: 10, percentage: {value: 5}}, abort: {grpcStatus: NOT_A_CODE, percentage: {value: -1}}}\n" + route +
				"  - fault: {abort: {httpStatus: 500, grpcStatus: INTERNAL, percentage: {value: 1}}}\n" + route +
				"  - fault: {abort: {http2Error: REFUSED_STREAM, percentage: {value: 1}}}\n" + route +
				"  - fault: {abort: {percentage: {value: 1}}}\n" + route,
			wantErrs: []string{
				"spec.http[0].fault: one of delay and abort is required",
				"spec.http[1].fault.delay.exponentialDelay: not supported (as in Istio), use fixedDelay",
				"spec.http[1].fault.delay.percentage.value: 101 out of range, want 0..100",
				"spec.http[1].fault.abort.httpStatus: 600 is not an HTTP status (200..599)",
				"spec.http[2].fault.delay.fixedDelay: required",
				"spec.http[2].fault.delay.percent: percent and percentage are mutually exclusive",
				`spec.http[2].fault.abort.grpcStatus: "NOT_A_CODE" is not a gRPC status name (e.g. UNAVAILABLE, NOT_FOUND)`,
				"spec.http[2].fault.abort.percentage.value: -1 out of range, want 0..100",
				"spec.http[3].fault.abort: httpStatus and grpcStatus are mutually exclusive",
				"spec.http[4].fault.abort.http2Error: not supported (as in Istio), use httpStatus or grpcStatus",
				"spec.http[5].fault.abort: one of httpStatus and grpcStatus is required",
			},
			wantWarns: []string{"spec.http[1].fault.abort.percentage: not set: no request is aborted (as in Istio)"},
		},
		{
			name: "actions are mutually exclusive and redirect and directResponse take no fault or rewrite",
			http: "  http:\n  - redirect: {uri: /a}\n    directResponse: {status: 200}\n" +
				"  - redirect: {uri: /a}\n    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}\n    rewrite: {uri: /b}\n    timeout: 1s\n" +
				"  - directResponse: {status: 200}\n" + route +
				"  - delegate: {name: d}\n    redirect: {uri: /a}\n" +
				"  - timeout: 1s\n",
			wantErrs: []string{
				"spec.http[0]: redirect and directResponse are mutually exclusive",
				"spec.http[1].fault: not allowed with redirect",
				"spec.http[1].rewrite: not allowed with redirect",
				"spec.http[2]: route and directResponse are mutually exclusive",
				"spec.http[3]: delegate is mutually exclusive with route, redirect and directResponse",
				"spec.http[4]: one of route, redirect, directResponse or delegate is required",
			},
			wantWarns: []string{
				"spec.http[1].timeout: has no effect with redirect, ignored",
				"spec.http[3].delegate: not implemented yet, ignored",
			},
		},
		{
			name: "redirect",
			http: "  http:\n  - redirect: {redirectCode: 301}\n  - redirect: {uri: /a, redirectCode: 304, scheme: ftp, port: 70000}\n" +
				"  - redirect: {authority: a, port: 8080, derivePort: FROM_REQUEST_PORT}\n  - redirect: {authority: a, derivePort: SOMEWHERE}\n",
			wantErrs: []string{
				"spec.http[0].redirect: one of uri, authority, scheme, port or derivePort is required",
				"spec.http[1].redirect.redirectCode: 304 is not a redirect status Envoy can answer (301, 302, 303, 307 or 308)",
				`spec.http[1].redirect.scheme: "ftp" is not http or https`,
				"spec.http[1].redirect.port: port 70000 out of range, want 1..65535",
				"spec.http[2].redirect.derivePort: port and derivePort are mutually exclusive",
				`spec.http[3].redirect.derivePort: "SOMEWHERE" is not FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT`,
			},
		},
		{
			name: "directResponse",
			http: "  http:\n  - directResponse: {status: 199}\n  - directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n" +
				"  - directResponse: {status: 200, body: {bytes: \"not base64!\"}}\n",
			wantErrs: []string{
				"spec.http[0].directResponse.status: 199 is not an HTTP status (200..599)",
				"spec.http[1].directResponse.body: string and bytes are mutually exclusive",
				"spec.http[2].directResponse.body.bytes: not base64",
			},
		},
		{
			name: "rewrite and the authority",
			http: "  http:\n  - rewrite: {}\n" + route +
				"  - rewrite: {uri: /a, uriRegexRewrite: {match: a}}\n" + route +
				"  - rewrite: {authority: a}\n    headers: {request: {set: {\":authority\": b}}}\n" + route,
			wantErrs: []string{
				"spec.http[0].rewrite: one of uri, uriRegexRewrite or authority is required",
				"spec.http[1].rewrite: uri and uriRegexRewrite are mutually exclusive",
				"spec.http[1].rewrite.uriRegexRewrite.rewrite: required",
				`spec.http[2].headers.request.set[":authority"]: the authority is already rewritten by spec.http[2].rewrite.authority`,
			},
		},
		{
			name: "header operations",
			http: "  http:\n  - headers:\n      request: {set: {\":path\": /x, host: h}, add: {\"\": v, x: \"a\\nb\"}, remove: [\":method\", Host]}\n" +
				"      response: {set: {host: h}, remove: [\"\"]}\n" + route,
			wantErrs: []string{
				`spec.http[0].headers.request.set[":path"]: header ":path" cannot be modified`,
				`spec.http[0].headers.request.add[""]: header name must not be empty`,
				`spec.http[0].headers.request.add.x: value contains a control character`,
				`spec.http[0].headers.request.remove[0]: header ":method" cannot be removed`,
				`spec.http[0].headers.request.remove[1]: header "Host" cannot be removed`,
				`spec.http[0].headers.response.set.host: header "host" cannot be modified`,
				`spec.http[0].headers.response.remove[0]: header name must not be empty`,
			},
		},
		{
			name: "mirrors",
			http: "  http:\n  - mirror: {host: a}\n    mirrors: [{destination: {host: b}, percentage: {value: 200}}]\n    mirrorPercent: 101\n    mirrorPercentage: {value: 5}\n" + route +
				"  - mirrorPercentage: {value: 5}\n" + route,
			wantErrs: []string{
				"spec.http[0].mirrors: mirror and mirrors are mutually exclusive",
				"spec.http[0].mirrors[0].percentage.value: 200 out of range, want 0..100",
				"spec.http[0].mirrorPercent: 101 out of range, want 0..100",
				"spec.http[0].mirrorPercent: mirrorPercent and mirrorPercentage are mutually exclusive",
			},
			wantWarns: []string{"spec.http[1].mirrorPercentage: has no effect without mirror, ignored"},
		},
		{
			name: "gateways and the matches decided at compile time",
			http: "  gateways: [edge]\n  http:\n  - match:\n    - gateways: [edge]\n      sourceNamespace: Prod\n      statPrefix: s\n" + route +
				"  tcp:\n  - match: [{destinationSubnets: [10.0.0.0/8], sourceSubnet: 10.1.0.0/16, port: 0}]\n    route:\n    - destination: {host: mongo}\n",
			wantErrs: []string{
				`spec.http[0].match[0].sourceNamespace: "Prod" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`,
			},
			wantWarns: []string{
				"spec.gateways: binds the VirtualService to gateways only, which are not implemented: it does not apply to sidecars",
				"spec.http[0].match[0].gateways: names gateways only, which are not implemented: this match never applies to sidecars",
				"spec.http[0].match[0].statPrefix: not implemented yet, ignored",
				"spec.tcp[0].match[0].destinationSubnets: not implemented yet, ignored",
				"spec.tcp[0].match[0].sourceSubnet: not implemented yet, ignored",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs, warns := validateVS(t, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [reviews]\n"+tc.http)
			if diff := cmp.Diff(tc.wantErrs, errs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWarns, warns); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRetryOn(t *testing.T) {
	conds, codes, bad := ParseRetryOn(" 5xx ,503,cancelled,x,429")
	if diff := cmp.Diff([]string{"5xx", "cancelled"}, conds); diff != "" {
		t.Errorf("conditions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint32{503, 429}, codes); diff != "" {
		t.Errorf("codes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"x"}, bad); diff != "" {
		t.Errorf("bad (-want +got):\n%s", diff)
	}
	for name, want := range map[string]int64{"OK": 0, "UNAVAILABLE": 14, "UNAUTHENTICATED": 16, "unavailable": -1} {
		got := int64(-1)
		if c, ok := GRPCStatusCode(name); ok {
			got = int64(c)
		}
		if got != want {
			t.Errorf("GRPCStatusCode(%q) = %d, want %d", name, got, want)
		}
	}
}
