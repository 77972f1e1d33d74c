package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingApp serves bodyApp and counts the connections it accepted.
func countingApp(t *testing.T, idle time.Duration) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := &http.Server{Handler: bodyApp(), IdleTimeout: idle, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String(), &conns
}

func TestFastKeepAliveReuseBothHops(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, bodyApp(), false)
	appAddr, conns := countingApp(t, 0)
	m.appAddr = appAddr
	if err := m.server.Update(m.serverSet(t)); err != nil {
		t.Fatal(err)
	}
	c, br := rawConn(t, m.outAddr)
	for i := range 10 {
		mustWrite(t, c, fmt.Sprintf("GET /r%d HTTP/1.1\r\nHost: server\r\n\r\n", i))
		if res, body := readResponse(t, br, "GET"); res.StatusCode != 200 || body != fmt.Sprintf("path=/r%d", i) {
			t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("app accepted %d connections, want 1", n)
	}
	for _, p := range []*Proxy{m.client, m.server} {
		if s := statsOf(p); !strings.Contains(s, "active_connections 1\n") || strings.Contains(s, "active_connections 2\n") {
			t.Errorf("upstream connections not reused:\n%s", s)
		}
	}
	if !strings.Contains(statsOf(m.client), "cluster."+outCluster+".active_connections 1\n") {
		t.Errorf("client sidecar upstream connections:\n%s", statsOf(m.client))
	}
}

func TestFastUpstreamClosesIdleConnection(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, bodyApp(), false)
	appAddr, conns := countingApp(t, 100*time.Millisecond)
	m.appAddr = appAddr
	if err := m.server.Update(m.serverSet(t)); err != nil {
		t.Fatal(err)
	}
	c, br := rawConn(t, m.outAddr)
	get := func(path string) (*http.Response, string) {
		mustWrite(t, c, "GET "+path+" HTTP/1.1\r\nHost: server\r\n\r\n")
		return readResponse(t, br, "GET")
	}
	get("/first")
	time.Sleep(300 * time.Millisecond) // the app closes its idle connection
	// Idempotent, nothing sent: reconnect and retry transparently.
	if res, body := get("/second"); res.StatusCode != 200 || body != "path=/second" {
		t.Fatalf("after upstream close: %d %q", res.StatusCode, body)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("app connections = %d, want 2", n)
	}
	time.Sleep(300 * time.Millisecond)
	// A request with a body cannot be replayed, so the pooled connection is
	// probed first, found closed, and a new one dialed.
	mustWrite(t, c, "POST /third HTTP/1.1\r\nHost: server\r\nContent-Length: 3\r\n\r\nabc")
	if res, body := readResponse(t, br, "POST"); res.StatusCode != 200 || body != "path=/third" {
		t.Fatalf("non-idempotent after upstream close: %d %q", res.StatusCode, body)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("app connections = %d, want 3", n)
	}
}

// dropApp answers the first request on each connection and closes the
// connection, without answering, on the second.
func dropApp(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if i == 1 {
						return
					}
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

// An upstream that drops a reused connection after the request was sent:
// an idempotent request without a body is retried on a new connection; any
// other request gets 503 upstream_reset.
func TestFastUpstreamResetOnReusedConnection(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, bodyApp(), false)
	m.appAddr = dropApp(t)
	if err := m.server.Update(m.serverSet(t)); err != nil {
		t.Fatal(err)
	}
	c, br := rawConn(t, m.outAddr)
	for _, tt := range []struct {
		req    string
		code   int
		reason string
	}{
		{"GET /a HTTP/1.1\r\nHost: s\r\n\r\n", 200, ""},
		{"POST /b HTTP/1.1\r\nHost: s\r\nContent-Length: 1\r\n\r\nx", 503, reasonReset},
		{"GET /c HTTP/1.1\r\nHost: s\r\n\r\n", 200, ""},
		{"GET /d HTTP/1.1\r\nHost: s\r\n\r\n", 200, ""}, // dropped, retried
	} {
		mustWrite(t, c, tt.req)
		res, _ := readResponse(t, br, "GET")
		if res.StatusCode != tt.code || res.Header.Get("X-Trellis-Reason") != tt.reason {
			t.Fatalf("%q: %d %q, want %d %q", tt.req, res.StatusCode, res.Header.Get("X-Trellis-Reason"), tt.code, tt.reason)
		}
	}
}

func TestFastClientHangUpMidBody(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, bodyApp(), false)
	c, _ := rawConn(t, m.outAddr)
	mustWrite(t, c, "POST /sum HTTP/1.1\r\nHost: server\r\nContent-Length: 1000000\r\n\r\n"+strings.Repeat("x", 1000))
	time.Sleep(50 * time.Millisecond)
	_ = c.Close()
	waitStat(t, m.client, "listener."+outName+".downstream_cancelled 1")
	if s := statsOf(m.client); !strings.Contains(s, "listener."+outName+".responses_5xx 0\n") {
		t.Errorf("hang-up counted as 5xx:\n%s", s)
	}
	// The sidecar keeps serving.
	if res, _ := get(t, httpClient(t), m.url("/after"), nil); res.StatusCode != 200 {
		t.Fatalf("after hang-up: %d", res.StatusCode)
	}
}

