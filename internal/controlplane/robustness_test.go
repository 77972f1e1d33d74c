package controlplane

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/xds/client"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// robustCP is a control plane running in the test, with a join token.
type robustCP struct {
	cp    *ControlPlane
	admin string // base URL
	token string
}

func startRobustCP(t *testing.T) *robustCP {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cp, err := New(ctx, Config{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane stopped with %v", err)
		}
	})
	token, err := cp.CreateToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &robustCP{cp: cp, admin: cp.AdminURL(), token: token}
}

// call sends one request to the admin API and returns its status and body.
func (r *robustCP) call(t *testing.T, method, path, token string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.admin+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(data)
}

func robustWorkload(name, service string) *model.Workload {
	return &model.Workload{ObjectMeta: model.ObjectMeta{Name: name}, Spec: model.WorkloadSpec{
		Service: service, Ports: []model.WorkloadPort{{Port: 8080, Protocol: model.ProtocolHTTP, App: "127.0.0.1:1", Inbound: "127.0.0.1:2"}},
	}}
}

func csrPEM(t *testing.T, key any, uris ...string) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, s := range uris {
		u, _ := url.Parse(s)
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func certRequest(workload, csr string) io.Reader {
	data, _ := json.Marshal(api.CertificateRequest{Workload: workload, CSR: csr})
	return bytes.NewReader(data)
}

// TestRobustAdminAndCA sends the admin API's sidecar and operator routes
// what an attacker on the loopback or holding a join token could: each
// gets an error status and nothing else, and the control plane serves
// normally afterwards.
func TestRobustAdminAndCA(t *testing.T) {
	r := startRobustCP(t)
	ctx := context.Background()
	joined := api.NewClient(r.admin, r.token)
	if _, err := joined.Register(ctx, robustWorkload("victim", "payments")); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	goodCSR := csrPEM(t, key, "spiffe://cluster.local/ns/default/sa/payments")
	badSig := strings.Replace(goodCSR, goodCSR[len(goodCSR)/2:len(goodCSR)/2+4], "AAAA", 1)
	workloadJSON, _ := json.Marshal(robustWorkload("w1", "svc"))
	huge := strings.Repeat("a", 10<<20)

	cases := []struct {
		name         string
		method, path string
		token        string
		body         string
		want         int
	}{
		// Join-token routes without a valid token.
		{"register without token", "POST", "/v1/workloads", "", string(workloadJSON), 401},
		{"register with a wrong token", "POST", "/v1/workloads", "not-a-token", string(workloadJSON), 401},
		{"register with a 10 KiB token", "POST", "/v1/workloads", strings.Repeat("t", 10<<10), string(workloadJSON), 401},
		{"certificate without token", "POST", "/v1/certificates", "", `{"workload":"victim","csr":""}`, 401},
		{"certificate with a wrong token", "POST", "/v1/certificates", r.token + "x", `{"workload":"victim","csr":""}`, 401},
		{"heartbeat without token", "POST", "/v1/workloads/default/victim/heartbeat", "", `{"ready":true}`, 401},
		{"deregister with a wrong token", "DELETE", "/v1/workloads/default/victim", "x", "", 401},
		// Malformed bodies with a valid token.
		{"register: not JSON", "POST", "/v1/workloads", r.token, "\x00\x01garbage", 400},
		{"register: unknown field", "POST", "/v1/workloads", r.token, `{"metadata":{"name":"x"},"spec":{"service":"s"},"evil":1}`, 400},
		{"register: invalid name", "POST", "/v1/workloads", r.token, `{"metadata":{"name":"../../etc"},"spec":{"service":"s","ports":[{"port":1,"app":"127.0.0.1:1","inbound":"127.0.0.1:2"}]}}`, 400},
		{"register: 10 MiB body", "POST", "/v1/workloads", r.token, `{"metadata":{"name":"` + huge + `"}}`, 400},
		{"heartbeat: 10 MiB body", "POST", "/v1/workloads/default/victim/heartbeat", r.token, `{"ready":"` + huge + `"}`, 400},
		{"heartbeat: unknown workload", "POST", "/v1/workloads/default/nobody/heartbeat", r.token, `{"ready":true}`, 404},
		{"certificate: not JSON", "POST", "/v1/certificates", r.token, "{{{{", 400},
		{"certificate: 10 MiB body", "POST", "/v1/certificates", r.token, `{"workload":"victim","csr":"` + huge + `"}`, 400},
		{"certificate: CSR is not PEM", "POST", "/v1/certificates", r.token, `{"workload":"victim","csr":"hello"}`, 400},
		{"certificate: PEM of another type", "POST", "/v1/certificates", r.token,
			mustJSON(api.CertificateRequest{Workload: "victim", CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}))}), 400},
		{"certificate: CSR of garbage DER", "POST", "/v1/certificates", r.token,
			mustJSON(api.CertificateRequest{Workload: "victim", CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("\x30\x03\x02\x01\x01")}))}), 400},
		{"certificate: CSR with a bad signature", "POST", "/v1/certificates", r.token, mustJSON(api.CertificateRequest{Workload: "victim", CSR: badSig}), 400},
		{"certificate: RSA CSR", "POST", "/v1/certificates", r.token, mustJSON(api.CertificateRequest{Workload: "victim", CSR: csrPEM(t, rsaKey)}), 400},
		{"certificate: unregistered workload", "POST", "/v1/certificates", r.token, mustJSON(api.CertificateRequest{Workload: "nobody", CSR: goodCSR}), 404},
		// Operator routes (loopback trust here): malformed input.
		{"apply: garbage", "POST", "/v1/apply", "", "\x00\xff{[: -", 400},
		{"apply: unknown kind", "POST", "/v1/apply", "", "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n", 400},
		{"apply: deep nesting", "POST", "/v1/apply", "", strings.Repeat("[", 100000) + strings.Repeat("]", 100000), 400},
		{"apply: 10 MiB body", "POST", "/v1/apply", "", "# " + huge, 413},
		{"mesh: not JSON", "PUT", "/v1/mesh", "", "\x00", 400},
		{"config: unknown kind", "GET", "/v1/config/secrets", "", "", 404},
		{"config: path traversal", "GET", "/v1/config/virtualservice/..%2f..%2f/etc", "", "", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := r.call(t, tc.method, tc.path, tc.token, strings.NewReader(tc.body))
			if code != tc.want {
				t.Fatalf("%d %s, want %d", code, strings.TrimSpace(body), tc.want)
			}
			if strings.Contains(body, "-----BEGIN") {
				t.Fatalf("an error answer carries PEM: %s", body)
			}
		})
	}

	t.Run("a CSR asking for another identity gets the registered one", func(t *testing.T) {
		csr := csrPEM(t, key, "spiffe://cluster.local/ns/kube-system/sa/admin", "spiffe://other.domain/ns/x/sa/y")
		resp, err := joined.Sign(ctx, api.CertificateRequest{Workload: "victim", CSR: csr})
		if err != nil {
			t.Fatal(err)
		}
		chain, err := ca.ParseChainPEM([]byte(resp.Chain))
		if err != nil {
			t.Fatal(err)
		}
		if len(chain[0].URIs) != 1 || chain[0].URIs[0].String() != "spiffe://cluster.local/ns/default/sa/payments" {
			t.Fatalf("issued URIs %v, want the registration's identity only", chain[0].URIs)
		}
		if len(chain[0].DNSNames) != 0 || chain[0].IsCA {
			t.Fatalf("issued leaf has DNS names %v, CA %v", chain[0].DNSNames, chain[0].IsCA)
		}
	})

	t.Run("still serving", func(t *testing.T) { checkServing(t, r) })
}

func mustJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(data)
}

// TestRobustXDS opens ADS streams that must be refused, or get nothing,
// then checks a genuine node still syncs.
func TestRobustXDS(t *testing.T) {
	r := startRobustCP(t)
	conn, err := grpc.NewClient(r.cp.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	hugeMeta, _ := structpb.NewStruct(map[string]any{"blob": strings.Repeat("x", 5<<20)})
	cases := []struct {
		name string
		auth []string // authorization metadata values
		req  *discoveryv3.DiscoveryRequest
		want codes.Code // codes.OK: the stream stays open and gets nothing
	}{
		{"no token", nil, adsRequest("victim", nil), codes.Unauthenticated},
		{"wrong token", []string{"Bearer nope"}, adsRequest("victim", nil), codes.Unauthenticated},
		{"not a bearer token", []string{"Basic " + r.token}, adsRequest("victim", nil), codes.Unauthenticated},
		{"two authorization headers", []string{"Bearer " + r.token, "Bearer x"}, adsRequest("victim", nil), codes.Unauthenticated},
		{"5 MiB node metadata", []string{"Bearer " + r.token}, adsRequest("victim", hugeMeta), codes.ResourceExhausted},
		{"5 MiB node id", []string{"Bearer " + r.token}, adsRequest(strings.Repeat("n", 5<<20), nil), codes.ResourceExhausted},
		{"unknown node", []string{"Bearer " + r.token}, adsRequest("no-such-workload", nil), codes.OK},
		{"garbage node id", []string{"Bearer " + r.token}, adsRequest("\x00../\u2603\n", nil), codes.OK},
		{"unknown type URL", []string{"Bearer " + r.token}, &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "no-such-workload"}, TypeUrl: "type.googleapis.com/evil.Type"}, codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			md := metadata.MD{}
			for _, v := range tc.auth {
				md.Append("authorization", v)
			}
			stream, err := ads.StreamAggregatedResources(metadata.NewOutgoingContext(ctx, md))
			if err != nil {
				t.Fatal(err)
			}
			_ = stream.Send(tc.req)
			resp, err := stream.Recv()
			got := status.Code(err)
			if tc.want == codes.OK {
				// Nothing for a node that is not a registered workload:
				// the stream waits until the client gives up.
				if resp != nil || got != codes.DeadlineExceeded {
					t.Fatalf("got %v, %v; want nothing until the deadline", resp, err)
				}
				return
			}
			if got != tc.want || resp != nil {
				t.Fatalf("got %v, %v; want %s", resp, err, tc.want)
			}
		})
	}
	t.Run("unary call", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+r.token))
		err := conn.Invoke(ctx, "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources", &discoveryv3.DiscoveryRequest{}, &discoveryv3.DiscoveryResponse{})
		if status.Code(err) == codes.OK {
			t.Fatal("a unary call was answered")
		}
	})
	t.Run("still serving", func(t *testing.T) { checkServing(t, r) })
}

