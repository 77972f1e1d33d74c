package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

// echoApp answers with what the app saw: path, XFCC and x-trellis-* headers.
func echoApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			time.Sleep(500 * time.Millisecond)
		case "/timeout":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("X-App-Proto", r.Proto)
		fmt.Fprintf(w, "path=%s\nxfcc=%s\ntrellis=%s\nconnection=%s\n", r.URL.Path,
			r.Header.Get("X-Forwarded-Client-Cert"), r.Header.Get("X-Trellis-Evil"), r.Header.Get("X-Hop"))
	})
}

func get(t *testing.T, c *http.Client, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(body)
}

func TestHTTP1ThroughMesh(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	c := httpClient(t)
	res, body := get(t, c, m.url("/hello"), map[string]string{
		"X-Forwarded-Client-Cert": "By=spiffe://evil;URI=spiffe://evil",
		"X-Trellis-Evil":          "1",
		"Connection":              "X-Hop",
		"X-Hop":                   "must be stripped",
	})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, body %q", res.StatusCode, body)
	}
	want := "path=/hello\nxfcc=By=" + serverID + ";URI=" + clientID + "\ntrellis=\nconnection=\n"
	if body != want {
		t.Errorf("app saw\n%s\nwant\n%s", body, want)
	}
	if got := res.Header.Get("X-App-Proto"); got != "HTTP/1.1" {
		t.Errorf("app protocol = %q, want HTTP/1.1", got)
	}
	var stats strings.Builder
	m.client.WriteStats(&stats)
	for _, line := range []string{
		"listener." + outName + ".requests 1",
		"listener." + outName + ".responses_2xx 1",
		"cluster." + outCluster + ".requests 1",
		"cluster." + outCluster + ".active_connections 1",
	} {
		if !strings.Contains(stats.String(), line+"\n") {
			t.Errorf("stats lack %q:\n%s", line, stats.String())
		}
	}
}

func TestHTTPLocalReplies(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	c := httpClient(t)
	tests := []struct {
		path   string
		code   int
		reason string
	}{
		{"/missing", http.StatusServiceUnavailable, reasonClusterNotFound},
		{"/timeout", http.StatusGatewayTimeout, reasonTimeout},
	}
	for _, tt := range tests {
		res, body := get(t, c, m.url(tt.path), nil)
		if res.StatusCode != tt.code || res.Header.Get("X-Trellis-Reason") != tt.reason {
			t.Errorf("%s: got %d %q (%q), want %d %q", tt.path, res.StatusCode, res.Header.Get("X-Trellis-Reason"), body, tt.code, tt.reason)
		}
	}
	// A route configuration that has not arrived yet: 404 route_not_found.
	set := m.buildClientSet(t)
	delete(set.Routes, outName)
	if err := m.client.Update(set); err != nil {
		t.Fatalf("Update: %v", err)
	}
	res, _ := get(t, c, m.url("/hello"), nil)
	if res.StatusCode != http.StatusNotFound || res.Header.Get("X-Trellis-Reason") != reasonRouteNotFound {
		t.Errorf("missing RDS: got %d %q", res.StatusCode, res.Header.Get("X-Trellis-Reason"))
	}
	// No healthy endpoint: 503 no_healthy_upstream.
	set = m.buildClientSet(t)
	set.Endpoints[outCluster] = proxytest.CLA(t, outCluster, []string{m.inAddr}, m.inAddr)
	if err := m.client.Update(set); err != nil {
		t.Fatalf("Update: %v", err)
	}
	res, _ = get(t, c, m.url("/hello"), nil)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("X-Trellis-Reason") != reasonNoHealthy {
		t.Errorf("unhealthy: got %d %q", res.StatusCode, res.Header.Get("X-Trellis-Reason"))
	}
}

func TestSecureNamingRefusesWrongServer(t *testing.T) {
	ca := proxytest.NewCA(t, trustDomain)
	m := &mesh{ca: ca, allowed: []string{otherID}}
	m.appAddr = serveApp(t, echoApp())
	m.client = newProxy(t, ca.Identity(t, clientID))
	m.server = newProxy(t, ca.Identity(t, serverID)) // valid mesh cert, wrong service
	m.inAddr = proxytest.FreeAddr(t)
	m.outAddr = proxytest.FreeAddr(t)
	if err := m.server.Update(m.serverSet(t)); err != nil {
		t.Fatalf("server Update: %v", err)
	}
	if err := m.client.Update(m.buildClientSet(t)); err != nil {
		t.Fatalf("client Update: %v", err)
	}
	res, body := get(t, httpClient(t), m.url("/hello"), nil)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("X-Trellis-Reason") != reasonConnectFailure {
		t.Fatalf("got %d %q %q, want 503 %s", res.StatusCode, res.Header.Get("X-Trellis-Reason"), body, reasonConnectFailure)
	}
	var stats strings.Builder
	m.client.WriteStats(&stats)
	if !strings.Contains(stats.String(), "cluster."+outCluster+".tls_handshake_failures 1\n") {
		t.Errorf("tls failure not counted:\n%s", stats.String())
	}
}

