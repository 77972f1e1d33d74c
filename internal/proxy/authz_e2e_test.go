package proxy

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
)

// The ADR's inbound shape: a DENY filter on /admin, then an ALLOW filter
// allowing everything. Both server request paths.
func TestRBACDenyAdminAllowAny(t *testing.T) {
	serverPaths(t, func(t *testing.T, http2 bool) {
		m := newMesh(t, featureApp(), http2)
		m.setServerFilters(t,
			rbacHTTPFilter(t, "trellis.rbac.deny", rbacv3.RBAC_DENY, map[string]*rbacv3.Policy{
				"ns.default.deny-admin.rule.0": rbacPolicy(permURLPath(smPrefix("/admin")), nil)}),
			rbacHTTPFilter(t, "trellis.rbac.allow", rbacv3.RBAC_ALLOW, map[string]*rbacv3.Policy{
				"ns.default.allow-all.rule.0": rbacPolicy(nil, nil)}),
		)
		c := h1Client(t)
		res, body := authzGet(t, c, m, "/admin/users")
		wantDenied(t, res, body)
		res, body = authzGet(t, c, m, "/ok")
		wantOK(t, res, body)
		if !hasLine(body, "uri=/ok") {
			t.Errorf("app saw %q", body)
		}
		// The path is checked after normalization, and the app gets the
		// path that was checked.
		for _, trick := range []string{"//admin", "/x/../admin", "/%61dmin", "/admin%2Fx"} {
			res, body := authzGet(t, c, m, trick)
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("%s: %d %q, want 403", trick, res.StatusCode, body)
			}
		}
		waitStat(t, m.server, statLine(inName, "rbac_denied", 5))
		waitStat(t, m.server, statLine(inName, "rbac_allowed", 2)) // /ok passed both filters
	})
}

func TestRBACPeerPrincipal(t *testing.T) {
	serverPaths(t, func(t *testing.T, http2 bool) {
		m := newMesh(t, featureApp(), http2)
		c := h1Client(t)
		for _, tc := range []struct {
			principal string
			want      int
		}{
			{clientID, http.StatusOK},
			{otherID, http.StatusForbidden},
		} {
			m.setServerFilters(t, rbacHTTPFilter(t, "trellis.rbac.allow", rbacv3.RBAC_ALLOW, map[string]*rbacv3.Policy{
				"ns.default.callers.rule.0": rbacPolicy(nil, prinPeer(smExact(tc.principal)))}))
			res, body := authzGet(t, c, m, "/x")
			if res.StatusCode != tc.want {
				t.Fatalf("ALLOW %s: %d %q, want %d", tc.principal, res.StatusCode, body, tc.want)
			}
		}
	})
}

// A DENY on x-user: admin is not bypassed by sending the header twice
// (Envoy would test "a,admin").
func TestRBACDuplicateHeaderValues(t *testing.T) {
	serverPaths(t, func(t *testing.T, http2 bool) {
		m := newMesh(t, featureApp(), http2)
		m.setServerFilters(t, rbacHTTPFilter(t, "trellis.rbac.deny", rbacv3.RBAC_DENY, map[string]*rbacv3.Policy{
			"ns.default.no-admin.rule.0": rbacPolicy(permHeaderExact("x-user", "admin"), nil)}))
		c := h1Client(t)
		res, body := authzGet(t, c, m, "/x", "X-User", "a", "X-User", "admin")
		wantDenied(t, res, body)
		res, body = authzGet(t, c, m, "/x", "X-User", "admin", "X-User", "a")
		wantDenied(t, res, body)
		res, body = authzGet(t, c, m, "/x", "X-User", "a", "X-User", "b")
		wantOK(t, res, body)
	})
}

// LOG rules and shadow rules never deny; they count.
func TestRBACAuditAndShadow(t *testing.T) {
	serverPaths(t, func(t *testing.T, http2 bool) {
		m := newMesh(t, featureApp(), http2)
		shadow := &rbachttpv3.RBAC{ShadowRules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
			"ns.default.would-deny.rule.0": rbacPolicy(permURLPath(smPrefix("/audit")), nil)}}}
		m.setServerFilters(t,
			rbacHTTPFilter(t, "trellis.rbac.audit", rbacv3.RBAC_LOG, map[string]*rbacv3.Policy{
				"ns.default.audit.rule.0": rbacPolicy(permURLPath(smPrefix("/audit")), nil)}),
			httpFilterEntry(t, "shadow", shadow),
		)
		c := h1Client(t)
		for _, p := range []string{"/audit/1", "/other"} {
			res, body := authzGet(t, c, m, p)
			wantOK(t, res, body)
		}
		waitStat(t, m.server, statLine(inName, "rbac_audit", 1))
		waitStat(t, m.server, statLine(inName, "rbac_shadow_denied", 1))
		waitStat(t, m.server, statLine(inName, "rbac_shadow_allowed", 1))
		waitStat(t, m.server, statLine(inName, "rbac_denied", 0))
	})
}

