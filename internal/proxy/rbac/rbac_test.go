package rbac

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

const client = "spiffe://test.local/ns/default/sa/client"

// baseRequest is an mTLS HTTP request from client.
func baseRequest() *fakeRequest {
	return &fakeRequest{
		peer:   client,
		direct: netip.MustParseAddr("10.1.2.3"), remote: netip.MustParseAddr("192.0.2.7"),
		dst: netip.MustParseAddr("10.9.9.9"), port: 8080, sni: "outbound_.8080_._.server",
		method: "GET", authority: "Server.example:8080", uri: "/api/v1?q=1", scheme: "https", path: "/api/v1",
		headers: [][2]string{{"x-user", "alice"}, {"accept", "*/*"}},
	}
}

func with(f func(r *fakeRequest)) *fakeRequest {
	r := baseRequest()
	f(r)
	return r
}

func TestEvaluateMatchers(t *testing.T) {
	tests := []struct {
		name string
		perm *rbacv3.Permission // nil: any
		prin *rbacv3.Principal  // nil: any
		req  *fakeRequest
		want bool
	}{
		// authenticated.principal_name with each StringMatcher kind.
		{name: "principal exact", prin: principalName(exact(client)), req: baseRequest(), want: true},
		{name: "principal exact other", prin: principalName(exact(client + "x")), req: baseRequest(), want: false},
		{name: "principal prefix", prin: principalName(prefix("spiffe://")), req: baseRequest(), want: true},
		{name: "principal prefix plaintext", prin: principalName(prefix("spiffe://")), req: with(func(r *fakeRequest) { r.peer = "" }), want: false},
		{name: "principal suffix", prin: principalName(suffix("/sa/client")), req: baseRequest(), want: true},
		{name: "principal contains", prin: principalName(contains("/ns/default/")), req: baseRequest(), want: true},
		{name: "principal contains no", prin: principalName(contains("/ns/prod/")), req: baseRequest(), want: false},
		{name: "principal regex namespace", prin: principalName(regex(`spiffe://[^/]+/ns/default/sa/[^/]+`)), req: baseRequest(), want: true},
		{name: "principal regex is anchored", prin: principalName(regex(`ns/default`)), req: baseRequest(), want: false},
		{name: "principal case sensitive", prin: principalName(exact(strings.ToUpper(client))), req: baseRequest(), want: false},
		{name: "principal ignore_case", prin: principalName(fold(exact(strings.ToUpper(client)))), req: baseRequest(), want: true},
		{name: "principal ignore_case prefix", prin: principalName(fold(prefix("SPIFFE://TEST"))), req: baseRequest(), want: true},
		{name: "authenticated any peer", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{}}}, req: baseRequest(), want: true},
		{name: "authenticated plaintext", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{}}}, req: with(func(r *fakeRequest) { r.peer = "" }), want: false},

		// Addresses.
		{name: "direct_remote_ip", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.1.0.0", 16)}}, req: baseRequest(), want: true},
		{name: "direct_remote_ip outside", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.2.0.0", 16)}}, req: baseRequest(), want: false},
		{name: "direct_remote_ip /32", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.1.2.3", 32)}}, req: baseRequest(), want: true},
		{name: "source_ip is direct", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_SourceIp{SourceIp: cidr("10.1.2.3", 32)}}, req: baseRequest(), want: true},
		{name: "remote_ip", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: cidr("192.0.2.0", 24)}}, req: baseRequest(), want: true},
		{name: "remote_ip is not direct", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: cidr("10.1.2.3", 32)}}, req: baseRequest(), want: false},
		{name: "ipv6", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr("2001:db8::", 32)}},
			req: with(func(r *fakeRequest) { r.direct = netip.MustParseAddr("2001:db8::1") }), want: true},
		{name: "v4-mapped address matches v4 prefix", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.1.2.3", 32)}},
			req: with(func(r *fakeRequest) { r.direct = netip.MustParseAddr("::ffff:10.1.2.3") }), want: true},
		{name: "v4-mapped prefix", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr("::ffff:10.1.0.0", 112)}}, req: baseRequest(), want: true},
		{name: "no address", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr("0.0.0.0", 0)}},
			req: with(func(r *fakeRequest) { r.direct = netip.Addr{} }), want: false},
		{name: "destination_ip", perm: &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: cidr("10.9.9.0", 24)}}, req: baseRequest(), want: true},
		{name: "destination_port", perm: permPort(8080), req: baseRequest(), want: true},
		{name: "destination_port other", perm: permPort(9090), req: baseRequest(), want: false},
		{name: "destination_port_range", perm: &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPortRange{DestinationPortRange: &typev3.Int32Range{Start: 8000, End: 8081}}}, req: baseRequest(), want: true},
		{name: "destination_port_range end exclusive", perm: &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPortRange{DestinationPortRange: &typev3.Int32Range{Start: 8000, End: 8080}}}, req: baseRequest(), want: false},
		{name: "requested_server_name", perm: &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: suffix("server")}}, req: baseRequest(), want: true},

		// Headers.
		{name: "header exact", perm: permHeader(hdr("x-user", exact("alice"))), req: baseRequest(), want: true},
		{name: "header name case-insensitive", perm: permHeader(hdr("X-User", exact("alice"))), req: baseRequest(), want: true},
		{name: "header value case", perm: permHeader(hdr("x-user", exact("ALICE"))), req: baseRequest(), want: false},
		{name: "header ignore_case", perm: permHeader(hdr("x-user", fold(exact("ALICE")))), req: baseRequest(), want: true},
		{name: "header every value is tested", perm: permHeader(hdr("x-user", exact("admin"))),
			req: with(func(r *fakeRequest) { r.headers = [][2]string{{"x-user", "a"}, {"x-user", "admin"}} }), want: true},
		{name: "header values are not joined", perm: permHeader(hdr("x-user", exact("a,admin"))),
			req: with(func(r *fakeRequest) { r.headers = [][2]string{{"x-user", "a"}, {"x-user", "admin"}} }), want: false},
		{name: "header invert: no value matches", perm: permHeader(&routev3.HeaderMatcher{Name: "x-user", InvertMatch: true,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("admin")}}),
			req: with(func(r *fakeRequest) { r.headers = [][2]string{{"x-user", "a"}, {"x-user", "admin"}} }), want: false},
		{name: "header invert other value", perm: permHeader(&routev3.HeaderMatcher{Name: "x-user", InvertMatch: true,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("admin")}}), req: baseRequest(), want: true},
		{name: "header invert missing", perm: permHeader(&routev3.HeaderMatcher{Name: "x-missing", InvertMatch: true,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("admin")}}), req: baseRequest(), want: false},
		{name: "header missing as empty", perm: permHeader(&routev3.HeaderMatcher{Name: "x-missing", TreatMissingHeaderAsEmpty: true,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("")}}), req: baseRequest(), want: true},
		{name: "header present", perm: permHeader(&routev3.HeaderMatcher{Name: "accept", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}), req: baseRequest(), want: true},
		{name: "header present missing", perm: permHeader(&routev3.HeaderMatcher{Name: "x-missing", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}), req: baseRequest(), want: false},
		{name: "header present false on missing", perm: permHeader(&routev3.HeaderMatcher{Name: "x-missing", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}}), req: baseRequest(), want: true},
		{name: "header no specifier is present", perm: permHeader(&routev3.HeaderMatcher{Name: "accept"}), req: baseRequest(), want: true},
		{name: "header prefix (deprecated form)", perm: permHeader(&routev3.HeaderMatcher{Name: "x-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "ali"}}), req: baseRequest(), want: true},
		{name: "header suffix", perm: permHeader(hdr("x-user", suffix("ice"))), req: baseRequest(), want: true},
		{name: "header contains", perm: permHeader(hdr("x-user", contains("lic"))), req: baseRequest(), want: true},
		{name: "header regex", perm: permHeader(hdr("x-user", regex("a.*e"))), req: baseRequest(), want: true},
		{name: "header range", perm: permHeader(&routev3.HeaderMatcher{Name: "x-n", HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: 1, End: 10}}}),
			req: with(func(r *fakeRequest) { r.headers = [][2]string{{"x-n", "x"}, {"x-n", "9"}} }), want: true},
		{name: ":method", perm: permHeader(hdr(":method", exact("GET"))), req: baseRequest(), want: true},
		{name: ":authority hosts form", perm: permHeader(hdr(":authority", fold(prefix("server.example:")))), req: baseRequest(), want: true},
		{name: "host is :authority", perm: permHeader(hdr("host", fold(exact("server.example:8080")))), req: baseRequest(), want: true},
		{name: ":path has the query", perm: permHeader(hdr(":path", exact("/api/v1?q=1"))), req: baseRequest(), want: true},
		{name: ":scheme", perm: permHeader(hdr(":scheme", exact("https"))), req: baseRequest(), want: true},
		{name: "header as principal", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: hdr("x-user", exact("alice"))}}, req: baseRequest(), want: true},

		// url_path: the normalized path without the query.
		{name: "url_path exact", perm: permPath(exact("/api/v1")), req: baseRequest(), want: true},
		{name: "url_path has no query", perm: permPath(exact("/api/v1?q=1")), req: baseRequest(), want: false},
		{name: "url_path prefix", perm: permPath(prefix("/api/")), req: baseRequest(), want: true},
		{name: "url_path ignore_case", perm: permPath(fold(prefix("/API"))), req: baseRequest(), want: true},
		{name: "url_path as principal", prin: &rbacv3.Principal{Identifier: &rbacv3.Principal_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: prefix("/api")}}}}, req: baseRequest(), want: true},

		// TCP: HTTP matchers never match.
		{name: "tcp header", perm: permHeader(hdr(":method", exact("GET"))), req: with(func(r *fakeRequest) { r.tcp = true }), want: false},
		{name: "tcp inverted header", perm: permHeader(&routev3.HeaderMatcher{Name: "x-missing", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}}), req: with(func(r *fakeRequest) { r.tcp = true }), want: false},
		{name: "tcp url_path", perm: permPath(prefix("/")), req: with(func(r *fakeRequest) { r.tcp = true }), want: false},
		{name: "tcp not header", perm: notRule(permHeader(hdr(":method", exact("GET")))), req: with(func(r *fakeRequest) { r.tcp = true }), want: true},
		{name: "tcp principal", prin: principalName(exact(client)), req: with(func(r *fakeRequest) { r.tcp = true }), want: true},

		// and / or / not.
		{name: "and all", perm: andRules(permPort(8080), permPath(prefix("/api"))), req: baseRequest(), want: true},
		{name: "and one fails", perm: andRules(permPort(8080), permPath(prefix("/admin"))), req: baseRequest(), want: false},
		{name: "or one", perm: orRules(permPort(9090), permPath(prefix("/api"))), req: baseRequest(), want: true},
		{name: "or none", perm: orRules(permPort(9090), permPath(prefix("/admin"))), req: baseRequest(), want: false},
		{name: "not", perm: notRule(permPath(prefix("/admin"))), req: baseRequest(), want: true},
		{name: "not not", perm: notRule(notRule(permPath(prefix("/admin")))), req: baseRequest(), want: false},
		{name: "and_ids", prin: andIDs(principalName(prefix("spiffe://")), notID(principalName(suffix("/sa/other")))), req: baseRequest(), want: true},
		{name: "or_ids", prin: orIDs(principalName(exact("x")), principalName(exact(client))), req: baseRequest(), want: true},
		{name: "not_id", prin: notID(principalName(exact(client))), req: baseRequest(), want: false},
		{name: "istio rule shape", perm: andRules(orRules(andRules(permPath(prefix("/api")), permHeader(hdr(":method", exact("GET"))))), permPort(8080)),
			prin: andIDs(orIDs(andIDs(principalName(exact(client))))), req: baseRequest(), want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			perm, prin := tc.perm, tc.prin
			if perm == nil {
				perm = permAny()
			}
			if prin == nil {
				prin = prinAny()
			}
			e, err := Translate(rules(rbacv3.RBAC_ALLOW, map[string]*rbacv3.Policy{"p": pol(perm, prin)}))
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			got, name := e.Evaluate(tc.req)
			if got != tc.want {
				t.Fatalf("Evaluate = %v, want %v", got, tc.want)
			}
			if got && name != "p" {
				t.Fatalf("policy = %q, want p", name)
			}
		})
	}
}

