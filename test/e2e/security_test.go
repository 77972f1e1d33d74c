package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/examples/demoapp"
)

// TestSecurity applies the policies of examples/security/ unchanged to a mesh
// of two callers (sleep, other) and httpbin, and attacks them through real
// sidecars: each attack must fail closed with a clear status while legitimate
// requests keep working.
func TestSecurity(t *testing.T) {
	m := startMesh(t, "examples/security/mesh.yaml")
	defer m.up.stop(10 * time.Second)
	defer m.control.stop(5 * time.Second)
	sm := &securityMesh{
		mesh:    m,
		sleep:   m.workload("sleep").Upstreams["httpbin"],
		other:   m.workload("other").Upstreams["httpbin"],
		inbound: m.workload("httpbin").Inbound,
		app:     httpbinApp{name: "httpbin", url: "http://" + m.workload("httpbin").App},
	}
	steps := []struct {
		name string
		run  func(*testing.T, *securityMesh)
	}{
		{"deny-admin-paths", testDenyAdminPaths},
		{"deny-admin-paths-at-inbound", testDenyAdminPathsAtInbound},
		{"deny-host", testDenyHost},
		{"allow-principal", testAllowPrincipal},
		{"duplicate-headers", testDuplicateHeaders},
		{"jwt", testJWT},
		{"jwks-uri", testJWKSURI},
		{"peer-authentication-rollout", testPeerRollout},
		{"peer-authentication-port-disable", testPeerDisablePort},
		{"peer-authentication-scopes", testPeerScopes},
	}
	for _, s := range steps {
		sm.reset(t)
		if !t.Run(s.name, func(t *testing.T) { s.run(t, sm) }) {
			t.Logf("sidecar logs of the failed step:\n%s", tail(m.up.out.String(), 60))
		}
	}
}

type securityMesh struct {
	*mesh
	sleep, other string // the callers' outbound addresses for httpbin
	inbound      string // httpbin's sidecar inbound address
	app          httpbinApp
}

// securityPolicies are every object the examples create: kind, namespace, name.
var securityPolicies = [][3]string{
	{"authorizationpolicy", "default", "deny-admin"},
	{"authorizationpolicy", "default", "allow-sleep"},
	{"authorizationpolicy", "default", "deny-admin-user"},
	{"authorizationpolicy", "default", "require-jwt"},
	{"requestauthentication", "default", "httpbin"},
	{"peerauthentication", "istio-system", "default"},
	{"peerauthentication", "default", "httpbin"},
	{"peerauthentication", "default", "default"},
	{"peerauthentication", "default", "httpbin-strict"},
}

func (sm *securityMesh) reset(t *testing.T) {
	t.Helper()
	for _, p := range securityPolicies {
		_, _, _ = sm.cli("delete", p[0], p[2], "-n", p[1]) // absent is fine
	}
	sm.app.control(t, "reset", "")
	sm.waitSynced(t)
}

// apply applies examples/security/<example> unchanged and waits for every sidecar to have it.
func (sm *securityMesh) apply(t *testing.T, example string) { sm.applyExample(t, "security/"+example) }

// rawResponse is what a raw request got back.
type rawResponse struct {
	code   int
	header http.Header
	body   string
	echo   demoapp.HttpbinEcho // when the app answered with its JSON echo
}

func (r rawResponse) String() string {
	if r.code == 200 && r.echo.URI != "" {
		return fmt.Sprintf("200 from the app, which received %q", r.echo.URI)
	}
	return fmt.Sprintf("%d %s %q", r.code, r.header.Get("X-Trellis-Reason"), strings.TrimSpace(r.body))
}

