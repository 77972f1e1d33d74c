package proxy

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// TestDownstreamConnectionLimit: a listener with its maximum of open
// connections closes one more at once and counts it, and serves again
// when one closes.
func TestDownstreamConnectionLimit(t *testing.T) {
	app := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	p := newProxyOpts(t, Options{Identity: proxytest.NewCA(t, trustDomain).Identity(t, clientID), Logger: testLogger(t), MaxDownstreamConns: 2})
	addr := proxytest.FreeAddr(t)
	set := resources.NewSet()
	set.Listeners[outName] = proxytest.Listener(t, outName, addr, proxytest.HCM(t, outName, nil, false), nil)
	set.Routes[outName] = proxytest.RouteConfig(outName, proxytest.PrefixRoute("/", inName, 0))
	set.Clusters[inName] = proxytest.StaticCluster(t, inName, app, false)
	if err := p.Update(set); err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	waitStat(t, p, "listener."+outName+".active_connections 2")
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := third.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the third connection read %d bytes, want it closed", n)
	}
	waitStat(t, p, "listener."+outName+".downstream_cx_overflow 1")
	held[0].Close()
	waitStat(t, p, "listener."+outName+".active_connections 1")
	c := httpClient(t)
	res, err := c.Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("after one closed: %d, want 200", res.StatusCode)
	}
}
