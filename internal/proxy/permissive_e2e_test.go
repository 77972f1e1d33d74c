package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// identityApp answers with the identity headers it received.
func identityApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xfcc=%s\ntrellis=%s\nxff=%s\nproto=%s\n",
			strings.Join(r.Header.Values("X-Forwarded-Client-Cert"), "|"), r.Header.Get("X-Trellis-Foo"),
			strings.Join(r.Header.Values("X-Forwarded-For"), "|"), r.Proto)
	})
}

// spoofed are identity headers a client forges.
var spoofed = map[string]string{
	"X-Forwarded-Client-Cert": "By=spiffe://evil/x;URI=" + otherID,
	"X-Trellis-Foo":           "forged",
	"X-Forwarded-For":         "10.9.9.9",
}

// mtlsXFCC is what the app sees from a caller with the client SVID.
const mtlsXFCC = "By=" + serverID + ";URI=" + clientID

// modeMesh is a mesh whose server listener is set by listener (the
// inbound filters of the contract: SANITIZE_SET on TLS, SANITIZE on
// plaintext).
func modeMesh(t *testing.T, legacy bool, mode string) *mesh {
	t.Helper()
	if legacy {
		t.Setenv("TRELLIS_PROXY_LEGACY_HTTP1", "1")
	}
	m := newMesh(t, identityApp(), false)
	m.setServerMode(t, mode)
	return m
}

// setServerMode replaces the server's inbound listener (same name and
// address) with the mTLS mode's.
func (m *mesh) setServerMode(t *testing.T, mode string) {
	t.Helper()
	set := m.serverSet(t)
	rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	tlsHCM, plainHCM := proxytest.HCM(t, "", rc, true), proxytest.HCM(t, "", rc, false)
	switch mode {
	case "PERMISSIVE":
		set.Listeners[inName] = permissiveListener(t, inName, m.inAddr, tlsHCM, plainHCM, "h2", "http/1.1")
	case "DISABLE":
		set.Listeners[inName] = proxytest.Listener(t, inName, m.inAddr, plainHCM, nil)
	case "STRICT":
	case "STRICT+inspector":
		l := set.Listeners[inName]
		l.ListenerFilters = append(l.ListenerFilters, tlsInspector(t))
	}
	if err := m.server.Update(set); err != nil {
		t.Fatalf("server Update (%s): %v", mode, err)
	}
}

// peerClient is a client presenting the client SVID: what another sidecar
// is to the inbound listener. h2: ALPN h2 (the net/http path).
func (m *mesh) peerClient(t *testing.T, h2 bool) *http.Client {
	t.Helper()
	alpn := "http/1.1"
	if h2 {
		alpn = "h2"
	}
	tr := &http.Transport{TLSClientConfig: proxytest.ClientTLS(m.ca.SVID(t, clientID), m.ca, alpn), ForceAttemptHTTP2: h2}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// plainRequest sends one hand-written request with the spoofed headers to
// addr and returns the response.
func plainRequest(t *testing.T, addr, proto string) (*http.Response, string) {
	t.Helper()
	c, br := rawConn(t, addr)
	defer c.Close()
	req := "GET /plain " + proto + "\r\nHost: server\r\n"
	for k, v := range spoofed {
		req += k + ": " + v + "\r\n"
	}
	mustWrite(t, c, req+"\r\n")
	return readResponse(t, br, "GET")
}

func wantIdentity(t *testing.T, what string, res *http.Response, body, xfcc, xff string) {
	t.Helper()
	if res.StatusCode != http.StatusOK || !hasLine(body, "xfcc="+xfcc) || !hasLine(body, "trellis=") || !hasLine(body, "xff="+xff) {
		t.Errorf("%s: %d, app saw\n%s\nwant xfcc=%s trellis= xff=%s", what, res.StatusCode, body, xfcc, xff)
	}
}

func TestPermissiveInbound(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			m := modeMesh(t, legacy, "PERMISSIVE")
			// mTLS through the client sidecar: the outbound listener sets
			// XFF to the app's address, the inbound keeps it and sets XFCC.
			res, body := get(t, httpClient(t), m.url("/mesh"), spoofed)
			wantIdentity(t, "through the client sidecar", res, body, mtlsXFCC, "127.0.0.1")
			// A verified peer sidecar's XFF is kept, its XFCC replaced.
			for _, h2 := range []bool{false, true} {
				res, body = get(t, m.peerClient(t, h2), "https://"+m.inAddr+"/peer", spoofed)
				wantIdentity(t, fmt.Sprintf("mTLS peer (h2=%v)", h2), res, body, mtlsXFCC, spoofed["X-Forwarded-For"])
			}
			// Plaintext: served, no identity, XFF is the connection's.
			for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
				res, body = plainRequest(t, m.inAddr, proto)
				wantIdentity(t, "plaintext "+proto, res, body, "", "127.0.0.1")
			}
			res, body = get(t, h2cClient(t), "http://"+m.inAddr+"/h2c", spoofed)
			wantIdentity(t, "plaintext h2c", res, body, "", "127.0.0.1")
			if res.ProtoMajor != 2 {
				t.Errorf("h2c: the sidecar answered %s", res.Proto)
			}
		})
	}
}

