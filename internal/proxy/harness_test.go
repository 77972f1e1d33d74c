package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"go.uber.org/goleak"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	trustDomain = "test.local"
	clientID    = "spiffe://test.local/ns/default/sa/client"
	serverID    = "spiffe://test.local/ns/default/sa/server"
	otherID     = "spiffe://test.local/ns/default/sa/other"
	inName      = "inbound|8080"
	outName     = "outbound|8080|server"
	outCluster  = "outbound|8080||server"
)

func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// newProxy creates a Proxy that is shut down when the test ends.
func newProxy(t testing.TB, id Identity) *Proxy {
	t.Helper()
	return newProxyOpts(t, Options{Identity: id, Logger: testLogger(t)})
}

// newProxyOpts creates a Proxy with opts that is shut down when the test ends.
func newProxyOpts(t testing.TB, opts Options) *Proxy {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return p
}

// serveApp runs h on a loopback listener speaking HTTP/1.1 and h2c.
func serveApp(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols), ReadHeaderTimeout: 5 * time.Second}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// mesh is two sidecars: client (outbound listener) → server (inbound mTLS
// listener) → app.
type mesh struct {
	ca              *proxytest.CA
	client, server  *Proxy
	clientIdentity  *proxytest.Identity
	serverIdentity  *proxytest.Identity
	outAddr, inAddr string
	appAddr         string
	http2           bool
	allowed         []string
	clientSet       *resources.Set
}

func newMesh(t *testing.T, app http.Handler, http2 bool) *mesh {
	t.Helper()
	m := &mesh{ca: proxytest.NewCA(t, trustDomain), http2: http2, allowed: []string{serverID}}
	m.appAddr = serveApp(t, app)
	m.clientIdentity = m.ca.Identity(t, clientID)
	m.client = newProxy(t, m.clientIdentity)
	m.serverIdentity = m.ca.Identity(t, serverID)
	m.server = newProxy(t, m.serverIdentity)
	m.inAddr = proxytest.FreeAddr(t)
	m.outAddr = proxytest.FreeAddr(t)
	if err := m.server.Update(m.serverSet(t)); err != nil {
		t.Fatalf("server Update: %v", err)
	}
	m.clientSet = m.buildClientSet(t)
	if err := m.client.Update(m.clientSet); err != nil {
		t.Fatalf("client Update: %v", err)
	}
	return m
}

func (m *mesh) serverSet(t testing.TB) *resources.Set {
	set := resources.NewSet()
	rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	set.Listeners[inName] = proxytest.Listener(t, inName, m.inAddr, proxytest.HCM(t, "", rc, true), proxytest.DownstreamTLS(t, "h2", "http/1.1"))
	set.Clusters[inName] = proxytest.StaticCluster(t, inName, m.appAddr, m.http2)
	return set
}

func (m *mesh) buildClientSet(t testing.TB) *resources.Set {
	set := resources.NewSet()
	set.Listeners[outName] = proxytest.Listener(t, outName, m.outAddr, proxytest.HCM(t, outName, nil, false), nil)
	routes := []*routev3.Route{proxytest.PrefixRoute("/missing", "outbound|8080||nowhere", 0)}
	routes = append(routes, proxytest.PrefixRoute("/timeout", outCluster, 100*time.Millisecond))
	routes = append(routes, proxytest.PrefixRoute("/", outCluster, 0))
	set.Routes[outName] = proxytest.RouteConfig(outName, routes...)
	alpn := "http/1.1"
	if m.http2 {
		alpn = "h2"
	}
	set.Clusters[outCluster] = proxytest.EDSCluster(t, outCluster, m.allowed, m.http2, alpn)
	set.Endpoints[outCluster] = proxytest.CLA(t, outCluster, []string{m.inAddr})
	return set
}

func (m *mesh) url(path string) string { return "http://" + m.outAddr + path }

// httpClient returns a client whose idle connections are closed at cleanup.
func httpClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func regexPath(re string) *routev3.RouteMatch_SafeRegex {
	return &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}
}
