package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
)

// testControlPlanePorts sends garbage to the real control plane's xDS
// (gRPC) and admin (HTTP) ports: each connection gets an error or is
// closed, and afterwards the control plane still answers, the mesh stays
// SYNCED and a new sidecar joins. (The message-level attacks, with tokens,
// CSRs and ADS streams, are internal/controlplane TestRobust*.)
func testControlPlanePorts(t *testing.T, am *attackMesh) {
	random := make([]byte, 64<<10)
	_, _ = rand.Read(random)
	xds := []struct {
		name    string
		payload []byte
		tls     bool
	}{
		{"random bytes", random, false},
		{"an HTTP/1.1 request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"HTTP/2 preface then garbage frames", append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), random[:4096]...), false},
		{"a TLS ClientHello", nil, true},
	}
	for _, tc := range xds {
		t.Run("xds: "+tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", am.xdsAddr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.tls {
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
				_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tc.Handshake(); err == nil {
					t.Fatal("the xDS port completed a TLS handshake")
				}
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write(tc.payload)
			reply, err := io.ReadAll(io.LimitReader(c, 1<<20))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after 5s (read %d bytes)", len(reply))
			}
			if len(reply) > 4<<10 {
				t.Fatalf("the xDS port answered %d bytes", len(reply))
			}
		})
	}
	admin := []struct {
		name string
		req  string
		want int
	}{
		{"random bytes", string(random[:1024]) + "\r\n\r\n", 400},
		{"1 MiB header", "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n", 431},
		{"apply with a 20 MiB body", "POST /v1/apply HTTP/1.1\r\nHost: x\r\nContent-Length: 20971520\r\n\r\n" + strings.Repeat("# ", 10<<20), 413},
		{"register with garbage and no token", "POST /v1/workloads HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\x00\x01\x02\x03", 401},
		{"certificate with a forged token", "POST /v1/certificates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + strings.Repeat("A", 43) + "\r\nContent-Length: 2\r\n\r\n{}", 401},
		{"smuggling: CL and TE", "POST /v1/apply HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	}
	for _, tc := range admin {
		t.Run("admin: "+tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", am.adminAddr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := exchange(c, []byte(tc.req), 10*time.Second, 0)
			if r.status != tc.want {
				t.Fatalf("answer %v, want %d", r, tc.want)
			}
			if strings.Contains(r.body, "-----BEGIN") {
				t.Fatalf("the answer carries PEM: %q", r.body)
			}
		})
	}
	t.Run("still serving: status, sync and a new sidecar", func(t *testing.T) {
		am.waitMeshReady(t)
		am.legitGet(t, "/after-control-plane-attacks")
		token, err := am.client.CreateToken(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(api.EnvJoinToken, token)
		adminAddr := freeAddr(t)
		late := start(t, "late-proxy", "proxy", "--control", am.controlURL, "--name", "late-v1", "--service", "late",
			"--port", "9090", "--protocol", "http", "--app", freeAddr(t), "--inbound", freeAddr(t), "--admin-addr", adminAddr)
		eventually(t, 30*time.Second, "a new sidecar joins", func() error {
			code, _, body, err := httpGet("http://" + adminAddr + "/ready")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("/ready: %d %v %s", code, err, body)
			}
			return nil
		})
		if !late.stop(10 * time.Second) {
			t.Error("the new sidecar did not stop")
		}
	})
}