func adsRequest(node string, meta *structpb.Struct) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{
		Node:    &corev3.Node{Id: node, Cluster: "svc", Metadata: meta},
		TypeUrl: resources.ClusterType,
	}
}

// checkServing: status answers, and a new workload registers, gets a
// certificate and its xDS client syncs.
func checkServing(t *testing.T, r *robustCP) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if code, body := r.call(t, "GET", "/v1/status", "", nil); code != http.StatusOK {
		t.Fatalf("status: %d %s", code, body)
	}
	c := api.NewClient(r.admin, r.token)
	if _, err := c.Register(ctx, robustWorkload("newcomer", "fresh")); err != nil {
		t.Fatalf("register after the attacks: %v", err)
	}
	key, _ := ca.NewKey()
	csr, _ := ca.NewCSR(key, spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/fresh"))
	if _, err := c.Sign(ctx, api.CertificateRequest{Workload: "newcomer", CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))}); err != nil {
		t.Fatalf("certificate after the attacks: %v", err)
	}
	xc := client.New(client.Options{Addr: r.cp.XDSAddr(), NodeID: "newcomer", Cluster: "fresh", Token: r.token, Logger: quietLogger()})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- xc.Run(runCtx, discardHandler{}) }()
	defer func() { stop(); <-done }()
	select {
	case <-xc.Synced():
	case <-ctx.Done():
		t.Fatalf("a new node did not sync after the attacks: %+v", xc.State())
	}
}

type discardHandler struct{}

func (discardHandler) Update(*resources.Set) error { return nil }
