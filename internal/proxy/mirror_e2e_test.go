package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

func TestMirror(t *testing.T) {
	type seen struct{ host, uri, body, hdr string }
	got := make(chan seen, 16)
	release := make(chan struct{})
	mirrorApp := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Host, r.RequestURI, string(b), r.Header.Get("X-Route")}
		if r.URL.Path == "/v2/slow" {
			<-release
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(func() { close(release) })
	m := featureMesh(t, featureApp(), nil, func(set *resources.Set) {
		set.Clusters["shadow"] = proxytest.StaticCluster(t, "shadow", mirrorApp, false)
		r := proxytest.PrefixRoute("/m/", outCluster, 0)
		a := r.GetRoute()
		a.PrefixRewrite = "/v2/"
		a.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}}
		r.RequestHeadersToAdd = []*corev3.HeaderValueOption{hvo("x-route", "m", overwriteOrAdd)}
		prependRoutes(set, r)
	})
	bothPaths(t, func(t *testing.T, c *http.Client) {
		res, body := featDo(t, c, "POST", m.url("/m/echo?x=1"), "hello", "Host", "reviews:9080")
		if res.StatusCode != 200 || !hasLine(body, "body=hello") {
			t.Fatalf("mirrored request: %d %q", res.StatusCode, body)
		}
		select {
		case s := <-got:
			if s.host != "reviews-shadow:9080" || s.uri != "/v2/echo?x=1" || s.body != "hello" || s.hdr != "m" {
				t.Errorf("mirror saw %+v", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no mirror copy")
		}
		// A slow mirror does not slow the caller.
		start := time.Now()
		res, _ = featDo(t, c, "GET", m.url("/m/slow"), "")
		if d := time.Since(start); res.StatusCode != 200 || d > time.Second {
			t.Errorf("request with a stuck mirror: %d after %s", res.StatusCode, d)
		}
		<-got
		// Bodies over the limit are not mirrored; the request still works.
		big := strings.Repeat("x", maxMirrorBody+1)
		res, body = featDo(t, c, "POST", m.url("/m/big"), big)
		if res.StatusCode != 200 || !strings.Contains(body, "body="+big[:10]) {
			t.Errorf("large body request: %d", res.StatusCode)
		}
	})
	select {
	case s := <-got:
		t.Errorf("a body over the limit was mirrored: %d bytes", len(s.body))
	case <-time.After(100 * time.Millisecond):
	}
	waitStat(t, m.client, "listener."+outName+".mirrors_sent 2")
	waitStat(t, m.client, "listener."+outName+".mirrors_dropped 2")
}

// A mirror copy over the fast path with Expect: 100-continue reads the
// body after answering 100 itself.
func TestMirrorExpectContinue(t *testing.T) {
	fastOnly(t)
	got := make(chan string, 1)
	mirrorApp := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	m := featureMesh(t, featureApp(), nil, func(set *resources.Set) {
		set.Clusters["shadow"] = proxytest.StaticCluster(t, "shadow", mirrorApp, false)
		r := proxytest.PrefixRoute("/", outCluster, 0)
		r.GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}}
		set.Routes[outName].VirtualHosts[0].Routes = []*routev3.Route{r}
	})
	conn, br := rawConn(t, m.outAddr)
	mustWrite(t, conn, "PUT /x HTTP/1.1\r\nHost: server\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("first line %q %v", line, err)
	}
	_, _ = br.ReadString('\n')
	mustWrite(t, conn, "hello")
	res, body := readResponse(t, br, "PUT")
	if res.StatusCode != 200 || !hasLine(body, "body=hello") {
		t.Fatalf("response %d %q", res.StatusCode, body)
	}
	if b := <-got; b != "hello" {
		t.Errorf("mirror got body %q", b)
	}
}
