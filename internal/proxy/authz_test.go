package proxy

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

func TestTranslateAuthzFilters(t *testing.T) {
	iss := newJWTIssuer(t, "https://issuer.test")
	deny := rbacHTTPFilter(t, "trellis.rbac.deny", rbacv3.RBAC_DENY, map[string]*rbacv3.Policy{"p": rbacPolicy(nil, nil)})
	allow := rbacHTTPFilter(t, "trellis.rbac.allow", rbacv3.RBAC_ALLOW, nil)
	remote := &jwtauthnv3.JwtAuthentication{Providers: map[string]*jwtauthnv3.JwtProvider{"origins-0": {Issuer: "i",
		JwksSourceSpecifier: &jwtauthnv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtauthnv3.RemoteJwks{
			HttpUri: &corev3.HttpUri{Uri: "http://169.254.169.254/jwks", HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "x"}}}}}}}
	for _, tc := range []struct {
		name    string
		filters []*hcmv3.HttpFilter
		want    string // "" accepted
		kinds   []filterKind
	}{
		{name: "jwt, deny, allow, audit in order", filters: []*hcmv3.HttpFilter{jwtFilterEntry(t, iss), deny, allow,
			rbacHTTPFilter(t, "trellis.rbac.audit", rbacv3.RBAC_LOG, nil)}, kinds: []filterKind{filterJWT, filterRBAC, filterRBAC, filterRBAC}},
		{name: "rules absent", filters: []*hcmv3.HttpFilter{httpFilterEntry(t, "r", &rbachttpv3.RBAC{})}, kinds: []filterKind{filterRBAC}},
		{name: "two jwt filters", filters: []*hcmv3.HttpFilter{jwtFilterEntry(t, iss), jwtFilterEntry(t, iss)}, want: "a second"},
		{name: "matcher", filters: []*hcmv3.HttpFilter{httpFilterEntry(t, "r", &rbachttpv3.RBAC{Matcher: matcherTree()})},
			want: `http_filters[0] ("r").typed_config.matcher: the xDS matcher forms are not supported`},
		{name: "rules error path", filters: []*hcmv3.HttpFilter{httpFilterEntry(t, "r", &rbachttpv3.RBAC{Rules: &rbacv3.RBAC{
			Policies: map[string]*rbacv3.Policy{"p": rbacPolicy(permURLPath(smPrefix("")), nil)}}})},
			want: `http_filters[0] ("r").typed_config.rules.policies["p"].permissions[0].url_path.path: empty prefix`},
		{name: "shadow rules error path", filters: []*hcmv3.HttpFilter{httpFilterEntry(t, "r", &rbachttpv3.RBAC{ShadowRules: &rbacv3.RBAC{
			Policies: map[string]*rbacv3.Policy{"p": {}}}})},
			want: `http_filters[0] ("r").typed_config.shadow_rules.policies["p"].permissions: empty`},
		{name: "jwt error names the filter", filters: []*hcmv3.HttpFilter{httpFilterEntry(t, "trellis.jwt", remote)},
			want: `listener "outbound|8080|server": http_connection_manager.http_filters[0] ("trellis.jwt").typed_config.providers["origins-0"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
			set := validSet(t)
			set.Listeners[outName] = proxytest.Listener(t, outName, "127.0.0.1:1", hcmWith(t, outName, tc.filters...), nil)
			cfg, err := p.build(set, nil)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("build error %v, want it to contain %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			chain := cfg.listeners[outName].filters.chain
			if len(chain) != len(tc.kinds) {
				t.Fatalf("%d filters, want %d", len(chain), len(tc.kinds))
			}
			for i, k := range tc.kinds {
				if chain[i].kind != k || (k == filterJWT && chain[i].jwt.filter == nil) || (k == filterRBAC && chain[i].rbac == nil) {
					t.Errorf("filter %d: kind %v %+v, want %v", i, chain[i].kind, chain[i], k)
				}
			}
		})
	}
}

func TestWithoutQueryParam(t *testing.T) {
	for _, tc := range []struct {
		target, name, want string
		ok                 bool
	}{
		{"/p?access_token=x", "access_token", "/p", true},
		{"/p?a=1&access_token=x&b=2", "access_token", "/p?a=1&b=2", true},
		{"/p?access_token=x&access_token=y&a", "access_token", "/p?a", true},
		{"/p?access_token", "access_token", "/p", true},
		{"/p?a=1", "access_token", "", false},
		{"/p", "access_token", "", false},
		{"/p?xaccess_token=1", "access_token", "", false},
	} {
		got, ok := withoutQueryParam(tc.target, tc.name, []byte("keep:"))
		if ok != tc.ok || (ok && string(got) != "keep:"+tc.want) || (!ok && string(got) != "keep:") {
			t.Errorf("withoutQueryParam(%q) = %q %v, want %q %v", tc.target, got, ok, tc.want, tc.ok)
		}
	}
}

func TestAuthzTextHelpers(t *testing.T) {
	if v, ok := cookieValue(`a=1; jwt="tok"; b=2`, "jwt"); !ok || v != "tok" {
		t.Errorf("cookieValue = %q %v", v, ok)
	}
	if _, ok := cookieValue("xjwt=1; jwt2=2", "jwt"); ok {
		t.Error("cookieValue matched a longer name")
	}
	if got := queryValues("/p?t=a%20b&t=c&u=1", "t", nil, false); len(got) != 2 || got[0] != "a b" || got[1] != "c" {
		t.Errorf("queryValues = %q", got)
	}
	for in, want := range map[string]string{"10.0.0.1": "10.0.0.1", " 10.0.0.1 , 10.0.0.2": "10.0.0.1", "::ffff:10.0.0.3,x": "10.0.0.3", "2001:db8::1": "2001:db8::1"} {
		if ip, ok := leftmostXFF(in); !ok || ip != netip.MustParseAddr(want) {
			t.Errorf("leftmostXFF(%q) = %v %v, want %s", in, ip, ok, want)
		}
	}
	for _, bad := range []string{"", "unknown", "fe80::1%eth0", "10.0.0.1:80"} {
		if ip, ok := leftmostXFF([]byte(bad)); ok {
			t.Errorf("leftmostXFF(%q) = %v, want none", bad, ip)
		}
	}
	if got := string(appendAuthenticate(nil, "https", "h:1", `/a"b`)); got != `Bearer realm="https://h:1/a\"b", error="invalid_token"` {
		t.Errorf("appendAuthenticate = %s", got)
	}
	if jwtHeaderLine("x-a", "v\r\nx-b: 1") != nil {
		t.Error("jwtHeaderLine accepted a CRLF")
	}
}

