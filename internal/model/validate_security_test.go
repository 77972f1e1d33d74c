package model

import (
	"errors"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// secCase is one document and what Validate must say about it: at most one
// error (path and a substring of its reason) and at most one warning (a
// substring). Both empty: the document is valid and clean.
type secCase struct {
	name   string
	doc    string
	path   string
	reason string
	warn   string
}

// secDoc builds a document of kind from its spec, written as block YAML
// without indentation.
func secDoc(kind, spec string) string {
	var b strings.Builder
	b.WriteString("apiVersion: security.istio.io/v1\nkind: " + kind + "\nmetadata: {name: p, namespace: foo}\nspec:\n")
	for _, line := range strings.Split(strings.TrimSpace(spec), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

func pa(spec string) string { return secDoc(KindPeerAuthentication, spec) }
func ap(spec string) string { return secDoc(KindAuthorizationPolicy, spec) }
func ra(spec string) string { return secDoc(KindRequestAuthentication, spec) }

// decodeUnvalidated decodes one document with the schema checks of Decode
// but without Validate, so that a test sees what Validate returns.
func decodeUnvalidated(t testing.TB, doc string) Object {
	t.Helper()
	js, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		t.Fatalf("YAML: %v\n%s", err, doc)
	}
	obj, ferrs := decodeDocument(js)
	if len(ferrs) > 0 {
		t.Fatalf("decode: %v\n%s", ferrs[0], doc)
	}
	return obj
}

// fieldErrors unwraps Validate's joined error.
func fieldErrors(t testing.TB, err error) []*FieldError {
	t.Helper()
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T is not joined: %v", err, err)
	}
	var out []*FieldError
	for _, e := range j.Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("not a *FieldError: %#v", e)
		}
		out = append(out, fe)
	}
	return out
}

func runSecCases(t *testing.T, cases []secCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			warns, err := Validate(decodeUnvalidated(t, tc.doc))
			errs := fieldErrors(t, err)
			switch {
			case tc.path == "" && tc.reason == "":
				if len(errs) > 0 {
					t.Errorf("want no error, got:\n%v", err)
				}
			case len(errs) != 1:
				t.Errorf("want one error at %s (%q), got %d:\n%v", tc.path, tc.reason, len(errs), err)
			case errs[0].Path != tc.path || !strings.Contains(errs[0].Reason, tc.reason):
				t.Errorf("got error %s: %s\nwant %s: ...%s...", errs[0].Path, errs[0].Reason, tc.path, tc.reason)
			}
			switch {
			case tc.warn == "":
				if len(warns) > 0 {
					t.Errorf("want no warning, got:\n%s", strings.Join(warns, "\n"))
				}
			case len(warns) != 1 || !strings.Contains(warns[0], tc.warn):
				t.Errorf("want one warning with %q, got:\n%s", tc.warn, strings.Join(warns, "\n"))
			}
		})
	}
}

