package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/model"
)

func testMTLSRefusals(t *testing.T, m *mesh) {
	details := m.workload("details-v1")

	t.Run("plaintext client", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", details.Inbound, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = io.WriteString(conn, "GET /whoami HTTP/1.1\r\nHost: details\r\n\r\n")
		reply, _ := io.ReadAll(conn)
		if strings.Contains(string(reply), "details-v1") || strings.Contains(string(reply), "200 OK") {
			t.Fatalf("plaintext request reached the app: %q", reply)
		}
	})

	t.Run("client without certificate", func(t *testing.T) {
		if err := tlsGet(details.Inbound, nil, nil); err == nil {
			t.Fatal("request without client certificate succeeded")
		}
	})

	t.Run("client with a certificate from another CA", func(t *testing.T) {
		cert := foreignCert(t, "spiffe://cluster.local/ns/default/sa/productpage")
		if err := tlsGet(details.Inbound, &cert, nil); err == nil {
			t.Fatal("foreign-CA client was accepted")
		}
	})

	t.Run("valid mesh certificate is accepted (control)", func(t *testing.T) {
		// The same check with a genuine mesh certificate must pass, or the
		// refusals above prove nothing.
		cert, roots := meshCert(t, m, "tester", "productpage")
		if err := tlsGet(details.Inbound, &cert, roots); err != nil {
			t.Fatalf("genuine mesh client refused: %v", err)
		}
	})

	t.Run("impostor serving another service is refused by the caller", func(t *testing.T) {
		// An attacker with a join token gets a genuine certificate for
		// service "ratings", then registers a "details" endpoint pointing at a
		// server that presents it. productpage's sidecar must refuse it.
		cert, _ := meshCert(t, m, "imposter-ratings", "ratings")
		lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
			ClientAuth: tls.RequireAnyClientCert, NextProtos: []string{"http/1.1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		reached := make(chan struct{}, 100)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			reached <- struct{}{}
			_, _ = io.WriteString(w, "stolen")
		})}
		go func() { _ = srv.Serve(lis) }()
		defer srv.Close()

		token, err := m.client.CreateToken(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		joined := api.NewClient(m.controlURL, token)
		evil := &model.Workload{ObjectMeta: model.ObjectMeta{Name: "details-evil"}, Spec: model.WorkloadSpec{
			Service: "details", Labels: map[string]string{"version": "v1"},
			Ports: []model.WorkloadPort{{Port: 9080, Protocol: model.ProtocolHTTP, App: "127.0.0.1:1", Inbound: lis.Addr().String()}},
		}}
		if _, err := joined.Register(context.Background(), evil); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = joined.Deregister(context.Background(), "default", "details-evil") }()
		if err := joined.Heartbeat(context.Background(), "default", "details-evil", true); err != nil {
			t.Fatal(err)
		}
		// Round robin now alternates between the real details and the impostor:
		// every answer must come from the real one (Istio's default retry
		// policy retries a refused connection on another endpoint) or be a 503
		// upstream_connect_failure, and the caller's sidecar must have refused
		// the impostor's handshake.
		pp := m.workload("productpage-v1")
		time.Sleep(time.Second) // let the endpoint reach productpage's sidecar
		tlsFailures := func() int {
			_, _, body, err := httpGet("http://" + pp.Admin + "/stats")
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, line := range strings.Split(body, "\n") {
				if v, ok := strings.CutPrefix(line, "cluster.outbound|9080||details.tls_handshake_failures "); ok {
					n, _ = strconv.Atoi(v)
				}
			}
			return n
		}
		before := tlsFailures()
		for range 20 {
			code, hdr, body, err := httpGet("http://" + pp.Upstreams["details"] + "/whoami")
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case code == http.StatusOK && strings.Contains(body, "details-v1"):
			case code == http.StatusServiceUnavailable:
				if r := hdr.Get("X-Trellis-Reason"); r != "upstream_connect_failure" {
					t.Errorf("503 with reason %q, want upstream_connect_failure", r)
				}
			default:
				t.Fatalf("unexpected answer %d %q", code, body)
			}
		}
		refused := tlsFailures() - before
		if len(reached) > 0 {
			t.Fatalf("the impostor received %d requests", len(reached))
		}
		if refused == 0 {
			t.Fatal("the impostor endpoint was never tried; the test proves nothing")
		}
	})
}

// tlsGet does GET / over TLS 1.3 with an optional client cert; roots nil skips server verification.
func tlsGet(addr string, cert *tls.Certificate, roots *x509.CertPool) error {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}, InsecureSkipVerify: roots == nil, RootCAs: roots}
	if roots != nil {
		// Mesh certificates carry a SPIFFE URI, not a DNS name: verify the chain only.
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		}
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := client.Get("https://" + addr + "/whoami")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		return &api.StatusError{Code: resp.StatusCode, Message: resp.Status}
	}
	return err
}

// meshCert registers a workload of service and returns a genuine SVID for it and the mesh roots.
func meshCert(t *testing.T, m *mesh, name, service string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ctx := context.Background()
	token, err := m.client.CreateToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(m.controlURL, token)
	w := &model.Workload{ObjectMeta: model.ObjectMeta{Name: name}, Spec: model.WorkloadSpec{
		Service: service,
		Ports:   []model.WorkloadPort{{Port: 9080, Protocol: model.ProtocolHTTP, App: "127.0.0.1:1", Inbound: "127.0.0.1:2"}},
	}}
	if _, err := c.Register(ctx, w); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Deregister(context.Background(), "default", name) })
	key, err := ca.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/" + service)
	csr, err := ca.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Sign(ctx, api.CertificateRequest{Workload: name, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.ParseChainPEM([]byte(resp.Chain))
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(resp.Bundle)) {
		t.Fatal("bad bundle")
	}
	return cert, roots
}

// foreignCert makes a SPIFFE-shaped leaf signed by a CA the mesh does not trust.
func foreignCert(t *testing.T, spiffe string) tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evil root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(spiffe)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}