func TestEvaluateMetadata(t *testing.T) {
	meta := map[string]any{
		"request.auth.principal":          "https://issuer.example/alice",
		"request.auth.audiences":          []string{"aud1", "aud2"},
		"request.auth.presenter":          "app",
		"request.auth.claims/groups":      []string{"dev", "admin"},
		"request.auth.claims/nested/role": "reader",
		"request.auth.claims/verified":    true,
		"request.auth.claims/level":       json.Number("3"),
		"request.auth.claims/anys":        []any{"x", 1.0},
	}
	tests := []struct {
		name string
		mm   *matcherv3.MetadataMatcher
		meta map[string]any
		want bool
	}{
		{name: "principal", mm: metadata(valStr(exact("https://issuer.example/alice")), false, "request.auth.principal"), want: true},
		{name: "principal other", mm: metadata(valStr(exact("https://issuer.example/bob")), false, "request.auth.principal"), want: false},
		{name: "principal prefix", mm: metadata(valStr(prefix("https://issuer.example/")), false, "request.auth.principal"), want: true},
		{name: "principal absent", mm: metadata(valStr(prefix("h")), false, "request.auth.principal"), meta: map[string]any{}, want: false},
		{name: "invert absent", mm: metadata(valStr(exact("x")), true, "request.auth.principal"), meta: map[string]any{}, want: true},
		{name: "invert present", mm: metadata(valStr(exact("https://issuer.example/alice")), true, "request.auth.principal"), want: false},
		{name: "audiences list one_of", mm: metadata(valList(valStr(exact("aud2"))), false, "request.auth.audiences"), want: true},
		{name: "audiences list none", mm: metadata(valList(valStr(exact("aud3"))), false, "request.auth.audiences"), want: false},
		{name: "audiences string matcher: any element", mm: metadata(valStr(exact("aud1")), false, "request.auth.audiences"), want: true},
		{name: "list matcher on a string", mm: metadata(valList(valStr(exact("app"))), false, "request.auth.presenter"), want: true},
		{name: "nested claim", mm: metadata(valStr(exact("reader")), false, "request.auth.claims", "nested", "role"), want: true},
		{name: "claim list", mm: metadata(valList(valStr(exact("admin"))), false, "request.auth.claims", "groups"), want: true},
		{name: "claim []any", mm: metadata(valList(valStr(exact("x"))), false, "request.auth.claims", "anys"), want: true},
		{name: "bool", mm: metadata(&matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_BoolMatch{BoolMatch: true}}, false, "request.auth.claims", "verified"), want: true},
		{name: "bool on string", mm: metadata(&matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_BoolMatch{BoolMatch: true}}, false, "request.auth.presenter"), want: false},
		{name: "present", mm: metadata(&matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}, false, "request.auth.presenter"), want: true},
		{name: "present absent", mm: metadata(&matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}, false, "request.auth.claims", "nope"), want: false},
		{name: "double exact", mm: metadata(&matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_DoubleMatch{DoubleMatch: &matcherv3.DoubleMatcher{
			MatchPattern: &matcherv3.DoubleMatcher_Exact{Exact: 3}}}}, false, "request.auth.claims", "level"), want: true},
		{name: "double range", mm: metadata(&matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_DoubleMatch{DoubleMatch: &matcherv3.DoubleMatcher{
			MatchPattern: &matcherv3.DoubleMatcher_Range{Range: &typev3.DoubleRange{Start: 0, End: 3}}}}}, false, "request.auth.claims", "level"), want: false},
		{name: "or_match", mm: metadata(&matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{
			ValueMatchers: []*matcherv3.ValueMatcher{valStr(exact("x")), valStr(exact("app"))}}}}, false, "request.auth.presenter"), want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Translate(rules(rbacv3.RBAC_ALLOW, map[string]*rbacv3.Policy{"p": pol(permAny(), prinMeta(tc.mm))}))
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			r := baseRequest()
			r.meta = meta
			if tc.meta != nil {
				r.meta = tc.meta
			}
			if got, _ := e.Evaluate(r); got != tc.want {
				t.Fatalf("Evaluate = %v, want %v", got, tc.want)
			}
			r.tcp = true
			if got, _ := e.Evaluate(r); got {
				t.Fatalf("Evaluate on TCP = true, want false")
			}
		})
	}
}