func TestValidatePeerAuthentication(t *testing.T) {
	runSecCases(t, []secCase{
		{name: "mesh-wide STRICT", doc: pa("mtls: {mode: STRICT}")},
		{name: "no mtls is UNSET", doc: pa("selector: {matchLabels: {app: a}}")},
		{name: "port level with selector", doc: pa("selector: {matchLabels: {app.kubernetes.io/name: a, version: v1}}\nportLevelMtls: {\"8080\": {mode: PERMISSIVE}, \"65535\": {}}")},
		{name: "mode is case-sensitive", doc: pa("mtls: {mode: strict}"),
			path: "spec.mtls.mode", reason: `"strict" is not one of UNSET, DISABLE, PERMISSIVE, STRICT`},
		{name: "port 0", doc: pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {\"0\": {mode: DISABLE}}"),
			path: `spec.portLevelMtls["0"]`, reason: `"0" is not a port number 1..65535`},
		{name: "port 70000", doc: pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {\"70000\": {mode: DISABLE}}"),
			path: `spec.portLevelMtls["70000"]`, reason: "not a port number"},
		{name: "port by name", doc: pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {http: {mode: DISABLE}}"),
			path: "spec.portLevelMtls.http", reason: `"http" is not a port number`},
		{name: "port with leading zero", doc: pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {\"080\": {mode: DISABLE}}"),
			path: `spec.portLevelMtls["080"]`, reason: "not a port number"},
		{name: "port mode", doc: pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {\"8080\": {mode: \"OFF\"}}"),
			path: `spec.portLevelMtls["8080"].mode`, reason: `"OFF" is not one of`},
		{name: "port level without selector", doc: pa("mtls: {mode: STRICT}\nportLevelMtls: {\"8080\": {mode: DISABLE}}"),
			path: "spec.portLevelMtls", reason: "requires spec.selector"},
		{name: "port level with an empty selector", doc: pa("selector: {matchLabels: {}}\nportLevelMtls: {\"8080\": {mode: DISABLE}}"),
			path: "spec.portLevelMtls", reason: "requires spec.selector", warn: "spec.selector: a selector without matchLabels"},
		{name: "empty port level", doc: pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {}"),
			path: "spec.portLevelMtls", reason: "must name at least one port"},
		{name: "empty selector", doc: pa("selector: {}"), warn: "selects every workload of the namespace"},
		{name: "wildcard label", doc: pa("selector: {matchLabels: {\"app*\": a}}"),
			path: `spec.selector.matchLabels["app*"]`, reason: "wildcards are not supported in a selector"},
		{name: "wildcard value", doc: pa("selector: {matchLabels: {app: \"*\"}}"),
			path: "spec.selector.matchLabels.app", reason: "wildcards are not supported"},
		{name: "label value", doc: pa("selector: {matchLabels: {app: a b}}"),
			path: "spec.selector.matchLabels.app", reason: `label value "a b"`},
		{name: "label name", doc: pa("selector: {matchLabels: {-app: a}}"),
			path: `spec.selector.matchLabels["-app"]`, reason: "the name must be 1..63"},
		{name: "label prefix", doc: pa("selector: {matchLabels: {Example.com/app: a}}"),
			path: `spec.selector.matchLabels["Example.com/app"]`, reason: "prefix must be a lowercase DNS subdomain"},
		{name: "empty label key", doc: pa("selector: {matchLabels: {\"\": a}}"),
			path: `spec.selector.matchLabels[""]`, reason: "label key must not be empty"},
	})
}

func TestValidateAuthorizationPolicyPolicy(t *testing.T) {
	runSecCases(t, []secCase{
		{name: "allow nothing", doc: ap("{}")},
		{name: "audit without rules", doc: ap("action: AUDIT")},
		{name: "custom", doc: ap("action: CUSTOM\nprovider: {name: ext}\nrules: [{}]"),
			path: "spec.action", reason: "CUSTOM (ext_authz) is not supported"},
		{name: "action case", doc: ap("action: allow"),
			path: "spec.action", reason: `"allow" is not one of ALLOW, DENY, AUDIT`},
		{name: "provider without custom", doc: ap("action: DENY\nprovider: {name: ext}\nrules: [{}]"),
			path: "spec.provider", reason: "only with action CUSTOM"},
		{name: "targetRef", doc: ap("targetRef: {kind: Service, name: a}"),
			path: "spec.targetRef", reason: "not supported: select workloads with spec.selector"},
		{name: "targetRefs", doc: ap("targetRefs: [{kind: Service, name: a}]"),
			path: "spec.targetRefs", reason: "not supported: select workloads with spec.selector"},
		{name: "deny without rules", doc: ap("action: DENY"),
			path: "spec.rules", reason: "a DENY policy without rules never matches"},
		{name: "empty from", doc: ap("rules: [{from: []}]"),
			path: "spec.rules[0].from", reason: "must not be empty"},
		{name: "from without source", doc: ap("rules: [{from: [{}]}]"),
			path: "spec.rules[0].from[0].source", reason: "required"},
		{name: "empty source", doc: ap("rules: [{from: [{source: {}}]}]"),
			path: "spec.rules[0].from[0].source", reason: "must not be empty"},
		{name: "empty to", doc: ap("rules: [{to: []}]"),
			path: "spec.rules[0].to", reason: "must not be empty"},
		{name: "to without operation", doc: ap("rules: [{to: [{}]}]"),
			path: "spec.rules[0].to[0].operation", reason: "required"},
		{name: "empty operation", doc: ap("rules: [{to: [{operation: {}}]}]"),
			path: "spec.rules[0].to[0].operation", reason: "must not be empty"},
	})
}

