package tlsutil_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
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

// leafCA signs leaves from arbitrary templates, for the defects a CA that
// follows the SPIFFE spec never issues.
type leafCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newLeafCA(t *testing.T, td string) *leafCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://" + td)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &leafCA{cert: cert, key: key}
}

// leaf signs a leaf for the URIs with edit applied to its template.
func (ca *leafCA) leaf(t *testing.T, uris []string, edit func(*x509.Certificate)) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// staticIdentity is an Identity with a fixed SVID and one bundle.
type staticIdentity struct {
	cert   *tls.Certificate
	bundle *x509bundle.Bundle
}

func (s staticIdentity) Certificate() (*tls.Certificate, error) { return s.cert, nil }
func (s staticIdentity) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return x509bundle.NewSet(s.bundle).GetX509BundleForTrustDomain(td)
}

// TestLeafDefects: a leaf signed by the trusted CA is still refused, by a
// server (client certificate) and by a client (server certificate), when
// it is not a workload SVID of the trust domain.
func TestLeafDefects(t *testing.T) {
	ca := newLeafCA(t, "test.local")
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("test.local"), []*x509.Certificate{ca.cert})
	server := staticIdentity{cert: ca.leaf(t, []string{serverID}, nil), bundle: bundle}
	client := staticIdentity{cert: ca.leaf(t, []string{clientID}, nil), bundle: bundle}
	allowServer := []spiffeid.ID{spiffeid.RequireFromString(serverID)}
	cases := []struct {
		name string
		uris []string
		edit func(*x509.Certificate)
		ok   bool
	}{
		{name: "valid (control)", ok: true},
		{name: "two URI SANs", uris: []string{"spiffe://test.local/ns/default/sa/other"}},
		{name: "CA:true", edit: func(c *x509.Certificate) { c.IsCA, c.KeyUsage = true, c.KeyUsage|x509.KeyUsageCertSign }},
		{name: "KeyCertSign usage", edit: func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }},
		{name: "non-spiffe URI SAN only", edit: func(c *x509.Certificate) { c.URIs = c.URIs[:0]; c.DNSNames = []string{"server.test.local"} }},
		{name: "https URI SAN", edit: func(c *x509.Certificate) { c.URIs[0], _ = url.Parse("https://test.local/ns/default/sa/x") }},
		{name: "wildcard DNS SAN beside the ID", edit: func(c *x509.Certificate) { c.DNSNames = []string{"*.test.local"} }},
		{name: "plain DNS SAN beside the ID", edit: func(c *x509.Certificate) { c.DNSNames = []string{"server.test.local"} }, ok: true},
		{name: "trust domain ID without a path", edit: func(c *x509.Certificate) { c.URIs[0], _ = url.Parse("spiffe://test.local") }},
		{name: "another trust domain", edit: func(c *x509.Certificate) { c.URIs[0], _ = url.Parse("spiffe://evil.local/ns/default/sa/x") }},
		{name: "expired", edit: func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		}},
		{name: "not yet valid", edit: func(c *x509.Certificate) {
			c.NotBefore = time.Now().Add(time.Hour)
			c.NotAfter = time.Now().Add(2 * time.Hour)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// As a client certificate: the ID is the client's.
			bad := staticIdentity{cert: ca.leaf(t, append([]string{clientID}, tc.uris...), tc.edit), bundle: bundle}
			se, _ := handshakeTCP(t, tlsutil.ServerConfig(server, nil), tlsutil.ClientConfig(bad, nil, nil))
			if (se == nil) != tc.ok {
				t.Errorf("server verifying the client: err = %v, want ok=%v", se, tc.ok)
			}
			// As a server certificate: the ID is the allowed server's, so
			// secure naming alone would accept it.
			bad = staticIdentity{cert: ca.leaf(t, append([]string{serverID}, tc.uris...), tc.edit), bundle: bundle}
			_, ce := handshakeTCP(t, tlsutil.ServerConfig(bad, nil), tlsutil.ClientConfig(client, allowServer, nil))
			if (ce == nil) != tc.ok {
				t.Errorf("client verifying the server: err = %v, want ok=%v", ce, tc.ok)
			}
		})
	}
}

// handshakeTCP is handshake over a loopback TCP connection, whose buffering
// lets each side send its alert without waiting for the other to read.
func handshakeTCP(t *testing.T, srv, cli *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		a, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer a.Close()
		s := tls.Server(a, srv)
		err = s.HandshakeContext(ctx)
		if err == nil {
			_, err = s.Write([]byte("x"))
		}
		if err == nil {
			// Wait for the client's verdict on this side's certificate.
			_ = a.SetReadDeadline(time.Now().Add(time.Second))
			_, err = s.Read(make([]byte, 1))
			var ne net.Error
			if errors.Is(err, io.EOF) || (errors.As(err, &ne) && ne.Timeout()) {
				err = nil // the client hung up, or said nothing: no alert
			}
		}
		errc <- err
	}()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(b, cli)
	clientErr = c.HandshakeContext(ctx)
	if clientErr == nil {
		_, clientErr = c.Read(make([]byte, 1))
	}
	_ = b.Close()
	return <-errc, clientErr
}