func TestActions(t *testing.T) {
	admin := pol(permPath(prefix("/admin")), prinAny())
	tests := []struct {
		name        string
		cfg         *rbacv3.RBAC
		path        string
		wantAllowed bool
		wantMatched bool
		wantPolicy  string
	}{
		{name: "allow match", cfg: rules(rbacv3.RBAC_ALLOW, map[string]*rbacv3.Policy{"a": admin}), path: "/admin", wantAllowed: true, wantMatched: true, wantPolicy: "a"},
		{name: "allow no match", cfg: rules(rbacv3.RBAC_ALLOW, map[string]*rbacv3.Policy{"a": admin}), path: "/ok", wantAllowed: false},
		{name: "allow without policies denies", cfg: rules(rbacv3.RBAC_ALLOW, nil), path: "/ok", wantAllowed: false},
		{name: "deny match", cfg: rules(rbacv3.RBAC_DENY, map[string]*rbacv3.Policy{"d": admin}), path: "/admin", wantAllowed: false, wantMatched: true, wantPolicy: "d"},
		{name: "deny no match", cfg: rules(rbacv3.RBAC_DENY, map[string]*rbacv3.Policy{"d": admin}), path: "/ok", wantAllowed: true},
		{name: "deny without policies allows", cfg: rules(rbacv3.RBAC_DENY, nil), path: "/admin", wantAllowed: true},
		{name: "log match never denies", cfg: rules(rbacv3.RBAC_LOG, map[string]*rbacv3.Policy{"l": admin}), path: "/admin", wantAllowed: true, wantMatched: true, wantPolicy: "l"},
		{name: "first policy by name", cfg: rules(rbacv3.RBAC_DENY, map[string]*rbacv3.Policy{
			"ns.default.z.rule.0": pol(permAny(), prinAny()), "ns.default.a.rule.1": admin, "ns.default.a.rule.0": pol(permPort(1), prinAny())}),
			path: "/admin", wantAllowed: false, wantMatched: true, wantPolicy: "ns.default.a.rule.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Translate(tc.cfg)
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			allowed, matched, policy := e.Allowed(with(func(r *fakeRequest) { r.path = tc.path }))
			if allowed != tc.wantAllowed || matched != tc.wantMatched || policy != tc.wantPolicy {
				t.Fatalf("Allowed = %v, %v, %q; want %v, %v, %q", allowed, matched, policy, tc.wantAllowed, tc.wantMatched, tc.wantPolicy)
			}
		})
	}
}