func TestValidateAuthorizationPolicySource(t *testing.T) {
	src := func(s string) string {
		return ap("rules:\n- from:\n  - source: {principals: [\"*\"]}\n  - source: " + s)
	}
	runSecCases(t, []secCase{
		{name: "principals", doc: src(`{principals: ["cluster.local/ns/a/sa/b", "cluster.local/ns/a/*", "*/sa/b", "*"]}`)},
		{name: "empty principal", doc: src(`{principals: [""]}`),
			path: "spec.rules[0].from[1].source.principals[0]", reason: "must not be empty"},
		{name: "principal wildcard in the middle", doc: src(`{principals: ["cluster.local/ns/*/sa/b"]}`),
			path: "spec.rules[0].from[1].source.principals[0]", reason: "'*' is only allowed as the whole value, a prefix"},
		{name: "principal with two wildcards", doc: src(`{notPrincipals: ["*a*"]}`),
			path: "spec.rules[0].from[1].source.notPrincipals[0]", reason: "'*' is only allowed"},
		{name: "spiffe principal", doc: src(`{principals: ["spiffe://cluster.local/ns/a/sa/b"]}`),
			path: "spec.rules[0].from[1].source.principals[0]", reason: `write principals without "spiffe://"`},
		{name: "namespace wildcard", doc: src(`{namespaces: [ok, "a*b"]}`),
			path: "spec.rules[0].from[1].source.namespaces[1]", reason: "'*' is only allowed"},
		{name: "request principal wildcard", doc: src(`{notRequestPrincipals: ["iss/*/x"]}`),
			path: "spec.rules[0].from[1].source.notRequestPrincipals[0]", reason: "'*' is only allowed"},
		{name: "ip blocks", doc: src(`{ipBlocks: ["1.2.3.4", "10.0.0.0/8", "2001:db8::/32", "::1"]}`)},
		{name: "bad CIDR", doc: src(`{ipBlocks: ["1.2.3.4", "10.0.0.0/8", "10.0.0.0/33"]}`),
			path: "spec.rules[0].from[1].source.ipBlocks[2]", reason: `"10.0.0.0/33" is not an IP address or CIDR range`},
		{name: "bad remote IP", doc: src(`{remoteIpBlocks: [not-an-ip]}`),
			path: "spec.rules[0].from[1].source.remoteIpBlocks[0]", reason: "is not an IP address or CIDR range"},
		{name: "not IP blocks", doc: src(`{notIpBlocks: ["1.2.3"]}`),
			path: "spec.rules[0].from[1].source.notIpBlocks[0]", reason: "is not an IP address"},
		{name: "zone", doc: src(`{notRemoteIpBlocks: ["fe80::1%eth0"]}`),
			path: "spec.rules[0].from[1].source.notRemoteIpBlocks[0]", reason: "an IPv6 zone is not allowed"},
		{name: "host bits", doc: src(`{ipBlocks: ["10.1.2.3/8"]}`), warn: `spec.rules[0].from[1].source.ipBlocks[0]: "10.1.2.3/8" has bits set outside its prefix length: it matches 10.0.0.0/8`},
	})
}