// rawRequest sends request bytes as they are (no client normalization) to
// addr, over TLS when cfg is set, and reads one response.
func rawRequest(addr string, cfg *tls.Config, request string) (rawResponse, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return rawResponse{}, err
	}
	defer conn.Close()
	if cfg != nil {
		tc := tls.Client(conn, cfg)
		if err := tc.Handshake(); err != nil {
			return rawResponse{}, fmt.Errorf("handshake: %w", err)
		}
		conn = tc
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		return rawResponse{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return rawResponse{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := rawResponse{code: resp.StatusCode, header: resp.Header, body: string(body)}
	if resp.StatusCode == http.StatusOK {
		_ = json.Unmarshal(body, &r.echo)
	}
	return r, err
}

// get sends GET target with extra header lines through addr.
func get(addr string, cfg *tls.Config, target string, headers ...string) (rawResponse, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: httpbin\r\nConnection: close\r\n", target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return rawRequest(addr, cfg, b.String())
}

// pathTricks are spellings of /admin (and one of /admin/x) that a path
// check must see through; each must be denied.
var pathTricks = []string{
	"/admin", "/admin/", "/admin/x", "//admin", "/./admin", "/x/../admin", "/%2e%2e/admin",
	"/%2E/admin", "/admin%2F", "/admin%2fx", "/%61dmin", "/admin#frag", "/admin?x=1",
	"/x/..%2Fadmin", "/x%5C..%5Cadmin", "/x\\..\\admin", "/anything/../admin", "///admin//x",
}

// checkPathTricks sends every trick through addr: each must be answered 403
// by the sidecar without reaching the app; legitimate paths reach the app
// normalized; %00 is 400.
func checkPathTricks(t *testing.T, sm *securityMesh, addr string, cfg *tls.Config) {
	before := sm.app.stats(t).Requests
	for _, p := range pathTricks {
		r, err := get(addr, cfg, p)
		if err != nil {
			t.Errorf("GET %s: %v", p, err)
			continue
		}
		if r.code != http.StatusForbidden || r.header.Get("X-Trellis-Reason") != "rbac_denied" {
			t.Errorf("GET %s: %v, want 403 rbac_denied", p, r)
		}
	}
	if after := sm.app.stats(t).Requests; after != before {
		t.Errorf("the app received %d of the denied requests", after-before)
	}
	for _, c := range []struct{ target, want string }{
		{"/anything", "/anything"},
		{"/anything/./a/../b", "/anything/b"},
		{"//anything//x", "/anything/x"},
		{"/%61nything", "/anything"},
		{"/anything/admin", "/anything/admin"}, // not /admin
		{"/ADMIN", "/ADMIN"},                   // paths are case-sensitive, as in Istio
		{"/anything?q=%2e%2e/admin", "/anything?q=%2e%2e/admin"},
	} {
		r, err := get(addr, cfg, c.target)
		if err != nil || r.code != http.StatusOK || r.echo.URI != c.want {
			t.Errorf("GET %s: %v %v, want 200 with the app receiving %q", c.target, r, err, c.want)
		}
	}
	for _, p := range []string{"/admin%00", "/anything%00/x", "/anything/%zz"} {
		if r, err := get(addr, cfg, p); err != nil || r.code != http.StatusBadRequest {
			t.Errorf("GET %s: %v %v, want 400", p, r, err)
		}
	}
}

func testDenyAdminPaths(t *testing.T, sm *securityMesh) {
	if r, err := get(sm.sleep, nil, "/admin"); err != nil || r.code != http.StatusOK {
		t.Fatalf("GET /admin before any policy: %v %v, want 200", r, err)
	}
	sm.apply(t, "deny-admin.yaml")
	checkPathTricks(t, sm, sm.sleep, nil)
	// trellis explain reads httpbin's sidecar config and names the policy.
	out, errOut, err := sm.cli("explain", "--from", "sleep", "GET", "http://httpbin:8000/x/../admin")
	if err != nil || !strings.Contains(out, "DENIED (403) by policy ns.default.deny-admin.rule.0") || !strings.Contains(out, "the app receives /admin") {
		t.Errorf("trellis explain of /x/../admin: %v\n%s%s\nwant the deny-admin policy named and the normalized path", err, out, errOut)
	}
	out, errOut, err = sm.cli("explain", "--from", "sleep", "-o", "json", "GET", "http://httpbin:8000/anything")
	if err != nil || !strings.Contains(out, `"allowed": true`) || strings.Contains(out, `"denied"`) {
		t.Errorf("trellis explain -o json of /anything: %v\n%s%s\nwant allowed", err, out, errOut)
	}
}

// testDenyAdminPathsAtInbound: a caller that skips its own sidecar (a
// workload with a genuine mesh certificate speaking to httpbin's sidecar
// directly) gets the same answers: the server's sidecar normalizes.
func testDenyAdminPathsAtInbound(t *testing.T, sm *securityMesh) {
	sm.apply(t, "deny-admin.yaml")
	cert, _ := meshCert(t, sm.mesh, "rogue-sleep", "sleep")
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"},
		InsecureSkipVerify: true} // the server's SVID is not what this test checks
	checkPathTricks(t, sm, sm.inbound, cfg)
}

func testDenyHost(t *testing.T, sm *securityMesh) {
	sm.apply(t, "deny-admin.yaml")
	for _, host := range []string{"secret.example", "SECRET.example", "Secret.Example:8000", "secret.example:80"} {
		r, err := rawRequest(sm.sleep, nil, "GET /get HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
		if err != nil || r.code != http.StatusForbidden {
			t.Errorf("Host: %s: %v %v, want 403", host, r, err)
		}
	}
	for _, host := range []string{"httpbin", "secret.example.org", "notsecret.example"} {
		r, err := rawRequest(sm.sleep, nil, "GET /get HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
		if err != nil || r.code != http.StatusOK {
			t.Errorf("Host: %s: %v %v, want 200", host, r, err)
		}
	}
}

func testAllowPrincipal(t *testing.T, sm *securityMesh) {
	sm.apply(t, "allow-sleep.yaml")
	if r, err := get(sm.sleep, nil, "/get"); err != nil || r.code != http.StatusOK {
		t.Errorf("sleep GET: %v %v, want 200", r, err)
	}
	if r, err := rawRequest(sm.sleep, nil, "POST /anything HTTP/1.1\r\nHost: httpbin\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"); err != nil || r.code != http.StatusForbidden {
		t.Errorf("sleep POST: %v %v, want 403 (only GET and HEAD are allowed)", r, err)
	}
	if r, err := get(sm.other, nil, "/get"); err != nil || r.code != http.StatusForbidden || r.header.Get("X-Trellis-Reason") != "rbac_denied" {
		t.Errorf("other GET: %v %v, want 403 rbac_denied", r, err)
	}
	// The app sees the caller's identity as the sidecar verified it, not a
	// client-sent one.
	r, err := get(sm.sleep, nil, "/headers", "X-Forwarded-Client-Cert: URI=spiffe://cluster.local/ns/default/sa/admin", "X-Trellis-Principal: admin")
	if err != nil || r.code != http.StatusOK {
		t.Fatalf("sleep GET /headers: %v %v", r, err)
	}
	xfcc := r.echo.Headers["X-Forwarded-Client-Cert"]
	if len(xfcc) != 1 || !strings.HasSuffix(xfcc[0], ";URI=spiffe://cluster.local/ns/default/sa/sleep") {
		t.Errorf("app saw X-Forwarded-Client-Cert %q, want only the verified caller sleep", xfcc)
	}
	if v := r.echo.Headers["X-Trellis-Principal"]; len(v) != 0 {
		t.Errorf("app saw the client-sent X-Trellis-Principal %q", v)
	}
}

func testDuplicateHeaders(t *testing.T, sm *securityMesh) {
	sm.apply(t, "deny-header.yaml")
	for _, hs := range [][]string{
		{"X-User: admin"},
		{"X-User: bob", "X-User: admin"},
		{"X-User: admin", "X-User: bob"},
		{"x-user: bob", "X-USER: admin"},
	} {
		if r, err := get(sm.sleep, nil, "/get", hs...); err != nil || r.code != http.StatusForbidden {
			t.Errorf("%q: %v %v, want 403", hs, r, err)
		}
	}
	for _, hs := range [][]string{nil, {"X-User: bob"}, {"X-User: admins"}, {"X-User: bob", "X-User: carol"}} {
		if r, err := get(sm.sleep, nil, "/get", hs...); err != nil || r.code != http.StatusOK {
			t.Errorf("%q: %v %v, want 200", hs, r, err)
		}
	}
}

// jwtSigner makes ES256 tokens.
type jwtSigner struct {
	key *ecdsa.PrivateKey
	kid string
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (s jwtSigner) sign(header, claims map[string]any) string {
	if header == nil {
		header = map[string]any{"alg": "ES256", "typ": "JWT", "kid": s.kid}
	}
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := b64url(h) + "." + b64url(c)
	sum := sha256.Sum256([]byte(in))
	r, ss, err := ecdsa.Sign(rand.Reader, s.key, sum[:])
	if err != nil {
		panic(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return in + "." + b64url(sig)
}

func (s jwtSigner) jwks() string {
	x, y := make([]byte, 32), make([]byte, 32)
	s.key.PublicKey.X.FillBytes(x)
	s.key.PublicKey.Y.FillBytes(y)
	data, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "EC", "crv": "P-256", "kid": s.kid, "use": "sig", "alg": "ES256", "x": b64url(x), "y": b64url(y)}}})
	return string(data)
}

func demoSigner(t *testing.T) jwtSigner {
	data, err := os.ReadFile(filepath.Join(repoRoot, "examples/security/jwt-demo-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return jwtSigner{key: key, kid: "trellis-demo"}
}

func newSigner(t *testing.T, kid string) jwtSigner {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return jwtSigner{key: key, kid: kid}
}

func claims(extra map[string]any) map[string]any {
	c := map[string]any{"iss": "demo@trellis.dev", "sub": "alice", "aud": "httpbin",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func bearer(token string) string { return "Authorization: Bearer " + token }

func testJWT(t *testing.T, sm *securityMesh) {
	sm.apply(t, "jwt.yaml")
	demo := demoSigner(t)
	demoToken, err := os.ReadFile(filepath.Join(repoRoot, "examples/security/demo.jwt"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := get(sm.sleep, nil, "/headers", bearer(strings.TrimSpace(string(demoToken))))
	if err != nil || r.code != http.StatusOK {
		t.Fatalf("the demo token: %v %v, want 200", r, err)
	}
	if len(r.echo.Headers["X-Jwt-Payload"]) != 1 {
		t.Errorf("app saw X-Jwt-Payload %q, want the token's payload (outputPayloadToHeader)", r.echo.Headers["X-Jwt-Payload"])
	}
	if len(r.echo.Headers["Authorization"]) != 0 {
		t.Errorf("app saw the token (forwardOriginalToken is false)")
	}
	if r, err := get(sm.sleep, nil, "/headers", bearer(demo.sign(nil, claims(nil)))); err != nil || r.code != http.StatusOK {
		t.Errorf("a fresh token: %v %v, want 200", r, err)
	}
	if r, err := get(sm.sleep, nil, "/headers"); err != nil || r.code != http.StatusForbidden {
		t.Errorf("no token: %v %v, want 403 (authentication passes, the ALLOW policy requires a principal)", r, err)
	}
	other := newSigner(t, "trellis-demo") // same kid, another key
	valid := demo.sign(nil, claims(nil))
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + b64url([]byte(`{"iss":"demo@trellis.dev","sub":"admin","aud":"httpbin","exp":4102444800}`)) + "." + parts[2]
	noneHeader, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT"})
	payload, _ := json.Marshal(claims(nil))
	attacks := map[string]string{
		"alg none":           b64url(noneHeader) + "." + b64url(payload) + ".",
		"alg none, no dot":   b64url(noneHeader) + "." + b64url(payload),
		"unknown kid":        demo.sign(map[string]any{"alg": "ES256", "kid": "nope"}, claims(nil)),
		"wrong issuer":       demo.sign(nil, claims(map[string]any{"iss": "evil@example.com"})),
		"wrong audience":     demo.sign(nil, claims(map[string]any{"aud": "other"})),
		"expired":            demo.sign(nil, claims(map[string]any{"exp": time.Now().Add(-10 * time.Minute).Unix()})),
		"not yet valid":      demo.sign(nil, claims(map[string]any{"nbf": time.Now().Add(10 * time.Minute).Unix()})),
		"signed by another":  other.sign(nil, claims(nil)),
		"tampered payload":   tampered,
		"garbage":            "not.a.jwt",
		"HS256 confusion":    hs256Token(t, demo, claims(nil)),
		"truncated":          valid[:len(valid)-10],
		"two tokens, second": valid + " " + valid,
	}
	for name, tok := range attacks {
		r, err := get(sm.sleep, nil, "/headers", bearer(tok))
		if err != nil || r.code != http.StatusUnauthorized {
			t.Errorf("%s: %v %v, want 401", name, r, err)
		}
	}
	if r, err := get(sm.sleep, nil, "/headers", bearer(valid), "X-Other: 1"); err != nil || r.code != http.StatusOK {
		t.Errorf("the valid token again: %v %v, want 200", r, err)
	}
}

// hs256Token signs with HMAC-SHA256 using the public key's JWK as the
// secret: the algorithm-confusion attack.
func hs256Token(t *testing.T, s jwtSigner, c map[string]any) string {
	h, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "JWT", "kid": s.kid})
	p, _ := json.Marshal(c)
	in := b64url(h) + "." + b64url(p)
	return in + "." + b64url(hmacSHA256([]byte(s.jwks()), []byte(in)))
}

// testJWKSURI: keys fetched by the sidecar from a jwksUri, kept when the
// server goes away; a metadata-address jwksUri is refused at apply.
func testJWKSURI(t *testing.T, sm *securityMesh) {
	signer := newSigner(t, "k1")
	var fetches atomic.Int64
	var mu sync.Mutex
	jwks := signer.jwks()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, jwks)
	}))
	defer srv.Close()
	doc := fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: httpbin, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: https://issuer.test
    jwksUri: %s/jwks.json
    fromHeaders: [{name: x-token}]
`, srv.URL)
	applyYAML(t, sm.mesh, "jwks-uri.yaml", doc)
	sm.waitSynced(t)
	tok := signer.sign(nil, map[string]any{"iss": "https://issuer.test", "sub": "bob", "exp": time.Now().Add(time.Hour).Unix()})
	eventually(t, 10*time.Second, "a token verified with fetched keys", func() error {
		if r, err := get(sm.sleep, nil, "/get", "X-Token: "+tok); err != nil || r.code != http.StatusOK {
			return fmt.Errorf("%v %v", r, err)
		}
		return nil
	})
	if fetches.Load() == 0 {
		t.Errorf("the JWKS server saw no fetch")
	}
	if r, err := get(sm.sleep, nil, "/get", "X-Token: "+newSigner(t, "k1").sign(nil, map[string]any{"iss": "https://issuer.test", "sub": "bob", "exp": time.Now().Add(time.Hour).Unix()})); err != nil || r.code != http.StatusUnauthorized {
		t.Errorf("a token from another key: %v %v, want 401", r, err)
	}
	srv.Close() // the sidecar keeps the keys it has
	if r, err := get(sm.sleep, nil, "/get", "X-Token: "+tok); err != nil || r.code != http.StatusOK {
		t.Errorf("after the JWKS server went away: %v %v, want 200 with the last good keys", r, err)
	}
	bad := strings.Replace(doc, srv.URL+"/jwks.json", "http://169.254.169.254/latest/meta-data/jwks", 1)
	out, errOut, err := sm.cli("apply", "-f", writeFile(t, "metadata.yaml", bad))
	if err == nil || !strings.Contains(errOut, "jwtRules[0].jwksUri") {
		t.Errorf("a jwksUri at the metadata address: %v\n%s%s, want refused naming spec.jwtRules[0].jwksUri", err, out, errOut)
	}
}

// testPeerRollout: permissive, then strict, under continuous mesh traffic:
// no request of the mesh fails, plaintext is accepted only while permissive.
func testPeerRollout(t *testing.T, sm *securityMesh) {
	plaintext := func() error {
		r, err := rawRequest(sm.inbound, nil, "GET /get HTTP/1.1\r\nHost: httpbin\r\nConnection: close\r\n\r\n")
		if err != nil {
			return err
		}
		if r.code != http.StatusOK {
			return fmt.Errorf("%v", r)
		}
		return nil
	}
	if err := plaintext(); err == nil {
		t.Fatalf("plaintext to the inbound port with the default (STRICT) mode was served")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20000 && ctx.Err() == nil; i++ {
			code, _, _, err := httpGet("http://" + sm.sleep + "/get")
			sent.Add(1)
			if err != nil || code != http.StatusOK {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %v", code, err))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	sm.apply(t, "peer-permissive.yaml")
	if err := plaintext(); err != nil {
		t.Errorf("plaintext with PERMISSIVE: %v, want 200", err)
	}
	// A plaintext request cannot claim an identity.
	r, err := rawRequest(sm.inbound, nil, "GET /headers HTTP/1.1\r\nHost: httpbin\r\nX-Forwarded-Client-Cert: By=x;URI=spiffe://cluster.local/ns/default/sa/sleep\r\nConnection: close\r\n\r\n")
	if err != nil || r.code != http.StatusOK || len(r.echo.Headers["X-Forwarded-Client-Cert"]) != 0 {
		t.Errorf("plaintext with a spoofed XFCC: %v %v, app saw %q, want it stripped", r, err, r.echo.Headers["X-Forwarded-Client-Cert"])
	}
	time.Sleep(time.Second)
	sm.apply(t, "peer-strict.yaml")
	if err := plaintext(); err == nil {
		t.Errorf("plaintext with STRICT was served")
	}
	time.Sleep(time.Second)
	cancel()
	<-done
	if failed.Load() != 0 || sent.Load() < 50 {
		t.Errorf("mesh traffic during the rollout: %d of %d failed (first: %v), want none of at least 50", failed.Load(), sent.Load(), firstErr.Load())
	}
	t.Logf("mesh traffic during the rollout: %d requests, %d failed", sent.Load(), failed.Load())
}

// testPeerScopes: the narrowest PeerAuthentication wins, as Istio
// documents: workload (selector) over namespace over mesh-wide (root
// namespace), whichever order they were applied in.
func testPeerScopes(t *testing.T, sm *securityMesh) {
	plaintext := func() error {
		r, err := rawRequest(sm.inbound, nil, "GET /get HTTP/1.1\r\nHost: httpbin\r\nConnection: close\r\n\r\n")
		if err != nil {
			return err
		}
		if r.code != http.StatusOK {
			return fmt.Errorf("%v", r)
		}
		return nil
	}
	mesh := func(when string) {
		t.Helper()
		if r, err := get(sm.sleep, nil, "/get"); err != nil || r.code != http.StatusOK {
			t.Errorf("sleep → httpbin %s: %v %v, want 200", when, r, err)
		}
	}
	sm.apply(t, "peer-namespace-permissive.yaml")
	if err := plaintext(); err != nil {
		t.Errorf("plaintext with namespace PERMISSIVE: %v, want 200", err)
	}
	mesh("with namespace PERMISSIVE")
	sm.apply(t, "peer-strict.yaml") // mesh-wide STRICT: the namespace's policy still wins
	if err := plaintext(); err != nil {
		t.Errorf("plaintext with namespace PERMISSIVE under mesh-wide STRICT: %v, want 200", err)
	}
	sm.apply(t, "peer-workload-strict.yaml")
	if err := plaintext(); err == nil {
		t.Errorf("plaintext to httpbin with a workload STRICT policy in a PERMISSIVE namespace was served")
	}
	mesh("with workload STRICT")
	if _, errOut, err := sm.cli("delete", "peerauthentication", "httpbin-strict", "-n", "default"); err != nil {
		t.Fatalf("delete: %v %s", err, errOut)
	}
	sm.waitSynced(t)
	if err := plaintext(); err != nil {
		t.Errorf("plaintext after the workload policy was deleted: %v, want 200 (namespace PERMISSIVE again)", err)
	}
}

// testPeerDisablePort: a port-level DISABLE makes httpbin's port plaintext
// for everyone: callers' sidecars switch to plaintext, nothing breaks, and
// the app gets no identity.
func testPeerDisablePort(t *testing.T, sm *securityMesh) {
	sm.apply(t, "peer-disable-port.yaml")
	r, err := get(sm.sleep, nil, "/headers")
	if err != nil || r.code != http.StatusOK {
		t.Fatalf("sleep → httpbin with DISABLE: %v %v, want 200", r, err)
	}
	if v := r.echo.Headers["X-Forwarded-Client-Cert"]; len(v) != 0 {
		t.Errorf("app saw X-Forwarded-Client-Cert %q over a plaintext port", v)
	}
	if r, err := rawRequest(sm.inbound, nil, "GET /get HTTP/1.1\r\nHost: httpbin\r\nConnection: close\r\n\r\n"); err != nil || r.code != http.StatusOK {
		t.Errorf("plaintext client with DISABLE: %v %v, want 200", r, err)
	}
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}
