package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/pathnorm"
	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// Path options of tests: none (configs without them), and the contract's.
var (
	noPathOpts  = pathnorm.Options{}
	allPathOpts = pathnorm.Options{NormalizePath: true, MergeSlashes: true, EscapedSlashes: pathnorm.UnescapeAndForward}
)

// routedPath is the path the fast path routes on under opts (as
// downConn.normalizePath), reusing scratch.
func routedPath(scratch *[]byte, p []byte, opts pathnorm.Options) ([]byte, bool) {
	out, _, err := pathnorm.Normalize(*scratch, p, opts)
	if err != nil {
		return nil, false
	}
	if len(out) > 0 && len(p) > 0 && &out[0] != &p[0] {
		*scratch = out
	}
	return out, true
}

// withPathNorm returns the HCM filter f with the contract's path options
// and the given escaped slashes action.
func withPathNorm(t testing.TB, f *listenerv3.Filter, action hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction) *listenerv3.Filter {
	t.Helper()
	var h hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	h.NormalizePath = wrapperspb.Bool(true)
	h.MergeSlashes = true
	h.PathWithEscapedSlashesAction = action
	return &listenerv3.Filter{Name: f.GetName(), ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.Any(t, &h)}}
}

// uriApp answers with the request target it received, and counts requests.
func uriApp(hits *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintf(w, "uri=%s\n", r.RequestURI)
	})
}

// denyAdmin is a route answering 403 for the prefix /admin: it stands for
// a DENY policy, to show what the route and policy matchers see.
func denyAdmin() *routev3.Route {
	return &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/admin"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: http.StatusForbidden,
		}},
	}
}

// TestPathTricksThroughMesh sends issue 5's path tricks through both
// sidecars (the client's outbound listener and the server's inbound one,
// each with the contract's path options) on the fast path (HTTP/1.1) and
// the net/http path (HTTP/1.0): what the route matched is what the app
// received.
func TestPathTricksThroughMesh(t *testing.T) {
	var hits atomic.Int64
	m := newMesh(t, uriApp(&hits), false)
	ss := m.serverSet(t)
	rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	ss.Listeners[inName] = proxytest.Listener(t, inName, m.inAddr,
		withPathNorm(t, proxytest.HCM(t, "", rc, true), hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD), proxytest.DownstreamTLS(t, "h2", "http/1.1"))
	if err := m.server.Update(ss); err != nil {
		t.Fatalf("server Update: %v", err)
	}
	cs := m.buildClientSet(t)
	cs.Listeners[outName] = proxytest.Listener(t, outName, m.outAddr,
		withPathNorm(t, proxytest.HCM(t, outName, nil, false), hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD), nil)
	vh := cs.Routes[outName].VirtualHosts[0]
	vh.Routes = append([]*routev3.Route{denyAdmin()}, vh.Routes...)
	if err := m.client.Update(cs); err != nil {
		t.Fatalf("client Update: %v", err)
	}
	const denied = "denied"
	tests := []struct{ target, want string }{
		{"/admin", denied},
		{"//admin", denied},
		{"/./admin", denied},
		{"/x/../admin", denied},
		{"/%2e%2e/admin", denied},
		{"/admin%2F", denied},
		{"/x%2F..%2Fadmin", denied},
		{"/x%5C..%5Cadmin", denied},
		{`/x\..\admin`, denied},
		{"/admin#frag", denied},
		{"/admin?x=1", denied},
		{"/%61dmin", denied},
		{"/ADMIN", "/ADMIN"}, // the rule is case-sensitive
		{"/public/./a//b?q=/../admin", "/public/a/b?q=/../admin"},
		{"/%70ublic/%7euser/%3f", "/public/~user/%3F"},
		{"/public/x#/../../admin", "/public/x"},
	}
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		for _, tt := range tests {
			c, br := rawConn(t, m.outAddr)
			mustWrite(t, c, "GET "+tt.target+" "+proto+"\r\nHost: server\r\n\r\n")
			res, body := readResponse(t, br, "GET")
			_ = c.Close()
			switch {
			case tt.want == denied && res.StatusCode != http.StatusForbidden:
				t.Errorf("%s %s: %d %q, want 403", proto, tt.target, res.StatusCode, body)
			case tt.want != denied && (res.StatusCode != http.StatusOK || body != "uri="+tt.want+"\n"):
				t.Errorf("%s %s: %d %q, want the app to get %s", proto, tt.target, res.StatusCode, body, tt.want)
			}
		}
	}
	// NUL, raw or escaped, and malformed escapes: 400, nothing reaches the app.
	before := hits.Load()
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		for _, target := range []string{"/public%00", "/public/%00/../x", "/public%zz", "/public%2"} {
			c, br := rawConn(t, m.outAddr)
			mustWrite(t, c, "GET "+target+" "+proto+"\r\nHost: server\r\n\r\n")
			res, body := readResponse(t, br, "GET")
			_ = c.Close()
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %s: %d %q, want 400", proto, target, res.StatusCode, body)
			}
		}
	}
	if n := hits.Load() - before; n != 0 {
		t.Errorf("%d refused requests reached the app", n)
	}
}

// singleProxy is one sidecar with a plaintext listener whose HCM has the
// path options (action for escaped slashes), routing everything to app.
func singleProxy(t *testing.T, app http.Handler, action hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction) string {
	t.Helper()
	ca := proxytest.NewCA(t, trustDomain)
	p := newProxy(t, ca.Identity(t, serverID))
	addr := proxytest.FreeAddr(t)
	set := resources.NewSet()
	rc := proxytest.RouteConfig("local", proxytest.PrefixRoute("/", "app", 0))
	set.Listeners["local"] = proxytest.Listener(t, "local", addr, withPathNorm(t, proxytest.HCM(t, "", rc, false), action), nil)
	set.Clusters["app"] = proxytest.StaticCluster(t, "app", serveApp(t, app), false)
	if err := p.Update(set); err != nil {
		t.Fatalf("Update: %v", err)
	}
	return addr
}

