package proxy

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// serveEcho runs a TCP echo server that half-closes after the client does.
func serveEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestTCPThroughMesh(t *testing.T) {
	const (
		in      = "inbound|9000"
		out     = "outbound|9000|echo"
		cluster = "outbound|9000||echo"
	)
	app := serveEcho(t)
	ca := proxytest.NewCA(t, trustDomain)
	client := newProxy(t, ca.Identity(t, clientID))
	server := newProxy(t, ca.Identity(t, serverID))
	inAddr, outAddr := proxytest.FreeAddr(t), proxytest.FreeAddr(t)

	ss := resources.NewSet()
	ss.Listeners[in] = proxytest.Listener(t, in, inAddr, proxytest.TCPProxy(t, in), proxytest.DownstreamTLS(t, "trellis-tcp"))
	ss.Clusters[in] = proxytest.StaticCluster(t, in, app, false)
	if err := server.Update(ss); err != nil {
		t.Fatalf("server Update: %v", err)
	}
	cs := resources.NewSet()
	cs.Listeners[out] = proxytest.Listener(t, out, outAddr, proxytest.TCPProxy(t, cluster), nil)
	cs.Clusters[cluster] = proxytest.EDSCluster(t, cluster, []string{serverID}, false, "trellis-tcp")
	cs.Endpoints[cluster] = proxytest.CLA(t, cluster, []string{inAddr})
	if err := client.Update(cs); err != nil {
		t.Fatalf("client Update: %v", err)
	}

	conn, err := net.Dial("tcp", outAddr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("hello through two sidecars")
	if _, err := conn.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != string(msg) {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
	// Half-close: the echo server sees EOF, finishes, and the close comes
	// back through both sidecars.
	if _, err := conn.Write([]byte(" tail")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	rest, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if string(rest) != " tail" {
		t.Fatalf("after half-close got %q, want %q", rest, " tail")
	}

	// A client with the wrong ALPN-less plaintext is refused by the inbound.
	raw, err := net.Dial("tcp", inAddr)
	if err != nil {
		t.Fatalf("dial inbound: %v", err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = raw.Write([]byte("plaintext\r\n"))
	if n, err := raw.Read(make([]byte, 64)); err == nil && n > 0 {
		// crypto/tls may answer with an alert record; it must not be an echo.
		t.Logf("inbound answered plaintext with %d bytes (TLS alert expected)", n)
	}
}