func TestValidateAuthorizationPolicyOperation(t *testing.T) {
	op := func(s string) string { return ap("rules:\n- to:\n  - operation: " + s) }
	runSecCases(t, []secCase{
		{name: "valid", doc: op(`{hosts: ["*.example.com", "a.b:8080", "*"], ports: ["1", "65535"], methods: [GET, PURGE], paths: ["/", "/api/*", "*.php", "*"]}`)},
		{name: "port 0", doc: op(`{ports: ["0"]}`), path: "spec.rules[0].to[0].operation.ports[0]", reason: `"0" is not a port number 1..65535`},
		{name: "port too big", doc: op(`{notPorts: ["65536"]}`), path: "spec.rules[0].to[0].operation.notPorts[0]", reason: "not a port number"},
		{name: "port name", doc: op(`{ports: [http]}`), path: "spec.rules[0].to[0].operation.ports[0]", reason: "not a port number"},
		{name: "lowercase method", doc: op(`{methods: [get]}`), warn: `spec.rules[0].to[0].operation.methods[0]: methods are case-sensitive: "get" does not match "GET"`},
		{name: "method with a space", doc: op(`{notMethods: ["GET POST"]}`),
			path: "spec.rules[0].to[0].operation.notMethods[0]", reason: "is not an HTTP method"},
		{name: "empty method", doc: op(`{methods: [""]}`), path: "spec.rules[0].to[0].operation.methods[0]", reason: "must not be empty"},
		{name: "relative path", doc: op(`{paths: [admin]}`),
			path: "spec.rules[0].to[0].operation.paths[0]", reason: `"admin" must start with "/"`},
		{name: "path template", doc: op(`{paths: ["/api/{*}/x"]}`),
			path: "spec.rules[0].to[0].operation.paths[0]", reason: "path templates are not supported"},
		{name: "path template any", doc: op(`{notPaths: ["/api/{**}"]}`),
			path: "spec.rules[0].to[0].operation.notPaths[0]", reason: "path templates are not supported"},
		{name: "path wildcard in the middle", doc: op(`{paths: ["/a*b"]}`),
			path: "spec.rules[0].to[0].operation.paths[0]", reason: "'*' is only allowed"},
		{name: "empty path", doc: op(`{paths: [""]}`), path: "spec.rules[0].to[0].operation.paths[0]", reason: "must not be empty"},
		{name: "path with query", doc: op(`{paths: ["/admin?x=1"]}`), warn: "matched without the query"},
		{name: "path with merged slashes", doc: op(`{paths: ["//admin"]}`), warn: `"//admin": merged slashes; requests are matched after normalization`},
		{name: "path with dot segment", doc: op(`{paths: ["/a/../admin*"]}`), warn: "dot segments are removed"},
		{name: "path with backslash", doc: op(`{notPaths: ["/a\\b"]}`), warn: "backslash"},
		{name: "path with encoded letter", doc: op(`{paths: ["/%61dmin"]}`), warn: "%61 is decoded"},
		{name: "path with encoded slash", doc: op(`{paths: ["/a%2fb"]}`), warn: "%2f is decoded"},
		{name: "path with lowercase escape", doc: op(`{paths: ["/a%3ab"]}`), warn: "%3a is uppercased"},
		{name: "path with malformed escape", doc: op(`{paths: ["/a%zz"]}`), warn: "malformed %-escape"},
		{name: "path with escape", doc: op(`{paths: ["/a%3Ab", "/%E2%82%AC"]}`)},
		{name: "empty host", doc: op(`{hosts: [""]}`), path: "spec.rules[0].to[0].operation.hosts[0]", reason: "must not be empty"},
		{name: "host wildcard in the middle", doc: op(`{notHosts: ["a.*.com"]}`),
			path: "spec.rules[0].to[0].operation.notHosts[0]", reason: "'*' is only allowed"},
	})
}