func TestTranslateErrors(t *testing.T) {
	one := func(p *rbacv3.Policy) *rbacv3.RBAC {
		return rules(rbacv3.RBAC_ALLOW, map[string]*rbacv3.Policy{"p": p})
	}
	tests := []struct {
		name string
		cfg  *rbacv3.RBAC
		want string
	}{
		{name: "nil", cfg: nil, want: "rules: missing"},
		{name: "audit logging", cfg: &rbacv3.RBAC{AuditLoggingOptions: &rbacv3.RBAC_AuditLoggingOptions{}}, want: "audit_logging_options: not supported"},
		{name: "no permissions", cfg: one(&rbacv3.Policy{Principals: []*rbacv3.Principal{prinAny()}}), want: `policies["p"].permissions: empty`},
		{name: "no principals", cfg: one(&rbacv3.Policy{Permissions: []*rbacv3.Permission{permAny()}}), want: `policies["p"].principals: empty`},
		{name: "nil rule", cfg: one(pol(&rbacv3.Permission{}, prinAny())), want: `policies["p"].permissions[0].rule: missing`},
		{name: "matcher", cfg: one(pol(&rbacv3.Permission{Rule: &rbacv3.Permission_Matcher{}}, prinAny())), want: `policies["p"].permissions[0].matcher: extension matchers are not supported`},
		{name: "uri_template", cfg: one(pol(&rbacv3.Permission{Rule: &rbacv3.Permission_UriTemplate{}}, prinAny())), want: `permissions[0].uri_template: not supported`},
		{name: "filter_state", cfg: one(pol(permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_FilterState{}})), want: `policies["p"].principals[0].filter_state: not supported`},
		{name: "custom principal", cfg: one(pol(permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_Custom{}})), want: `principals[0].custom: extension principals are not supported`},
		{name: "sourced_metadata", cfg: one(pol(permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_SourcedMetadata{}})), want: `principals[0].sourced_metadata: not supported`},
		{name: "empty and_rules", cfg: one(pol(andRules(), prinAny())), want: `permissions[0].and_rules.rules: empty`},
		{name: "nested error path", cfg: one(pol(andRules(permAny(), orRules(notRule(permPath(regex("("))))), prinAny())),
			want: `policies["p"].permissions[0].and_rules.rules[1].or_rules.rules[0].not_rule.url_path.path.safe_regex.regex: invalid RE2 "("`},
		{name: "principal regex", cfg: one(pol(permAny(), orIDs(principalName(regex("a["))))), want: `principals[0].or_ids.ids[0].authenticated.principal_name.safe_regex.regex: invalid RE2`},
		{name: "custom string matcher", cfg: one(pol(permAny(), principalName(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Custom{}}))), want: `principal_name.custom: extension string matchers are not supported`},
		{name: "empty prefix", cfg: one(pol(permPath(prefix("")), prinAny())), want: `url_path.path: empty prefix`},
		{name: "bad cidr", cfg: one(pol(permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: cidr("10.0.0", 8)}})), want: `principals[0].remote_ip.address_prefix: "10.0.0" is not an IP address`},
		{name: "cidr too long", cfg: one(pol(permAny(), &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.0.0.0", 33)}})), want: `direct_remote_ip.prefix_len: 33 exceeds 32 bits`},
		{name: "port range", cfg: one(pol(&rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPortRange{DestinationPortRange: &typev3.Int32Range{Start: 10, End: 10}}}, prinAny())), want: `destination_port_range: [10, 10) is empty`},
		{name: "port", cfg: one(pol(permPort(70000), prinAny())), want: `destination_port: 70000 out of range`},
		{name: "unknown pseudo header", cfg: one(pol(permHeader(hdr(":protocol", exact("x"))), prinAny())), want: `permissions[0].header.name: pseudo-header ":protocol" not supported`},
		{name: "metadata filter", cfg: one(pol(permAny(), prinMeta(&matcherv3.MetadataMatcher{Filter: "envoy.filters.http.jwt_authn", Value: valStr(exact("x")),
			Path: []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "k"}}}}))),
			want: `principals[0].metadata.filter: "envoy.filters.http.jwt_authn" not supported`},
		{name: "metadata no value", cfg: one(pol(permAny(), prinMeta(metadata(nil, false, "request.auth.principal")))), want: `principals[0].metadata.value: missing`},
		{name: "metadata list without one_of", cfg: one(pol(permAny(), prinMeta(metadata(&matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{}}}, false, "k")))),
			want: `metadata.value.list_match.one_of: missing`},
		{name: "any false", cfg: one(pol(&rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: false}}, prinAny())), want: `permissions[0].any: false is not a rule`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Translate(tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Translate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Translate error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestTranslateRefusesCondition(t *testing.T) {
	p := pol(permAny(), prinAny())
	cfg := rules(rbacv3.RBAC_ALLOW, map[string]*rbacv3.Policy{"p": p})
	if _, err := Translate(cfg); err != nil {
		t.Fatalf("Translate without condition: %v", err)
	}
	p.Condition = celTrue()
	if _, err := Translate(cfg); err == nil || !strings.Contains(err.Error(), `policies["p"].condition: CEL conditions are not supported`) {
		t.Fatalf("Translate with condition: error %v", err)
	}
}

func TestTranslateDepthBound(t *testing.T) {
	perm := permAny()
	for range maxDepth + 2 {
		perm = notRule(perm)
	}
	if _, err := Translate(rules(rbacv3.RBAC_DENY, map[string]*rbacv3.Policy{"p": pol(perm, prinAny())})); err == nil ||
		!strings.Contains(err.Error(), "nested deeper than") {
		t.Fatalf("Translate of a deep tree: error %v, want a depth error", err)
	}
}

// tenPolicies is a realistic inbound policy set: Istio-shaped rules on
// principals, namespaces, paths, methods, hosts and headers.
func tenPolicies(action rbacv3.RBAC_Action) *rbacv3.RBAC {
	ps := map[string]*rbacv3.Policy{}
	for i := range 10 {
		n := string(rune('a' + i))
		ps["ns.default.p"+n+".rule.0"] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{andRules(
				orRules(andRules(
					permPath(prefix("/svc-"+n+"/")),
					orRules(permHeader(hdr(":method", exact("GET"))), permHeader(hdr(":method", exact("POST")))),
					orRules(permHeader(hdr(":authority", fold(exact("server-"+n)))), permHeader(hdr(":authority", fold(prefix("server-"+n+":"))))),
				)),
				permHeader(hdr("x-tenant", exact("t-"+n))),
			)},
			Principals: []*rbacv3.Principal{andIDs(orIDs(
				andIDs(principalName(exact("spiffe://test.local/ns/default/sa/caller-"+n))),
				andIDs(principalName(regex(`spiffe://[^/]+/ns/team-`+n+`/sa/[^/]+`))),
			))},
		}
	}
	return rules(action, ps)
}

