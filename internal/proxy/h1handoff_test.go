package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

// Sidecars resume TLS sessions: after one exchange the client sidecar holds
// a ticket for the server, and a new connection resumes (the handshake still
// verifies the peer: VerifyConnection runs on resumed sessions, and the
// XFCC identity is still the caller's).
func TestTLSSessionResumption(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	c := httpClient(t)
	get(t, c, m.url("/first"), nil)
	m.client.cfg.Load().clusters[outCluster].up.closeIdle()
	res, body := get(t, c, m.url("/second"), nil)
	if res.StatusCode != 200 || !strings.Contains(body, "URI="+clientID) {
		t.Fatalf("after reconnect: %d %q", res.StatusCode, body)
	}
	cl := m.client.cfg.Load().clusters[outCluster]
	conn, err := dialUpstream(context.Background(), cl, m.client.id, m.inAddr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		t.Fatalf("upstream conn %T is not TLS", conn)
	}
	if cs := tc.ConnectionState(); !cs.DidResume || len(cs.PeerCertificates) == 0 {
		t.Fatalf("DidResume=%v peer certs=%d, want a resumed, verified session", cs.DidResume, len(cs.PeerCertificates))
	}
}

// A request the fast path hands to net/http on an mTLS connection (here
// HTTP/1.0) keeps its caller identity: the slow path still sanitizes and
// sets XFCC from the handed-off connection's TLS state.
func TestInboundHandoffKeepsPeerIdentity(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	cfg := proxytest.ClientTLS(m.ca.SVID(t, clientID), m.ca, "http/1.1")
	c, err := tls.Dial("tcp", m.inAddr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	mustWrite(t, c, "GET /old HTTP/1.0\r\nX-Forwarded-Client-Cert: By=evil\r\nX-Trellis-Evil: 1\r\n\r\n")
	res, body := readResponse(t, bufio.NewReader(c), "GET")
	want := "path=/old\nxfcc=By=" + serverID + ";URI=" + clientID + "\ntrellis=\n"
	if res.StatusCode != 200 || !strings.HasPrefix(body, want) {
		t.Fatalf("got %d %q, want prefix %q", res.StatusCode, body, want)
	}
}

// An HTTP/1.1 request routed to an HTTP/2 cluster is handed, with its
// connection, to the net/http path: h2 between the sidecars (inbound ALPN h2
// handoff), h2c to the app, and the caller identity still set.
func TestHTTP1ToHTTP2ClusterHandsOff(t *testing.T) {
	m := newMesh(t, echoApp(), true)
	c := httpClient(t)
	for range 2 {
		res, body := get(t, c, m.url("/h2"), nil)
		if res.StatusCode != 200 || res.Header.Get("X-App-Proto") != "HTTP/2.0" || !strings.Contains(body, "URI="+clientID) {
			t.Fatalf("got %d proto %q %q", res.StatusCode, res.Header.Get("X-App-Proto"), body)
		}
	}
}