func TestFastExpectContinue(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, bodyApp(), false)
	c, br := rawConn(t, m.outAddr)
	mustWrite(t, c, "PUT /sum HTTP/1.1\r\nHost: server\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim response %q %v", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("interim response not terminated: %q", blank)
	}
	mustWrite(t, c, "abc")
	res, body := readResponse(t, br, "PUT")
	if res.StatusCode != 200 || !strings.HasPrefix(body, "3 ") {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
}

func TestFastRejectsSmuggling(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, bodyApp(), false)
	for _, raw := range []string{
		"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
		"GET / HTTP/1.1\nHost: s\n\n",
		"GET / HTTP/1.1\r\nHost : s\r\n\r\n",
	} {
		c, br := rawConn(t, m.outAddr)
		mustWrite(t, c, raw)
		res, _ := readResponse(t, br, "GET")
		if res.StatusCode != http.StatusBadRequest || !res.Close {
			t.Errorf("%q: %d close=%v, want 400 and close", raw, res.StatusCode, res.Close)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Errorf("%q: connection kept open", raw)
		}
	}
	c, br := rawConn(t, m.outAddr)
	mustWrite(t, c, "GET / HTTP/1.1\r\nHost: s\r\nX-Big: "+strings.Repeat("a", 70<<10)+"\r\n\r\n")
	if res, _ := readResponse(t, br, "GET"); res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized head: %d, want 431", res.StatusCode)
	}
}

func TestFastShutdownClosesAfterInFlight(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, echoApp(), false)
	c, br := rawConn(t, m.outAddr)
	mustWrite(t, c, "GET /slow HTTP/1.1\r\nHost: server\r\n\r\n")
	idle, ibr := rawConn(t, m.outAddr)
	mustWrite(t, idle, "GET /quick HTTP/1.1\r\nHost: server\r\n\r\n")
	readResponse(t, ibr, "GET")
	time.Sleep(100 * time.Millisecond)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- m.client.Shutdown(ctx)
	}()
	res, body := readResponse(t, br, "GET")
	if res.StatusCode != 200 || !strings.Contains(body, "path=/slow") || !res.Close {
		t.Fatalf("in-flight during drain: %d close=%v %q", res.StatusCode, res.Close, body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := ibr.ReadByte(); err == nil {
		t.Error("idle keep-alive connection not closed by shutdown")
	}
}

// The legacy forwarder stays selectable (Options.LegacyHTTP1 or the
// environment) and serves the same mesh.
func TestLegacyPathStillServes(t *testing.T) {
	t.Setenv("TRELLIS_PROXY_LEGACY_HTTP1", "1")
	m := newMesh(t, echoApp(), false)
	if !m.client.legacyHTTP1 || !m.client.bound[outName].h1.legacy {
		t.Fatal("legacy path not selected")
	}
	res, body := get(t, httpClient(t), m.url("/legacy"), nil)
	if res.StatusCode != 200 || !strings.Contains(body, "URI="+clientID) {
		t.Fatalf("legacy: %d %q", res.StatusCode, body)
	}
}

// A route timeout answers 504 and the caller's connection stays usable for
// local replies and forwarded requests alike.
func TestFastRouteTimeoutKeepsConnection(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, echoApp(), false)
	c, br := rawConn(t, m.outAddr)
	for _, tt := range []struct {
		path   string
		code   int
		reason string
	}{
		{"/timeout", http.StatusGatewayTimeout, reasonTimeout},
		{"/missing", http.StatusServiceUnavailable, reasonClusterNotFound},
		{"/hello", http.StatusOK, ""},
	} {
		start := time.Now()
		mustWrite(t, c, "GET "+tt.path+" HTTP/1.1\r\nHost: server\r\n\r\n")
		res, body := readResponse(t, br, "GET")
		if res.StatusCode != tt.code || res.Header.Get("X-Trellis-Reason") != tt.reason || res.Close {
			t.Fatalf("%s: %d %q close=%v %q", tt.path, res.StatusCode, res.Header.Get("X-Trellis-Reason"), res.Close, body)
		}
		if tt.code == http.StatusGatewayTimeout && time.Since(start) > time.Second {
			t.Errorf("route timeout of 100ms took %v", time.Since(start))
		}
	}
}

// An upstream that answers and closes while the request body is still
// being sent gets the caller a 503, and the caller's connection is closed:
// the unread rest of the body must never be taken for a next request.
func TestFastUpstreamFailsMidRequestBody(t *testing.T) {
	fastOnly(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			_, _ = c.Read(buf) // the head, then hang up mid-body
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	m := newMesh(t, echoApp(), false)
	m.appAddr = ln.Addr().String()
	if err := m.server.Update(m.serverSet(t)); err != nil {
		t.Fatal(err)
	}
	c, br := rawConn(t, m.outAddr)
	mustWrite(t, c, "POST /upload HTTP/1.1\r\nHost: server\r\nContent-Length: 100000000\r\n\r\n")
	go func() {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	res, _ := readResponse(t, br, "POST")
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("X-Trellis-Reason") != reasonReset || !res.Close {
		t.Fatalf("got %d %q close=%v, want 503 upstream_reset and close", res.StatusCode, res.Header.Get("X-Trellis-Reason"), res.Close)
	}
}