func TestEvaluateAllocs(t *testing.T) {
	e, err := Translate(tenPolicies(rbacv3.RBAC_ALLOW))
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	r := baseRequest()
	r.headers = append(r.headers, [2]string{"x-tenant", "t-j"}, [2]string{"x-tenant", "other"})
	r.path, r.authority, r.peer = "/svc-j/items", "server-j:8080", "spiffe://test.local/ns/team-j/sa/x"
	if ok, name := e.Evaluate(r); !ok || name != "ns.default.pj.rule.0" {
		t.Fatalf("Evaluate = %v %q, want the last policy", ok, name)
	}
	if n := testing.AllocsPerRun(100, func() { e.Evaluate(r) }); n != 0 {
		t.Fatalf("Evaluate allocates %v times per run, want 0", n)
	}
}

func BenchmarkEvaluate10Policies(b *testing.B) {
	e, err := Translate(tenPolicies(rbacv3.RBAC_ALLOW))
	if err != nil {
		b.Fatalf("Translate: %v", err)
	}
	r := baseRequest()
	r.headers = append(r.headers, [2]string{"x-tenant", "t-j"})
	r.path, r.authority, r.peer = "/svc-j/items", "server-j:8080", "spiffe://test.local/ns/default/sa/caller-j"
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(r)
	}
}
