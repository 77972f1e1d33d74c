package compile

import (
	"sort"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/trellis-mesh/trellis/internal/model"
)

// mustJSON parses protojson into a new message of m's type.
func mustJSON[M proto.Message](t *testing.T, m M, s string) M {
	t.Helper()
	if err := protojson.Unmarshal([]byte(s), m); err != nil {
		t.Fatalf("bad expectation %s: %v", s, err)
	}
	return m
}

// Expected encodings, written out as protojson so that the table does not
// reuse the code under test.
const (
	jAuthn     = `{"authenticated":{"principalName":%s}}`
	jAnyPeer   = `{"authenticated":{"principalName":{"prefix":"spiffe://"}}}`
	jMetaStart = `{"metadata":{"filter":"istio_authn","path":[`
)

// TestAuthzSourceFields checks the Principal each source field (from[].source)
// produces: an or_ids of its values, a not_id(or_ids) of its not-values.
func TestAuthzSourceFields(t *testing.T) {
	cases := []struct {
		name string
		src  model.AuthzSource
		want []string // one Principal per field part
	}{
		{"principal exact", model.AuthzSource{Principals: []string{"cluster.local/ns/default/sa/a"}},
			[]string{`{"orIds":{"ids":[{"authenticated":{"principalName":{"exact":"spiffe://cluster.local/ns/default/sa/a"}}}]}}`}},
		{"principal any authenticated", model.AuthzSource{Principals: []string{"*"}},
			[]string{`{"orIds":{"ids":[` + jAnyPeer + `]}}`}},
		{"principal prefix and suffix", model.AuthzSource{Principals: []string{"cluster.local/ns/prod/*", "*/sa/admin"}},
			[]string{`{"orIds":{"ids":[{"authenticated":{"principalName":{"prefix":"spiffe://cluster.local/ns/prod/"}}},{"authenticated":{"principalName":{"suffix":"/sa/admin"}}}]}}`}},
		{"notPrincipals", model.AuthzSource{NotPrincipals: []string{"cluster.local/ns/default/sa/evil"}},
			[]string{`{"notId":{"orIds":{"ids":[{"authenticated":{"principalName":{"exact":"spiffe://cluster.local/ns/default/sa/evil"}}}]}}}`}},
		{"namespaces", model.AuthzSource{Namespaces: []string{"default", "prod-*", "*"}},
			[]string{`{"orIds":{"ids":[` +
				`{"authenticated":{"principalName":{"safeRegex":{"regex":"^spiffe://[^/]+/ns/default/sa/[^/]+$"}}}},` +
				`{"authenticated":{"principalName":{"safeRegex":{"regex":"^spiffe://[^/]+/ns/prod-[^/]*/sa/[^/]+$"}}}},` +
				`{"authenticated":{"principalName":{"safeRegex":{"regex":"^spiffe://[^/]+/ns/[^/]*/sa/[^/]+$"}}}}]}}`}},
		{"namespace regex metacharacters quoted", model.AuthzSource{Namespaces: []string{"a.b"}},
			[]string{`{"orIds":{"ids":[{"authenticated":{"principalName":{"safeRegex":{"regex":"^spiffe://[^/]+/ns/a\\.b/sa/[^/]+$"}}}}]}}`}},
		{"notNamespaces", model.AuthzSource{NotNamespaces: []string{"kube-system"}},
			[]string{`{"notId":{"orIds":{"ids":[{"authenticated":{"principalName":{"safeRegex":{"regex":"^spiffe://[^/]+/ns/kube-system/sa/[^/]+$"}}}}]}}}`}},
		{"ipBlocks: CIDR (masked), bare v4, bare v6", model.AuthzSource{IPBlocks: []string{"10.1.2.3/8", "192.168.1.7", "2001:db8::1"}},
			[]string{`{"orIds":{"ids":[` +
				`{"directRemoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}},` +
				`{"directRemoteIp":{"addressPrefix":"192.168.1.7","prefixLen":32}},` +
				`{"directRemoteIp":{"addressPrefix":"2001:db8::1","prefixLen":128}}]}}`}},
		{"notIpBlocks", model.AuthzSource{NotIPBlocks: []string{"10.1.2.3"}},
			[]string{`{"notId":{"orIds":{"ids":[{"directRemoteIp":{"addressPrefix":"10.1.2.3","prefixLen":32}}]}}}`}},
		{"remoteIpBlocks and not", model.AuthzSource{RemoteIPBlocks: []string{"203.0.113.0/24"}, NotRemoteIPBlocks: []string{"203.0.113.9"}},
			[]string{
				`{"orIds":{"ids":[{"remoteIp":{"addressPrefix":"203.0.113.0","prefixLen":24}}]}}`,
				`{"notId":{"orIds":{"ids":[{"remoteIp":{"addressPrefix":"203.0.113.9","prefixLen":32}}]}}}`,
			}},
		{"requestPrincipals", model.AuthzSource{RequestPrincipals: []string{"https://iss/sub", "*"}},
			[]string{`{"orIds":{"ids":[` +
				jMetaStart + `{"key":"request.auth.principal"}],"value":{"stringMatch":{"exact":"https://iss/sub"}}}},` +
				jMetaStart + `{"key":"request.auth.principal"}],"value":{"stringMatch":{"safeRegex":{"regex":".+"}}}}}]}}`}},
		{"notRequestPrincipals", model.AuthzSource{NotRequestPrincipals: []string{"*/banned"}},
			[]string{`{"notId":{"orIds":{"ids":[` + jMetaStart + `{"key":"request.auth.principal"}],"value":{"stringMatch":{"suffix":"/banned"}}}}]}}}`}},
		{"fields in order: principals, request principals, namespaces, IPs, remote IPs",
			model.AuthzSource{RemoteIPBlocks: []string{"1.1.1.1"}, Namespaces: []string{"a"}, Principals: []string{"x"}},
			[]string{
				`{"orIds":{"ids":[{"authenticated":{"principalName":{"exact":"spiffe://x"}}}]}}`,
				`{"orIds":{"ids":[{"authenticated":{"principalName":{"safeRegex":{"regex":"^spiffe://[^/]+/ns/a/sa/[^/]+$"}}}}]}}`,
				`{"orIds":{"ids":[{"remoteIp":{"addressPrefix":"1.1.1.1","prefixLen":32}}]}}`,
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ruleBuilder{allow: true}.source(&tc.src)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]*rbacv3.Principal, len(tc.want))
			for i, s := range tc.want {
				want[i] = mustJSON(t, &rbacv3.Principal{}, s)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestAuthzOperationFields checks the Permission each operation field
// (to[].operation) produces.
func TestAuthzOperationFields(t *testing.T) {
	authority := func(m string) string { return `{"header":{"name":":authority","stringMatch":` + m + `}}` }
	cases := []struct {
		name string
		op   model.AuthzOperation
		want []string
	}{
		{"host: exact, or with any port, any case", model.AuthzOperation{Hosts: []string{"Secret.example"}},
			[]string{`{"orRules":{"rules":[{"orRules":{"rules":[` +
				authority(`{"exact":"Secret.example","ignoreCase":true}`) + `,` +
				authority(`{"prefix":"Secret.example:","ignoreCase":true}`) + `]}}]}}`}},
		{"host with a port: exactly", model.AuthzOperation{Hosts: []string{"api.example:8080"}},
			[]string{`{"orRules":{"rules":[` + authority(`{"exact":"api.example:8080","ignoreCase":true}`) + `]}}`}},
		{"host suffix wildcard, with or without port", model.AuthzOperation{Hosts: []string{"*.internal"}},
			[]string{`{"orRules":{"rules":[{"orRules":{"rules":[` +
				authority(`{"suffix":".internal","ignoreCase":true}`) + `,` +
				authority(`{"safeRegex":{"regex":"(?i)^.*\\.internal:[0-9]+$"}}`) + `]}}]}}`}},
		{"host prefix wildcard", model.AuthzOperation{Hosts: []string{"api.*"}},
			[]string{`{"orRules":{"rules":[` + authority(`{"prefix":"api.","ignoreCase":true}`) + `]}}`}},
		{"host any", model.AuthzOperation{Hosts: []string{"*"}},
			[]string{`{"orRules":{"rules":[{"header":{"name":":authority","presentMatch":true}}]}}`}},
		{"notHosts", model.AuthzOperation{NotHosts: []string{"a:1"}},
			[]string{`{"notRule":{"orRules":{"rules":[` + authority(`{"exact":"a:1","ignoreCase":true}`) + `]}}}`}},
		{"ports and notPorts", model.AuthzOperation{Ports: []string{"8080", "9090"}, NotPorts: []string{"15000"}},
			[]string{
				`{"orRules":{"rules":[{"destinationPort":8080},{"destinationPort":9090}]}}`,
				`{"notRule":{"orRules":{"rules":[{"destinationPort":15000}]}}}`,
			}},
		{"methods", model.AuthzOperation{Methods: []string{"GET", "POST"}},
			[]string{`{"orRules":{"rules":[{"header":{"name":":method","stringMatch":{"exact":"GET"}}},{"header":{"name":":method","stringMatch":{"exact":"POST"}}}]}}`}},
		{"notMethods", model.AuthzOperation{NotMethods: []string{"GET"}},
			[]string{`{"notRule":{"orRules":{"rules":[{"header":{"name":":method","stringMatch":{"exact":"GET"}}}]}}}`}},
		{"paths: exact, prefix, suffix, any", model.AuthzOperation{Paths: []string{"/admin", "/api/*", "*.json", "*"}},
			[]string{`{"orRules":{"rules":[` +
				`{"urlPath":{"path":{"exact":"/admin"}}},` +
				`{"urlPath":{"path":{"prefix":"/api/"}}},` +
				`{"urlPath":{"path":{"suffix":".json"}}},` +
				`{"urlPath":{"path":{"safeRegex":{"regex":".+"}}}}]}}`}},
		{"notPaths", model.AuthzOperation{NotPaths: []string{"/internal*"}},
			[]string{`{"notRule":{"orRules":{"rules":[{"urlPath":{"path":{"prefix":"/internal"}}}]}}}`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ruleBuilder{allow: true}.operation(&tc.op)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]*rbacv3.Permission, len(tc.want))
			for i, s := range tc.want {
				want[i] = mustJSON(t, &rbacv3.Permission{}, s)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestAuthzConditions checks each when key: which side of the Policy it
// goes to (principal or permission, as Istio sorts them) and its encoding.
func TestAuthzConditions(t *testing.T) {
	claim := func(path, v string) string {
		return `{"orIds":{"ids":[` +
			jMetaStart + path + `],"value":{"stringMatch":{"exact":"` + v + `"}}}},` +
			jMetaStart + path + `],"value":{"listMatch":{"oneOf":{"stringMatch":{"exact":"` + v + `"}}}}}}]}}`
	}
	cases := []struct {
		cond      model.AuthzCondition
		principal []string
		permitted []string
	}{
		{model.AuthzCondition{Key: "request.headers[X-User]", Values: []string{"admin", "ops-*", "*"}}, []string{`{"orIds":{"ids":[` +
			`{"header":{"name":"x-user","stringMatch":{"exact":"admin"}}},` +
			`{"header":{"name":"x-user","stringMatch":{"prefix":"ops-"}}},` +
			`{"header":{"name":"x-user","presentMatch":true}}]}}`}, nil},
		{model.AuthzCondition{Key: "request.headers[x-user]", NotValues: []string{"*-bot"}},
			[]string{`{"notId":{"orIds":{"ids":[{"header":{"name":"x-user","stringMatch":{"suffix":"-bot"}}}]}}}`}, nil},
		{model.AuthzCondition{Key: "source.ip", Values: []string{"127.0.0.1"}},
			[]string{`{"orIds":{"ids":[{"directRemoteIp":{"addressPrefix":"127.0.0.1","prefixLen":32}}]}}`}, nil},
		{model.AuthzCondition{Key: "remote.ip", Values: []string{"10.0.0.0/8"}},
			[]string{`{"orIds":{"ids":[{"remoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}]}}`}, nil},
		{model.AuthzCondition{Key: "source.namespace", Values: []string{"default"}},
			[]string{`{"orIds":{"ids":[{"authenticated":{"principalName":{"safeRegex":{"regex":"^spiffe://[^/]+/ns/default/sa/[^/]+$"}}}}]}}`}, nil},
		{model.AuthzCondition{Key: "source.principal", Values: []string{"*"}},
			[]string{`{"orIds":{"ids":[` + jAnyPeer + `]}}`}, nil},
		{model.AuthzCondition{Key: "request.auth.principal", Values: []string{"iss/sub"}},
			[]string{`{"orIds":{"ids":[` + jMetaStart + `{"key":"request.auth.principal"}],"value":{"stringMatch":{"exact":"iss/sub"}}}}]}}`}, nil},
		{model.AuthzCondition{Key: "request.auth.audiences", Values: []string{"api"}},
			[]string{`{"orIds":{"ids":[` + jMetaStart + `{"key":"request.auth.audiences"}],"value":{"listMatch":{"oneOf":{"stringMatch":{"exact":"api"}}}}}}]}}`}, nil},
		{model.AuthzCondition{Key: "request.auth.presenter", Values: []string{"web"}},
			[]string{`{"orIds":{"ids":[` + jMetaStart + `{"key":"request.auth.presenter"}],"value":{"stringMatch":{"exact":"web"}}}}]}}`}, nil},
		{model.AuthzCondition{Key: "request.auth.claims[groups]", Values: []string{"admins"}},
			[]string{`{"orIds":{"ids":[` + claim(`{"key":"request.auth.claims"},{"key":"groups"}`, "admins") + `]}}`}, nil},
		{model.AuthzCondition{Key: "request.auth.claims[realm][role]", NotValues: []string{"guest"}},
			[]string{`{"notId":{"orIds":{"ids":[` + claim(`{"key":"request.auth.claims"},{"key":"realm"},{"key":"role"}`, "guest") + `]}}}`}, nil},
		{model.AuthzCondition{Key: "request.auth.claims[a.b]", Values: []string{"x"}},
			[]string{`{"orIds":{"ids":[` + claim(`{"key":"request.auth.claims"},{"key":"a.b"}`, "x") + `]}}`}, nil},
		{model.AuthzCondition{Key: "destination.ip", Values: []string{"127.0.0.0/8"}},
			nil, []string{`{"orRules":{"rules":[{"destinationIp":{"addressPrefix":"127.0.0.0","prefixLen":8}}]}}`}},
		{model.AuthzCondition{Key: "destination.port", Values: []string{"8080"}, NotValues: []string{"9090"}},
			nil, []string{
				`{"orRules":{"rules":[{"destinationPort":8080}]}}`,
				`{"notRule":{"orRules":{"rules":[{"destinationPort":9090}]}}}`,
			}},
		{model.AuthzCondition{Key: "connection.sni", Values: []string{"*.example.com"}},
			nil, []string{`{"orRules":{"rules":[{"requestedServerName":{"suffix":".example.com"}}]}}`}},
	}
	for _, tc := range cases {
		t.Run(tc.cond.Key, func(t *testing.T) {
			ids, rules, err := ruleBuilder{allow: true}.condition(tc.cond)
			if err != nil {
				t.Fatal(err)
			}
			var wantIDs []*rbacv3.Principal
			for _, s := range tc.principal {
				wantIDs = append(wantIDs, mustJSON(t, &rbacv3.Principal{}, s))
			}
			var wantRules []*rbacv3.Permission
			for _, s := range tc.permitted {
				wantRules = append(wantRules, mustJSON(t, &rbacv3.Permission{}, s))
			}
			if diff := cmp.Diff(wantIDs, ids, protocmp.Transform()); diff != "" {
				t.Errorf("principals (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantRules, rules, protocmp.Transform()); diff != "" {
				t.Errorf("permissions (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAuthzRule checks how a rule's parts combine into one Policy, and
// what a TCP port or an unusable part does to ALLOW and DENY rules.
func TestAuthzRule(t *testing.T) {
	const (
		anyID   = `[{"any":true}]`
		anyRule = `[{"any":true}]`
		fromA   = `{"andIds":{"ids":[{"orIds":{"ids":[{"authenticated":{"principalName":{"exact":"spiffe://a"}}}]}}]}}`
		nsB     = `{"orIds":{"ids":[{"authenticated":{"principalName":{"safeRegex":{"regex":"^spiffe://[^/]+/ns/b/sa/[^/]+$"}}}}]}}`
		toGet   = `{"andRules":{"rules":[{"orRules":{"rules":[{"header":{"name":":method","stringMatch":{"exact":"GET"}}}]}}]}}`
		port80  = `{"orRules":{"rules":[{"destinationPort":80}]}}`
		header  = `{"orIds":{"ids":[{"header":{"name":"x","stringMatch":{"exact":"1"}}}]}}`
	)
	full := model.AuthzRule{
		From: []model.AuthzFrom{{Source: &model.AuthzSource{Principals: []string{"a"}}}, {Source: &model.AuthzSource{Namespaces: []string{"b"}}}},
		To:   []model.AuthzTo{{Operation: &model.AuthzOperation{Methods: []string{"GET"}}}},
		When: []model.AuthzCondition{{Key: "destination.port", Values: []string{"80"}}, {Key: "request.headers[x]", Values: []string{"1"}}},
	}
	cases := []struct {
		name       string
		b          ruleBuilder
		rule       model.AuthzRule
		principals string // "" when the rule is dropped
		perms      string
	}{
		{"empty rule: any, any", ruleBuilder{allow: true}, model.AuthzRule{}, anyID, anyRule},
		{"from, to and when", ruleBuilder{allow: true}, full,
			`[{"andIds":{"ids":[{"orIds":{"ids":[` + fromA + `,{"andIds":{"ids":[` + nsB + `]}}]}},` + header + `]}}]`,
			`[{"andRules":{"rules":[{"orRules":{"rules":[` + toGet + `]}},` + port80 + `]}}]`},
		{"empty source and operation: any", ruleBuilder{allow: true},
			model.AuthzRule{From: []model.AuthzFrom{{}}, To: []model.AuthzTo{{Operation: &model.AuthzOperation{}}}},
			`[{"andIds":{"ids":[{"orIds":{"ids":[{"any":true}]}}]}}]`,
			`[{"andRules":{"rules":[{"orRules":{"rules":[{"any":true}]}}]}}]`},
		{"TCP ALLOW: an HTTP-only operation drops the rule", ruleBuilder{tcp: true, allow: true}, full, "", ""},
		{"TCP ALLOW: an HTTP-only source drops the rule", ruleBuilder{tcp: true, allow: true},
			model.AuthzRule{From: []model.AuthzFrom{{Source: &model.AuthzSource{Principals: []string{"a"}, NotRequestPrincipals: []string{"x"}}}}}, "", ""},
		{"TCP DENY: HTTP-only fields dropped", ruleBuilder{tcp: true}, full,
			`[{"andIds":{"ids":[{"orIds":{"ids":[` + fromA + `,{"andIds":{"ids":[` + nsB + `]}}]}}]}}]`,
			`[{"andRules":{"rules":[{"orRules":{"rules":[{"any":true}]}},` + port80 + `]}}]`},
		{"TCP ALLOW without HTTP fields kept", ruleBuilder{tcp: true, allow: true},
			model.AuthzRule{From: full.From, When: full.When[:1]},
			`[{"andIds":{"ids":[{"orIds":{"ids":[` + fromA + `,{"andIds":{"ids":[` + nsB + `]}}]}}]}}]`,
			`[{"andRules":{"rules":[` + port80 + `]}}]`},
		{"unknown key drops an ALLOW rule", ruleBuilder{allow: true},
			model.AuthzRule{When: []model.AuthzCondition{{Key: "experimental.envoy.filters.x[y]", Values: []string{"1"}}}}, "", ""},
		{"unknown key dropped from a DENY rule", ruleBuilder{},
			model.AuthzRule{To: full.To, When: []model.AuthzCondition{{Key: "request.auth.claims", Values: []string{"1"}}}},
			anyID, `[{"andRules":{"rules":[{"orRules":{"rules":[` + toGet + `]}}]}}]`},
		{"bad value drops an ALLOW rule", ruleBuilder{allow: true},
			model.AuthzRule{From: []model.AuthzFrom{{Source: &model.AuthzSource{IPBlocks: []string{"10.0.0.0/8", "nope"}}}}}, "", ""},
		{"bad value dropped from a DENY rule", ruleBuilder{},
			model.AuthzRule{From: []model.AuthzFrom{{Source: &model.AuthzSource{IPBlocks: []string{"nope", "10.0.0.0/8"}}}}},
			`[{"andIds":{"ids":[{"orIds":{"ids":[{"andIds":{"ids":[{"orIds":{"ids":[{"directRemoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}]}}]}}]}}]}}]`,
			anyRule},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.b.policy(&tc.rule)
			if tc.principals == "" {
				if err == nil {
					t.Fatalf("rule kept, want dropped: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := mustJSON(t, &rbacv3.Policy{}, `{"principals":`+tc.principals+`,"permissions":`+tc.perms+`}`)
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// authzPolicy is an AuthorizationPolicy selecting app: api.
func authzPolicy(ns, name, action string, rules ...model.AuthzRule) *model.AuthorizationPolicy {
	a := &model.AuthorizationPolicy{Spec: model.AuthorizationPolicySpec{
		Selector: &model.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
		Action:   action,
		Rules:    rules,
	}}
	a.Kind, a.APIVersion, a.Name, a.Namespace = model.KindAuthorizationPolicy, "security.istio.io/v1", name, ns
	return a
}

// TestAuthzFilters checks which rbac filters a workload gets, in which
// order, and the policy names in each.
func TestAuthzFilters(t *testing.T) {
	get := model.AuthzRule{To: []model.AuthzTo{{Operation: &model.AuthzOperation{Methods: []string{"GET"}}}}}
	path := model.AuthzRule{To: []model.AuthzTo{{Operation: &model.AuthzOperation{Paths: []string{"/x"}}}}}
	port := model.AuthzRule{To: []model.AuthzTo{{Operation: &model.AuthzOperation{Ports: []string{"8080"}}}}}
	cases := []struct {
		name     string
		policies []*model.AuthorizationPolicy
		tcp      bool
		want     []string // "filter: policy names"
	}{
		{"none", nil, false, nil},
		{"allow nothing: ALLOW filter without policies", []*model.AuthorizationPolicy{authzPolicy("default", "a", "")}, false,
			[]string{"trellis.rbac.allow:"}},
		{"deny and audit without an ALLOW", []*model.AuthorizationPolicy{
			authzPolicy("default", "d", model.AuthzDeny, get, path),
			authzPolicy("default", "l", model.AuthzAudit, get),
		}, false, []string{"trellis.rbac.deny: ns.default.d.rule.0 ns.default.d.rule.1", "trellis.rbac.audit: ns.default.l.rule.0"}},
		{"order deny, allow, audit; root namespace policies too", []*model.AuthorizationPolicy{
			authzPolicy(model.RootNamespace, "mesh", model.AuthzAllow, get),
			authzPolicy("default", "l", model.AuthzAudit, get),
			authzPolicy("default", "a", model.AuthzAllow, get, path),
			authzPolicy("default", "d", model.AuthzDeny, path),
			authzPolicy("other", "o", model.AuthzDeny, path),
		}, false, []string{
			"trellis.rbac.deny: ns.default.d.rule.0",
			"trellis.rbac.allow: ns.default.a.rule.0 ns.default.a.rule.1 ns.istio-system.mesh.rule.0",
			"trellis.rbac.audit: ns.default.l.rule.0",
		}},
		{"TCP: the ALLOW rule with a path dropped, keeping its index in names", []*model.AuthorizationPolicy{
			authzPolicy("default", "a", "", path, port, get),
		}, true, []string{"trellis.rbac.allow: ns.default.a.rule.1"}},
		{"TCP: a DENY policy whose rules lose their HTTP fields denies more", []*model.AuthorizationPolicy{
			authzPolicy("default", "d", model.AuthzDeny, path),
		}, true, []string{"trellis.rbac.deny: ns.default.d.rule.0"}},
		{"TCP: AUDIT on a port kept, its method dropped", []*model.AuthorizationPolicy{
			authzPolicy("default", "l", model.AuthzAudit, port, get),
		}, true, []string{"trellis.rbac.audit: ns.default.l.rule.0 ns.default.l.rule.1"}},
		{"invalid policy (CUSTOM) ignored", []*model.AuthorizationPolicy{authzPolicy("default", "c", model.AuthzCustom, get)}, false, nil},
		{"DENY without rules contributes nothing", []*model.AuthorizationPolicy{authzPolicy("default", "d", model.AuthzDeny)}, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := secWorkload("default", "api-v1", map[string]string{"app": "api"}, "8080:18080")
			c := &compiler{ix: NewIndex(&Input{Workloads: []*model.Workload{w}, AuthorizationPolicies: tc.policies}), self: w}
			var got []string
			for _, f := range c.authzFilters(tc.tcp) {
				names := make([]string, 0, len(f.rules.Policies))
				for n := range f.rules.Policies {
					names = append(names, n)
				}
				sort.Strings(names)
				got = append(got, strings.TrimSpace(f.name+": "+strings.Join(names, " ")))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("filters (-want +got):\n%s", diff)
			}
		})
	}
}
