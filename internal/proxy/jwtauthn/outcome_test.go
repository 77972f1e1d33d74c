package jwtauthn

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// outputProvider forwards the payload and copies claims to headers.
func outputProvider(t *testing.T, forward bool) *jwtauthnv3.JwtProvider {
	p := inlineProvider(testIssuer, jwksJSON(t, jwk{key: loadKey(t, "ec-p256.pem")}))
	p.Forward = forward
	p.ForwardPayloadHeader = "X-JWT-Payload"
	p.FromHeaders = []*jwtauthnv3.JwtHeader{{Name: "Authorization", ValuePrefix: "Bearer "}}
	p.FromParams = []string{"token"}
	p.ClaimToHeaders = []*jwtauthnv3.JwtClaimToHeader{
		{HeaderName: "x-sub", ClaimName: "sub"},
		{HeaderName: "x-level", ClaimName: "org.team.level"},
		{HeaderName: "x-admin", ClaimName: "admin"},
		{HeaderName: "x-ratio", ClaimName: "ratio"},
		{HeaderName: "x-groups", ClaimName: "groups"},
		{HeaderName: "x-url-claim", ClaimPath: []*jwtauthnv3.JwtClaimToHeader_PathSegment{{Key: "https://example.com/role"}}},
		{HeaderName: "x-injected", ClaimName: "evil"},
		{HeaderName: "x-absent", ClaimName: "nothing"},
	}
	return p
}

func TestVerifyOutcome(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	c := baseClaims().with(
		"azp", "web-client",
		"org", map[string]any{"team": map[string]any{"level": 3}},
		"admin", true,
		"ratio", -1.5,
		"groups", []string{"dev", "ops"},
		"https://example.com/role", "editor",
		"evil", "a\r\nx-admin: true",
	)
	tok := sign(t, jose.ES256, key, "", c)
	payloadSeg := strings.Split(tok, ".")[1]
	groupsB64 := base64.StdEncoding.EncodeToString([]byte(`["dev","ops"]`))
	sanitize := []string{"x-jwt-payload", "x-sub", "x-level", "x-admin", "x-ratio", "x-groups", "x-url-claim", "x-injected", "x-absent"}
	wantSet := [][2]string{
		{"x-jwt-payload", payloadSeg},
		{"x-sub", "alice"},
		{"x-level", "3"},
		{"x-admin", "true"},
		{"x-ratio", "-1.500000"},
		{"x-groups", groupsB64},
		{"x-url-claim", "editor"},
	}

	for _, tc := range []struct {
		name    string
		forward bool
		r       Request
		want    Outcome
	}{
		{
			name: "header, not forwarded", r: bearer(tok),
			want: Outcome{RemoveHeaders: append(append([]string(nil), sanitize...), "authorization"), SetHeaders: wantSet},
		},
		{
			name: "header, forwarded", forward: true, r: bearer(tok),
			want: Outcome{RemoveHeaders: sanitize, SetHeaders: wantSet},
		},
		{
			name: "query parameter, not forwarded", r: req{query: map[string]string{"token": tok}},
			want: Outcome{RemoveHeaders: sanitize, RemoveQueryParam: "token", SetHeaders: wantSet},
		},
		{
			name: "no token: output headers still removed", r: req{},
			want: Outcome{RemoveHeaders: sanitize},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{"p": outputProvider(t, tc.forward)}, true), nil)
			o, err := f.Verify(testNow, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.SetHeaders != nil { // a verified token
				tc.want.Authenticated = true
				tc.want.Issuer, tc.want.Subject, tc.want.Presenter = testIssuer, "alice", "web-client"
				tc.want.Principal = testIssuer + "/alice"
				tc.want.Audiences = []string{"bookinfo"}
				tc.want.Claims = jsonRoundTrip(t, c)
			}
			if d := cmp.Diff(tc.want, o, cmpopts.IgnoreUnexported(Outcome{})); d != "" {
				t.Fatalf("Outcome (-want +got):\n%s", d)
			}
		})
	}
}

