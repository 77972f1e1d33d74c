package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
)

// badLeaf is a certificate signed by the mesh's own root that a sidecar
// must still refuse.
type badLeaf struct {
	name string
	spec func(id string) leafSpec // id: the identity the attacker claims
}

var badLeaves = []badLeaf{
	{"two URI SANs", func(id string) leafSpec {
		return leafSpec{uris: []string{id, "spiffe://cluster.local/ns/default/sa/admin"}}
	}},
	{"CA:true", func(id string) leafSpec { return leafSpec{uris: []string{id}, isCA: true} }},
	{"non-spiffe URI SAN", func(string) leafSpec { return leafSpec{uris: []string{"https://sink.default.svc/ns/default/sa/sink"}} }},
	{"DNS SAN only", func(string) leafSpec { return leafSpec{dns: []string{"sink.default.svc.cluster.local"}} }},
	{"wildcard DNS SAN beside the SPIFFE ID", func(id string) leafSpec {
		return leafSpec{uris: []string{id}, dns: []string{"*.default.svc.cluster.local"}}
	}},
	{"SPIFFE ID of another trust domain", func(id string) leafSpec {
		return leafSpec{uris: []string{strings.Replace(id, "cluster.local", "evil.example", 1)}}
	}},
	{"trust domain ID without a workload path", func(string) leafSpec { return leafSpec{uris: []string{"spiffe://cluster.local"}} }},
	{"expired", func(id string) leafSpec {
		return leafSpec{uris: []string{id}, notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Minute)}
	}},
	{"not yet valid", func(id string) leafSpec {
		return leafSpec{uris: []string{id}, notBefore: time.Now().Add(time.Hour), notAfter: time.Now().Add(2 * time.Hour)}
	}},
}

// testMTLSLeaves: leaves signed by the mesh CA but not valid workload
// SVIDs are refused by a sidecar's inbound port (server side) and, served
// by an impostor endpoint, by the calling sidecar (client side).
func testMTLSLeaves(t *testing.T, am *attackMesh) {
	t.Run("server side", func(t *testing.T) {
		admin := am.workload("sink-v1").Admin
		stat := "listener.inbound|8000.tls_handshake_failures"
		t.Run("valid leaf (control)", func(t *testing.T) {
			c := am.dialInbound(t, am.ca.peer(t, clientID), "http/1.1")
			if r := exchange(c, []byte("GET /mtls/control HTTP/1.1\r\nHost: sink\r\n\r\n"), 5*time.Second, 0); r.status != 200 {
				t.Fatalf("genuine client refused: %v", r)
			}
		})
		for _, bl := range badLeaves {
			t.Run(bl.name, func(t *testing.T) {
				failures := sidecarStat(t, admin, stat)
				started := am.sink.started.Load()
				c, err := am.tryInbound(am.ca.leaf(t, bl.spec(clientID)), "http/1.1")
				if err == nil {
					defer c.Close()
					r := exchange(c, []byte("GET /mtls/bad HTTP/1.1\r\nHost: sink\r\n\r\n"), 2*time.Second, 0)
					t.Fatalf("handshake accepted; request answered %v", r)
				}
				// The sidecar counts the failure after it sent its alert:
				// give the count a moment to arrive.
				n := sidecarStat(t, admin, stat)
				for deadline := time.Now().Add(2 * time.Second); n <= failures && time.Now().Before(deadline); {
					time.Sleep(20 * time.Millisecond)
					n = sidecarStat(t, admin, stat)
				}
				if n <= failures {
					t.Errorf("%s did not grow (%d): the refusal was not the sidecar's verification: %v", stat, n, err)
				}
				if n := am.sink.started.Load() - started; n != 0 {
					t.Errorf("%d requests reached the app", n)
				}
			})
		}
	})
	t.Run("client side", func(t *testing.T) { testImpostorLeaves(t, am) })
	am.legitGet(t, "/after-mtls")
}