func TestValidateAuthorizationPolicyWhen(t *testing.T) {
	when := func(s string) string {
		return ap("rules:\n- when:\n  - {key: source.ip, values: [10.0.0.1]}\n  - " + s)
	}
	const p = "spec.rules[0].when[1]"
	runSecCases(t, []secCase{
		{name: "every key", doc: ap(`rules:
- when:
  - {key: "request.headers[x-user]", values: [admin], notValues: [guest]}
  - {key: "request.headers[:authority]", values: [a.example]}
  - {key: source.ip, values: [10.0.0.0/8]}
  - {key: remote.ip, notValues: ["2001:db8::1"]}
  - {key: source.namespace, values: [foo, "bar*"]}
  - {key: source.principal, values: [cluster.local/ns/a/sa/b]}
  - {key: request.auth.principal, values: ["iss/*"]}
  - {key: request.auth.audiences, values: [api]}
  - {key: request.auth.presenter, values: [app]}
  - {key: "request.auth.claims[groups]", values: [g1]}
  - {key: "request.auth.claims[a][b][c]", values: [x]}
  - {key: destination.ip, values: [127.0.0.1]}
  - {key: destination.port, values: ["8080"]}
  - {key: connection.sni, values: [a.example]}`)},
		{name: "no key", doc: when("{values: [a]}"), path: p + ".key", reason: "required"},
		{name: "no values", doc: when("{key: source.ip}"), path: p, reason: "one of values or notValues is required"},
		{name: "empty header name", doc: when(`{key: "request.headers[]", values: [a]}`), path: p + ".key", reason: "want request.headers[NAME]"},
		{name: "unclosed header", doc: when(`{key: "request.headers[x-a", values: [a]}`), path: p + ".key", reason: "want request.headers[NAME]"},
		{name: "header name with space", doc: when(`{key: "request.headers[x a]", values: [a]}`), path: p + ".key", reason: "want request.headers[NAME]"},
		{name: "empty nested claim", doc: when(`{key: "request.auth.claims[a][]", values: [a]}`), path: p + ".key", reason: "want request.auth.claims[NAME]"},
		{name: "claim with junk", doc: when(`{key: "request.auth.claims[a]b", values: [a]}`), path: p + ".key", reason: "want request.auth.claims[NAME]"},
		{name: "claims without name", doc: when(`{key: request.auth.claims, values: [a]}`), path: p + ".key", reason: `unknown key "request.auth.claims"`},
		{name: "experimental", doc: when(`{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}`),
			path: p + ".key", reason: "experimental.envoy.filters.* keys are not supported"},
		{name: "service account", doc: when(`{key: source.serviceAccount, values: [a/b]}`), path: p + ".key", reason: `"source.serviceAccount" is not supported`},
		{name: "destination labels", doc: when(`{key: "destination.labels[app]", values: [a]}`), path: p + ".key", reason: "use spec.selector"},
		{name: "destination namespace", doc: when(`{key: destination.namespace, values: [a]}`), path: p + ".key", reason: "use the policy's namespace"},
		{name: "unknown key", doc: when(`{key: source.user, values: [a]}`), path: p + ".key", reason: `unknown key "source.user"; want one of request.headers[NAME], source.ip`},
		{name: "source IP", doc: when(`{key: source.ip, values: [10.0.0.0/8, bad]}`), path: p + ".values[1]", reason: `"bad" is not an IP address`},
		{name: "remote IP", doc: when(`{key: remote.ip, notValues: ["300.1.1.1"]}`), path: p + ".notValues[0]", reason: "is not an IP address"},
		{name: "destination IP", doc: when(`{key: destination.ip, values: ["1.2.3.4/40"]}`), path: p + ".values[0]", reason: "is not an IP address"},
		{name: "destination port", doc: when(`{key: destination.port, values: [http]}`), path: p + ".values[0]", reason: "not a port number"},
		{name: "source principal", doc: when(`{key: source.principal, notValues: ["spiffe://cluster.local/ns/a/sa/b"]}`),
			path: p + ".notValues[0]", reason: `without "spiffe://"`},
		{name: "source namespace", doc: when(`{key: source.namespace, values: ["*a*"]}`), path: p + ".values[0]", reason: "'*' is only allowed"},
		{name: "empty value", doc: when(`{key: "request.headers[x-a]", values: [""]}`), path: p + ".values[0]", reason: "must not be empty"},
		{name: "empty audience", doc: when(`{key: request.auth.audiences, values: [""]}`), path: p + ".values[0]", reason: "must not be empty"},
	})
}

// TestIstioSecurityExamples: Istio's documented examples are accepted with
// no error, no warning and no conflict.
func TestIstioSecurityExamples(t *testing.T) {
	data, err := os.ReadFile("testdata/security/istio-docs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(data, "istio-docs.yaml")
	if err != nil {
		t.Fatalf("Decode:\n%v", err)
	}
	count := map[string]int{}
	for _, o := range objs {
		count[o.GetTypeMeta().Kind]++
		warns, err := Validate(o)
		if err != nil || len(warns) > 0 {
			t.Errorf("%s: err %v, warnings %q", o.Key(), err, warns)
		}
	}
	want := map[string]int{KindPeerAuthentication: 4, KindAuthorizationPolicy: 14, KindRequestAuthentication: 3}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d %s examples, want %d", count[k], k, n)
		}
	}
	if w := CheckReferences(objs); len(w) > 0 {
		t.Errorf("CheckReferences: %q", w)
	}
}