// TestVerifyPaddedPayloadHeader: pad_forward_payload_header adds base64 padding.
func TestVerifyPaddedPayloadHeader(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	p := inlineProvider(testIssuer, jwksJSON(t, jwk{key: key}))
	p.ForwardPayloadHeader = "x-payload"
	p.PadForwardPayloadHeader = true
	f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{"p": p}, true), nil)
	for _, sub := range []string{"a", "ab", "abc"} { // three payload lengths mod 3
		o, err := f.Verify(testNow, bearer(sign(t, jose.ES256, key, "", claims{"iss": testIssuer, "sub": sub})))
		if err != nil {
			t.Fatal(err)
		}
		v := o.SetHeaders[0][1]
		if len(v)%4 != 0 {
			t.Fatalf("payload header %q is not padded", v)
		}
		if _, err := base64.URLEncoding.DecodeString(v); err != nil {
			t.Fatalf("payload header %q: %v", v, err)
		}
	}
}

func jsonRoundTrip(t *testing.T, c claims) map[string]any {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeObject(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLookup(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	p := inlineProvider(testIssuer, jwksJSON(t, jwk{key: key}))
	p.NormalizePayloadInMetadata = &jwtauthnv3.JwtProvider_NormalizePayload{SpaceDelimitedClaims: []string{"scope"}}
	f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{"p": p}, true), nil)
	c := baseClaims().with(
		"aud", []string{"a", "b"},
		"azp", "cli",
		"scope", "read write  admin",
		"groups", []any{"dev", 7, "ops"},
		"numbers", []int{1, 2},
		"level", 3,
		"ok", true,
		"nested", map[string]any{"a": map[string]any{"b": "deep", "list": []string{"x"}}, "scope": "not split"},
		"empty", "",
	)
	o, err := f.Verify(testNow, bearer(sign(t, jose.ES256, key, "", c)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path []string
		want any // nil: absent
	}{
		{[]string{"request.auth.principal"}, testIssuer + "/alice"},
		{[]string{"request.auth.audiences"}, []string{"a", "b"}},
		{[]string{"request.auth.presenter"}, "cli"},
		{[]string{"request.auth.claims", "sub"}, "alice"},
		{[]string{"request.auth.claims", "scope"}, []string{"read", "write", "admin"}},
		{[]string{"request.auth.claims", "groups"}, []string{"dev", "ops"}},
		{[]string{"request.auth.claims", "nested", "a", "b"}, "deep"},
		{[]string{"request.auth.claims", "nested", "a", "list"}, []string{"x"}},
		{[]string{"request.auth.claims", "nested", "scope"}, "not split"},
		{[]string{"request.auth.claims", "empty"}, ""},
		{[]string{"request.auth.claims", "numbers"}, nil},
		{[]string{"request.auth.claims", "level"}, nil},
		{[]string{"request.auth.claims", "ok"}, nil},
		{[]string{"request.auth.claims", "nested"}, nil},
		{[]string{"request.auth.claims", "nested", "a", "b", "c"}, nil},
		{[]string{"request.auth.claims", "missing"}, nil},
		{[]string{"request.auth.claims"}, nil},
		{[]string{"request.auth.audiences", "x"}, nil},
		{[]string{"request.auth.other"}, nil},
		{nil, nil},
	} {
		got, ok := o.Lookup(tc.path)
		if ok != (tc.want != nil) || !cmp.Equal(got, tc.want) {
			t.Errorf("Lookup(%q) = %#v, %v; want %#v", tc.path, got, ok, tc.want)
		}
	}

	// Nothing is found on an unauthenticated outcome, nor a principal without sub.
	none, err := f.Verify(testNow, req{})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := none.Lookup([]string{"request.auth.claims", "sub"}); ok {
		t.Fatalf("unauthenticated Lookup = %v", v)
	}
	nosub, err := f.Verify(testNow, bearer(sign(t, jose.ES256, key, "", baseClaims().with("sub", nil))))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := nosub.Lookup([]string{"request.auth.principal"}); ok {
		t.Fatalf("principal without sub = %v", v)
	}
}