func TestJWTAuthnThroughMesh(t *testing.T) {
	serverPaths(t, func(t *testing.T, http2 bool) {
		iss := newJWTIssuer(t, "https://issuer.test")
		other := newJWTIssuer(t, "https://issuer.test") // same issuer, key not in the JWKS
		m := newMesh(t, featureApp(), http2)
		jwt := jwtFilterEntry(t, iss)
		m.setServerFilters(t, jwt)
		c := h1Client(t)
		tok := iss.token(t, map[string]any{"sub": "alice", "groups": []string{"dev"}})

		// A valid token: verified, removed, its payload forwarded.
		res, body := authzGet(t, c, m, "/x", "Authorization", "Bearer "+tok)
		wantOK(t, res, body)
		if strings.Contains(body, "Authorization=") {
			t.Errorf("the app received the token (forward is false):\n%s", body)
		}
		payload := headerLine(body, "X-Jwt-Payload")
		raw, err := base64.RawURLEncoding.DecodeString(payload)
		var claims map[string]any
		if err != nil || json.Unmarshal(raw, &claims) != nil || claims["sub"] != "alice" {
			t.Errorf("x-jwt-payload %q: %v %v", payload, err, claims)
		}

		// A client-sent payload header never reaches the app unverified.
		res, body = authzGet(t, c, m, "/x", "X-Jwt-Payload", "forged")
		wantOK(t, res, body)
		if headerLine(body, "X-Jwt-Payload") != "" {
			t.Errorf("forged x-jwt-payload reached the app:\n%s", body)
		}

		// No token: allowed (left to rbac).
		res, body = authzGet(t, c, m, "/x")
		wantOK(t, res, body)

		// Invalid tokens: 401 with www-authenticate.
		parts := strings.Split(tok, ".")
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://issuer.test","sub":"admin"}`)) + "." + parts[2]
		for _, tc := range []struct {
			name string
			hdr  []string
		}{
			{"garbage", []string{"Authorization", "Bearer not-a-token"}},
			{"tampered", []string{"Authorization", "Bearer " + tampered}},
			{"other key", []string{"Authorization", "Bearer " + other.token(t, map[string]any{"sub": "alice"})}},
			{"alg none", []string{"Authorization", "Bearer " + base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."}},
			{"two tokens", []string{"Authorization", "Bearer " + tok, "Authorization", "Bearer " + tok}},
		} {
			res, body := authzGet(t, c, m, "/x?q=1", tc.hdr...)
			if res.StatusCode != http.StatusUnauthorized || res.Header.Get(headerReason) != reasonJWTInvalid || body != bodyJWTInvalid {
				t.Errorf("%s: %d %s=%q %q, want 401 %s", tc.name, res.StatusCode, headerReason, res.Header.Get(headerReason), body, reasonJWTInvalid)
			}
			wa := res.Header.Get("Www-Authenticate")
			if !strings.HasPrefix(wa, `Bearer realm="https://`) || !strings.HasSuffix(wa, `/x", error="invalid_token"`) {
				t.Errorf("%s: www-authenticate %q", tc.name, wa)
			}
		}
		waitStat(t, m.server, statLine(inName, "jwt_authn_failed", 5))

		// An ALLOW on the request principal: a token is now required.
		m.setServerFilters(t, jwt, rbacHTTPFilter(t, "trellis.rbac.allow", rbacv3.RBAC_ALLOW, map[string]*rbacv3.Policy{
			"ns.default.require-jwt.rule.0": rbacPolicy(nil, prinRequestPrincipal("https://issuer.test/alice"))}))
		res, body = authzGet(t, c, m, "/x")
		wantDenied(t, res, body)
		res, body = authzGet(t, c, m, "/x", "Authorization", "Bearer "+iss.token(t, map[string]any{"sub": "bob"}))
		wantDenied(t, res, body)
		res, body = authzGet(t, c, m, "/x", "Authorization", "Bearer "+tok)
		wantOK(t, res, body)
	})
}

// A token in the access_token query parameter is removed from the
// forwarded target when forward is false.
func TestJWTQueryTokenRemoved(t *testing.T) {
	serverPaths(t, func(t *testing.T, http2 bool) {
		iss := newJWTIssuer(t, "https://issuer.test")
		m := newMesh(t, featureApp(), http2)
		jwt := jwtFilterEntry(t, iss)
		setJWTParams(t, jwt, "access_token")
		m.setServerFilters(t, jwt)
		res, body := authzGet(t, h1Client(t), m, "/x?a=1&access_token="+iss.token(t, map[string]any{"sub": "q"})+"&b=2")
		wantOK(t, res, body)
		if !hasLine(body, "uri=/x?a=1&b=2") {
			t.Errorf("app saw:\n%s", body)
		}
	})
}

// headerLine returns the value featureApp printed for header name.
func headerLine(body, name string) string {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+"="); ok {
			return v
		}
	}
	return ""
}