func TestEscapedSlashActions(t *testing.T) {
	var hits atomic.Int64
	tests := []struct {
		action   hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
		code     int
		location string // 307
		uri      string // 200: what the app got
	}{
		{action: hcmv3.HttpConnectionManager_KEEP_UNCHANGED, code: http.StatusOK, uri: "/a%2F..%2Fb/c?q=%2f"},
		{action: hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD, code: http.StatusOK, uri: "/b/c?q=%2f"},
		{action: hcmv3.HttpConnectionManager_REJECT_REQUEST, code: http.StatusBadRequest},
		{action: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT, code: http.StatusTemporaryRedirect, location: "/b/c?q=%2f"},
	}
	for _, tt := range tests {
		t.Run(tt.action.String(), func(t *testing.T) {
			addr := singleProxy(t, uriApp(&hits), tt.action)
			for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
				before := hits.Load()
				c, br := rawConn(t, addr)
				mustWrite(t, c, "GET /a%2f..%2Fb//c?q=%2f "+proto+"\r\nHost: x\r\n\r\n")
				res, body := readResponse(t, br, "GET")
				_ = c.Close()
				if res.StatusCode != tt.code || res.Header.Get("Location") != tt.location ||
					tt.uri != "" && body != "uri="+tt.uri+"\n" {
					t.Errorf("%s: %d location=%q %q; want %d location=%q uri=%q", proto, res.StatusCode,
						res.Header.Get("Location"), body, tt.code, tt.location, tt.uri)
				}
				if reached := hits.Load() != before; reached != (tt.code == http.StatusOK) {
					t.Errorf("%s: reached the app: %v", proto, reached)
				}
			}
		})
	}
}

// Without path options (configs from before them) the path is matched
// and forwarded as received, fragment dropped; NUL is still refused.
func TestNoPathOptionsKeepsRawPath(t *testing.T) {
	var hits atomic.Int64
	ca := proxytest.NewCA(t, trustDomain)
	p := newProxy(t, ca.Identity(t, serverID))
	addr := proxytest.FreeAddr(t)
	set := resources.NewSet()
	rc := proxytest.RouteConfig("local",
		&routev3.Route{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/a%2Fb"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: http.StatusTeapot}},
		},
		proxytest.PrefixRoute("/", "app", 0))
	set.Listeners["local"] = proxytest.Listener(t, "local", addr, proxytest.HCM(t, "", rc, false), nil)
	set.Clusters["app"] = proxytest.StaticCluster(t, "app", serveApp(t, uriApp(&hits)), false)
	if err := p.Update(set); err != nil {
		t.Fatalf("Update: %v", err)
	}
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		for _, tt := range []struct {
			target string
			code   int
			body   string
		}{
			{"/a%2Fb", http.StatusTeapot, ""},
			{"/a/b", http.StatusOK, "uri=/a/b\n"},
			{"//x/./y/../%41?q#f", http.StatusOK, "uri=//x/./y/../%41?q\n"},
			{"/x%00", http.StatusBadRequest, ""},
		} {
			c, br := rawConn(t, addr)
			mustWrite(t, c, "GET "+tt.target+" "+proto+"\r\nHost: x\r\n\r\n")
			res, body := readResponse(t, br, "GET")
			_ = c.Close()
			if res.StatusCode != tt.code || tt.body != "" && body != tt.body {
				t.Errorf("%s %s: %d %q, want %d %q", proto, tt.target, res.StatusCode, body, tt.code, tt.body)
			}
		}
	}
}

// BenchmarkMeshRequestPathNorm is BenchmarkMeshRequest/fast with the
// contract's path options on both listeners: a normal path costs no
// allocation, one that changes is rewritten in the connection's scratch.
func BenchmarkMeshRequestPathNorm(b *testing.B) {
	for _, bc := range []struct{ name, target string }{
		{"normal", "/bench/reviews/1?x=1"},
		{"rewritten", "/bench/./reviews//a/../1%2F?x=1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ca := proxytest.NewCA(b, trustDomain)
			m := &mesh{ca: ca, allowed: []string{serverID}}
			m.appAddr = rawApp(b, "hello, mesh\n")
			m.client = newProxy(b, ca.Identity(b, clientID))
			m.server = newProxy(b, ca.Identity(b, serverID))
			m.inAddr, m.outAddr = proxytest.FreeAddr(b), proxytest.FreeAddr(b)
			ss := m.serverSet(b)
			rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
			ss.Listeners[inName] = proxytest.Listener(b, inName, m.inAddr,
				withPathNorm(b, proxytest.HCM(b, "", rc, true), hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD), proxytest.DownstreamTLS(b, "h2", "http/1.1"))
			cs := m.buildClientSet(b)
			cs.Listeners[outName] = proxytest.Listener(b, outName, m.outAddr,
				withPathNorm(b, proxytest.HCM(b, outName, nil, false), hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD), nil)
			if err := m.server.Update(ss); err != nil {
				b.Fatal(err)
			}
			if err := m.client.Update(cs); err != nil {
				b.Fatal(err)
			}
			conn, err := net.Dial("tcp", m.outAddr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 16<<10)
			req := []byte("GET " + bc.target + " HTTP/1.1\r\nHost: server\r\nUser-Agent: bench\r\n\r\n")
			roundTrip := func() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				if err := readRawResponse(br); err != nil {
					b.Fatal(err)
				}
			}
			roundTrip()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				roundTrip()
			}
		})
	}
}
