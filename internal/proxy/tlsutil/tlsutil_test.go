package tlsutil_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/goleak"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	clientID = "spiffe://test.local/ns/default/sa/client"
	serverID = "spiffe://test.local/ns/default/sa/server"
)

// handshake runs both sides over a pipe and returns their errors.
func handshake(t *testing.T, srv, cli *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(a, srv)
		err := s.HandshakeContext(ctx)
		if err == nil {
			// TLS 1.3 clients learn of a rejected certificate on first read.
			_, err = s.Write([]byte("x"))
		}
		_ = a.Close()
		errc <- err
	}()
	c := tls.Client(b, cli)
	clientErr = c.HandshakeContext(ctx)
	if clientErr == nil {
		_, clientErr = c.Read(make([]byte, 1))
	}
	_ = b.Close()
	return <-errc, clientErr
}

func TestMutualTLS(t *testing.T) {
	ca := proxytest.NewCA(t, "test.local")
	foreign := proxytest.NewCA(t, "test.local")
	srvID := ca.Identity(t, serverID)
	cliID := ca.Identity(t, clientID)
	allowServer := []spiffeid.ID{spiffeid.RequireFromString(serverID)}
	allowOther := []spiffeid.ID{spiffeid.RequireFromString("spiffe://test.local/ns/default/sa/other")}

	t.Run("ok", func(t *testing.T) {
		se, ce := handshake(t, tlsutil.ServerConfig(srvID, []string{"h2"}), tlsutil.ClientConfig(cliID, allowServer, []string{"h2"}))
		if se != nil || ce != nil {
			t.Fatalf("server %v, client %v", se, ce)
		}
	})
	t.Run("secure naming", func(t *testing.T) {
		_, ce := handshake(t, tlsutil.ServerConfig(srvID, nil), tlsutil.ClientConfig(cliID, allowOther, nil))
		if !errors.Is(ce, tlsutil.ErrNotAllowed) {
			t.Fatalf("client error = %v, want ErrNotAllowed", ce)
		}
	})
	t.Run("foreign client", func(t *testing.T) {
		se, _ := handshake(t, tlsutil.ServerConfig(srvID, nil), tlsutil.ClientConfig(foreign.Identity(t, clientID), nil, nil))
		if se == nil {
			t.Fatal("server accepted a client from a foreign CA")
		}
	})
	t.Run("foreign server", func(t *testing.T) {
		_, ce := handshake(t, tlsutil.ServerConfig(foreign.Identity(t, serverID), nil), tlsutil.ClientConfig(cliID, allowServer, nil))
		if ce == nil {
			t.Fatal("client accepted a server from a foreign CA")
		}
	})
	t.Run("no client cert", func(t *testing.T) {
		se, _ := handshake(t, tlsutil.ServerConfig(srvID, nil), proxytest.ClientTLS(nil, ca))
		if se == nil {
			t.Fatal("server accepted a client without certificate")
		}
	})
}