// TestRBACFastPathNoAllocs evaluates a 10-policy rbac filter through the
// fast path's request view: no allocation.
func TestRBACFastPathNoAllocs(t *testing.T) {
	dc, f := fastAuthzBench(t)
	if !f.rbac.authorize(dc.ra.authz.lc, testLogger(t), &dc.ra.authz) {
		t.Fatal("denied, want the last policy to allow")
	}
	if n := testing.AllocsPerRun(200, func() { f.rbac.authorize(dc.ra.authz.lc, dc.s.p.log, &dc.ra.authz) }); n != 0 {
		t.Fatalf("%v allocations per request, want 0", n)
	}
}

// fastAuthzBench is a parsed fast-path request on an mTLS connection from
// spiffe://test.local/ns/team-j/sa/x, and a 10-policy ALLOW filter whose
// last policy matches it.
func fastAuthzBench(tb testing.TB) (*downConn, *httpFilter) {
	tb.Helper()
	rf, err := translateHTTPRBAC("allow", proxytest.Any(tb, &rbachttpv3.RBAC{Rules: tenPolicies()}))
	if err != nil {
		tb.Fatal(err)
	}
	raw := []byte("GET /svc-j/items?id=7 HTTP/1.1\r\nHost: server-j:8080\r\nUser-Agent: bench/1.0\r\n" +
		"Accept: application/json\r\nX-Tenant: t-j\r\nX-Request-Id: 5f0c2a\r\n\r\n")
	p := &Proxy{log: testLogger(tb), stats: newStatsRegistry()}
	lc := &listenerConfig{name: inName, tls: &downstreamTLS{}, stats: p.stats.listener(inName)}
	dc := &downConn{s: &h1Server{p: p}, state: &tls.ConnectionState{}, peer: "spiffe://test.local/ns/team-j/sa/x"}
	if err := parseRequestHead(raw, &dc.req); err != nil {
		tb.Fatal(err)
	}
	dc.ra.view = request[[]byte]{path: dc.req.path, target: dc.req.target, method: dc.req.method, authority: dc.req.host, scheme: "https", hdr: &dc.req}
	dc.ra.authz.dc, dc.ra.authz.lc = dc, lc
	return dc, &httpFilter{name: "allow", kind: filterRBAC, rbac: rf}
}

// tenPolicies is an Istio-shaped ALLOW policy set: principals, namespaces
// (regex), paths, methods, hosts and a header per policy.
func tenPolicies() *rbacv3.RBAC {
	ps := map[string]*rbacv3.Policy{}
	for i := range 10 {
		n := string(rune('a' + i))
		and := func(ps ...*rbacv3.Permission) *rbacv3.Permission {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
		}
		or := func(ps ...*rbacv3.Permission) *rbacv3.Permission {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
		}
		orIDs := func(ps ...*rbacv3.Principal) *rbacv3.Principal {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
		}
		ps["ns.default.p"+n+".rule.0"] = rbacPolicy(
			and(or(and(permURLPath(smPrefix("/svc-"+n+"/")),
				or(permHeaderExact(":method", "GET"), permHeaderExact(":method", "POST")),
				or(permHeaderExact(":authority", "server-"+n), permHeaderPrefix(":authority", "server-"+n+":")))),
				permHeaderExact("x-tenant", "t-"+n)),
			orIDs(prinPeer(smExact("spiffe://test.local/ns/default/sa/caller-"+n)), prinPeer(smRegex(`spiffe://[^/]+/ns/team-`+n+`/sa/[^/]+`))))
	}
	return &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: ps}
}

// TestJWTNoTokenFastPathNoAllocs runs a jwt_authn filter over a fast-path
// request without a token (most mesh traffic): no allocation.
func TestJWTNoTokenFastPathNoAllocs(t *testing.T) {
	iss := newJWTIssuer(t, "https://issuer.test")
	var cfg jwtauthnv3.JwtAuthentication
	if err := jwtFilterEntry(t, iss).GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		t.Fatal(err)
	}
	jf, err := jwtauthn.Translate(&cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	dc, _ := fastAuthzBench(t)
	f := &httpFilter{name: "trellis.jwt", kind: filterJWT, jwt: &jwtFilter{filter: jf}}
	lc := dc.ra.authz.lc
	if done, _ := dc.runAuthz(lc, f, 0, false); done {
		t.Fatal("a request without a token was refused")
	}
	if n := testing.AllocsPerRun(200, func() {
		dc.ra.reset()
		dc.runAuthz(lc, f, 0, false)
	}); n != 0 {
		t.Fatalf("%v allocations per request, want 0", n)
	}
}