// testImpostorLeaves registers an impostor endpoint of service sink whose
// TLS server presents, in turn, each bad leaf claiming the sink's identity.
// The client's sidecar must refuse every handshake with it (the requests
// are then served by the real sink, or answered 503), and the impostor must
// receive nothing. First, as a control, the impostor presents a genuine
// sink certificate and must receive requests: that shows the endpoint is
// in use, so the refusals are the sidecar's verification at work.
func testImpostorLeaves(t *testing.T, am *attackMesh) {
	var current atomic.Pointer[tls.Certificate]
	var reached atomic.Int64
	handshakes := make(chan struct{}, 1000)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert, NextProtos: []string{"http/1.1"},
		SessionTicketsDisabled: true, // every connection shows its certificate again
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			select {
			case handshakes <- struct{}{}:
			default:
			}
			return current.Load(), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		w.Header().Set("X-Served-By", "impostor")
		_, _ = io.WriteString(w, "stolen")
	})}
	srv.SetKeepAlivesEnabled(false) // no pooled connection outlives a certificate
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	genuine := am.ca.peer(t, sinkID)
	current.Store(&genuine)
	deregister := registerEndpoint(t, am.mesh, "sink-impostor", "sink", lis.Addr().String())
	defer func() {
		// Leave the mesh as it was: the impostor endpoint gone from the
		// client's sidecar (until then, requests may still try it).
		deregister()
		eventually(t, 15*time.Second, "the impostor endpoint removed", func() error {
			for range 10 {
				code, hdr, _, err := httpGet("http://" + am.clientOut + "/mtls/impostor-gone")
				if err != nil || code != http.StatusOK || hdr.Get("X-Served-By") != "sink-v1" {
					return fmt.Errorf("%d %v", code, err)
				}
			}
			return nil
		})
	}()

	eventually(t, 15*time.Second, "the impostor endpoint (genuine certificate) receives requests", func() error {
		_, _, _, _ = httpGet("http://" + am.clientOut + "/mtls/impostor-control")
		if reached.Load() == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	admin := am.workload("client-v1").Admin
	stat := "cluster.outbound|8000||sink.tls_handshake_failures"
	for _, bl := range badLeaves {
		t.Run(bl.name, func(t *testing.T) {
			bad := am.ca.leaf(t, bl.spec(sinkID))
			current.Store(&bad)
			for len(handshakes) > 0 {
				<-handshakes
			}
			reached.Store(0)
			failures := sidecarStat(t, admin, stat)
			served := 0
			for range 20 {
				code, hdr, body, err := httpGet("http://" + am.clientOut + "/mtls/impostor")
				switch {
				case err != nil:
					t.Fatalf("request: %v", err)
				case code == http.StatusOK && hdr.Get("X-Served-By") == "sink-v1":
					served++
				case code == http.StatusServiceUnavailable && hdr.Get("X-Trellis-Reason") == "upstream_connect_failure":
				default:
					t.Fatalf("answer %d %q %q", code, hdr.Get("X-Trellis-Reason"), body)
				}
			}
			if n := reached.Load(); n != 0 {
				t.Fatalf("the impostor presenting %q received %d requests", bl.name, n)
			}
			if len(handshakes) == 0 || sidecarStat(t, admin, stat) <= failures {
				t.Fatalf("the impostor was never tried (%d handshakes, %s unchanged): the test proves nothing", len(handshakes), stat)
			}
			t.Logf("%d of 20 served by the real sink, %d handshakes refused", served, sidecarStat(t, admin, stat)-failures)
		})
	}
}

// registerEndpoint registers, with a join token, a healthy workload of
// service whose inbound address is addr, as an attacker holding a token
// could. It returns the deregistration.
func registerEndpoint(t *testing.T, m *mesh, name, service, addr string) func() {
	t.Helper()
	ctx := context.Background()
	token, err := m.client.CreateToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(m.controlURL, token)
	w := &model.Workload{ObjectMeta: model.ObjectMeta{Name: name}, Spec: model.WorkloadSpec{
		Service: service, Labels: map[string]string{"version": "v1"},
		Ports: []model.WorkloadPort{{Port: 8000, Protocol: model.ProtocolHTTP, App: "127.0.0.1:1", Inbound: addr}},
	}}
	if _, err := c.Register(ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := c.Heartbeat(ctx, "default", name, true); err != nil {
		t.Fatal(err)
	}
	return func() { _ = c.Deregister(context.Background(), "default", name) }
}

// tapListener records the first bytes of every connection to it and
// closes it: an endpoint that shows whether a sidecar ever speaks
// plaintext to it.
type tapListener struct {
	ln        net.Listener
	conns     atomic.Int64
	plaintext atomic.Int64 // connections whose first byte was not a TLS handshake record
	firstSeen atomic.Value // string: the first bytes of a plaintext connection
}

func newTap(t *testing.T) *tapListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tap := &tapListener{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 16)
				n, _ := io.ReadAtLeast(c, buf, 1)
				if n == 0 {
					return
				}
				tap.conns.Add(1)
				if buf[0] != 0x16 { // TLS record type handshake
					tap.plaintext.Add(1)
					tap.firstSeen.Store(string(buf[:n]))
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return tap
}