func TestInboundRefusesUnauthenticatedClients(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	foreign := proxytest.NewCA(t, trustDomain) // same trust domain name, different root
	tests := []struct {
		name string
		c    *http.Client
		url  string
	}{
		{"plaintext", httpClient(t), "http://" + m.inAddr + "/"},
		{"no client cert", tlsClient(t, proxytest.ClientTLS(nil, m.ca)), "https://" + m.inAddr + "/"},
		{"foreign CA", tlsClient(t, proxytest.ClientTLS(foreign.SVID(t, clientID), m.ca)), "https://" + m.inAddr + "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.c.Get(tt.url)
			if err != nil {
				return // refused in the handshake
			}
			// crypto/tls answers plaintext HTTP with a canned 400; the app
			// must never see the request.
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "path=") {
				t.Fatalf("request reached the app: %d %q", res.StatusCode, body)
			}
		})
	}
	// The mesh CA's own client cert is accepted.
	res, err := tlsClient(t, proxytest.ClientTLS(m.ca.SVID(t, clientID), m.ca)).Get("https://" + m.inAddr + "/ok")
	if err != nil {
		t.Fatalf("mesh client refused: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("mesh client: status %d", res.StatusCode)
	}
}

func tlsClient(t *testing.T, cfg *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func TestUpdateKeepsInFlightRequest(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	c := httpClient(t)
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, err := c.Get(m.url("/slow"))
		if err != nil {
			errc <- err
			return
		}
		defer res.Body.Close()
		if _, err := io.ReadAll(res.Body); err != nil {
			errc <- err
			return
		}
		if res.StatusCode != http.StatusOK {
			errc <- fmt.Errorf("status %d", res.StatusCode)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	boundBefore := m.client.bound[outName]
	upBefore := m.client.cfg.Load().clusters[outCluster].up
	// Change the cluster (new transport) and the server listener's config.
	set := m.buildClientSet(t)
	set.Clusters[outCluster].ConnectTimeout.Seconds = 3
	if err := m.client.Update(set); err != nil {
		t.Fatalf("client Update: %v", err)
	}
	if err := m.server.Update(m.serverSet(t)); err != nil {
		t.Fatalf("server Update: %v", err)
	}
	if m.client.bound[outName] != boundBefore {
		t.Error("unchanged listener was rebound")
	}
	if m.client.cfg.Load().clusters[outCluster].up == upBefore {
		t.Error("changed cluster kept its old transport")
	}
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatalf("in-flight request broken by update: %v", err)
	default:
	}
	// An identical update keeps the transport (and its pooled connections).
	upNow := m.client.cfg.Load().clusters[outCluster].up
	if err := m.client.Update(set); err != nil {
		t.Fatalf("client Update: %v", err)
	}
	if m.client.cfg.Load().clusters[outCluster].up != upNow {
		t.Error("unchanged cluster got a new transport")
	}
	if res, _ := get(t, c, m.url("/after"), nil); res.StatusCode != http.StatusOK {
		t.Fatalf("after update: status %d", res.StatusCode)
	}
}

func TestInvalidUpdateKeepsServing(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	set := m.buildClientSet(t)
	set.Routes[outName].VirtualHosts[0].Routes[0].Match.PathSpecifier = regexPath("(")
	err := m.client.Update(set)
	if err == nil {
		t.Fatal("Update with bad regex succeeded")
	}
	for _, want := range []string{`route configuration "` + outName + `"`, "safe_regex"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	res, body := get(t, httpClient(t), m.url("/hello"), nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("old config not serving: %d %q", res.StatusCode, body)
	}
	dump, err := m.client.ConfigDump()
	if err != nil {
		t.Fatalf("ConfigDump: %v", err)
	}
	if strings.Contains(string(dump), `"regex": "("`) {
		t.Error("config dump shows the rejected config")
	}
}

func TestListenerRemovedAndReadded(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	c := httpClient(t)
	empty := m.buildClientSet(t)
	delete(empty.Listeners, outName)
	if err := m.client.Update(empty); err != nil {
		t.Fatalf("Update: %v", err)
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	if res, err := c.Get(m.url("/gone")); err == nil {
		res.Body.Close()
		t.Fatal("removed listener still accepts")
	}
	if err := m.client.Update(m.buildClientSet(t)); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if res, _ := get(t, c, m.url("/back"), nil); res.StatusCode != http.StatusOK {
		t.Fatalf("re-added listener: status %d", res.StatusCode)
	}
}