func TestDisableInbound(t *testing.T) {
	m := modeMesh(t, false, "DISABLE")
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		res, body := plainRequest(t, m.inAddr, proto)
		wantIdentity(t, "plaintext "+proto, res, body, "", "127.0.0.1")
	}
	// mTLS is not spoken: a peer's handshake fails, and the client
	// sidecar (whose cluster still wants mTLS) gets nothing from the app.
	if res, err := m.peerClient(t, false).Get("https://" + m.inAddr + "/peer"); err == nil {
		res.Body.Close()
		t.Fatalf("mTLS to a DISABLE listener: %d, want a failed handshake", res.StatusCode)
	}
	res, body := get(t, httpClient(t), m.url("/mesh"), nil)
	if res.StatusCode == http.StatusOK {
		t.Fatalf("mTLS client sidecar to a DISABLE listener: %d %q", res.StatusCode, body)
	}
}

func TestStrictRefusesPlaintext(t *testing.T) {
	for _, mode := range []string{"STRICT", "STRICT+inspector"} {
		t.Run(mode, func(t *testing.T) {
			m := modeMesh(t, false, mode)
			c, br := rawConn(t, m.inAddr)
			mustWrite(t, c, "GET /plain HTTP/1.1\r\nHost: server\r\n\r\n")
			if line, err := br.ReadString('\n'); err == nil && strings.Contains(line, "200") {
				t.Fatalf("plaintext served: %q", line)
			}
			res, body := get(t, httpClient(t), m.url("/mesh"), spoofed)
			wantIdentity(t, "mTLS", res, body, mtlsXFCC, "127.0.0.1")
		})
	}
}

// A client that sends nothing is closed at the listener filter timeout.
func TestPermissiveSilentClientClosed(t *testing.T) {
	m := newMesh(t, identityApp(), false)
	set := m.serverSet(t)
	rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	set.Listeners[inName] = withSniffTimeout(permissiveListener(t, inName, m.inAddr,
		proxytest.HCM(t, "", rc, true), proxytest.HCM(t, "", rc, false), "h2", "http/1.1"), 200*time.Millisecond)
	if err := m.server.Update(set); err != nil {
		t.Fatal(err)
	}
	c, _ := rawConn(t, m.inAddr)
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("silent client got bytes")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("silent client closed after %v", d)
	}
}

// The gradual rollout: PERMISSIVE then STRICT keeps the socket and the
// mTLS connections; a plaintext connection's next request is refused and
// new plaintext connections are closed.
func TestPermissiveToStrict(t *testing.T) {
	fastOnly(t)
	m := modeMesh(t, false, "PERMISSIVE")
	bound := m.server.bound[inName]
	plain, pbr := rawConn(t, m.inAddr)
	mustWrite(t, plain, "GET /1 HTTP/1.1\r\nHost: server\r\n\r\n")
	if res, body := readResponse(t, pbr, "GET"); res.StatusCode != http.StatusOK {
		t.Fatalf("plaintext before: %d %q", res.StatusCode, body)
	}
	peer := m.peerClient(t, false)
	if res, body := get(t, peer, "https://"+m.inAddr+"/1", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("mTLS before: %d %q", res.StatusCode, body)
	}
	m.setServerMode(t, "STRICT")
	if m.server.bound[inName] != bound {
		t.Fatal("the mode change replaced the listener's socket")
	}
	mustWrite(t, plain, "GET /2 HTTP/1.1\r\nHost: server\r\n\r\n")
	res, _ := readResponse(t, pbr, "GET")
	if res.StatusCode != http.StatusServiceUnavailable || !res.Close || res.Header.Get("X-Trellis-Reason") != reasonListenerDraining {
		t.Fatalf("plaintext after STRICT: %d close=%v %q", res.StatusCode, res.Close, res.Header.Get("X-Trellis-Reason"))
	}
	res, body := get(t, peer, "https://"+m.inAddr+"/2", nil)
	if res.StatusCode != http.StatusOK || !hasLine(body, "xfcc="+mtlsXFCC) {
		t.Fatalf("mTLS after STRICT: %d %q", res.StatusCode, body)
	}
	c, br := rawConn(t, m.inAddr)
	mustWrite(t, c, "GET /3 HTTP/1.1\r\nHost: server\r\n\r\n")
	if line, err := br.ReadString('\n'); err == nil {
		t.Fatalf("new plaintext connection served after STRICT: %q", line)
	}
}

func TestTCPPermissive(t *testing.T) {
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
	ss.Listeners[in] = permissiveListener(t, in, inAddr, proxytest.TCPProxy(t, in), proxytest.TCPProxy(t, in), "trellis-tcp")
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
	echo := func(what string, c net.Conn) {
		t.Helper()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := "hello " + what + "\n"
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatalf("%s: write: %v", what, err)
		}
		_ = c.(interface{ CloseWrite() error }).CloseWrite()
		got, err := io.ReadAll(bufio.NewReader(c))
		if err != nil || string(got) != msg {
			t.Fatalf("%s: echo %q, %v; want %q", what, got, err, msg)
		}
	}
	// mTLS through the client sidecar.
	c, err := net.Dial("tcp", outAddr)
	if err != nil {
		t.Fatal(err)
	}
	echo("mtls", c)
	// Plaintext straight to the inbound listener.
	c, err = net.Dial("tcp", inAddr)
	if err != nil {
		t.Fatal(err)
	}
	echo("plaintext", c)
	// A TLS client without a mesh certificate is refused.
	tc, err := tls.Dial("tcp", inAddr, proxytest.ClientTLS(nil, ca, "trellis-tcp"))
	if err == nil {
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(tc, "x")
		if _, err = tc.Read(make([]byte, 1)); err == nil {
			t.Fatal("TLS client without a certificate got an echo")
		}
		tc.Close()
	}
}
