package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// serveGRPC runs the test service on loopback; onCall sees each call's
// incoming metadata.
func serveGRPC(t *testing.T, onCall func(md metadata.MD)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if onCall != nil {
			md, _ := metadata.FromIncomingContext(ctx)
			onCall(md)
		}
		return h(ctx, req)
	}))
	testgrpc.RegisterTestServiceServer(gs, testService{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(ln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return ln.Addr().String()
}

// grpcFeatureMesh is grpcMesh with the client sidecar's HTTP filters and
// route configuration changed by mutate.
func grpcFeatureMesh(t *testing.T, filters []*hcmv3.HttpFilter, mutate func(*resources.Set)) (testgrpc.TestServiceClient, *mesh) {
	t.Helper()
	ca := proxytest.NewCA(t, trustDomain)
	m := &mesh{ca: ca, http2: true, allowed: []string{serverID}, appAddr: serveGRPC(t, nil)}
	m.client = newProxy(t, ca.Identity(t, clientID))
	m.server = newProxy(t, ca.Identity(t, serverID))
	m.inAddr = proxytest.FreeAddr(t)
	m.outAddr = proxytest.FreeAddr(t)
	if err := m.server.Update(m.serverSet(t)); err != nil {
		t.Fatalf("server Update: %v", err)
	}
	m.setClient(t, filters, mutate)
	cc, err := grpc.NewClient("passthrough:///"+m.outAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc client: %v", err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testgrpc.NewTestServiceClient(cc), m
}

// unaryRoute routes the test service's UnaryCall (by its gRPC path).
func unaryRoute() *routev3.Route {
	return proxytest.PrefixRoute("/grpc.testing.TestService/UnaryCall", outCluster, 0)
}

func TestGRPCFaultAndRateLimit(t *testing.T) {
	filters := []*hcmv3.HttpFilter{httpFilterEntry(t, faultName, faultEmpty()), httpFilterEntry(t, rlName, rateLimitFilterHCM())}
	client, m := grpcFeatureMesh(t, filters, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name   string
		cfg    func(r *routev3.Route)
		code   codes.Code
		reason string
	}{
		{"http status maps to a gRPC code", func(r *routev3.Route) {
			r.TypedPerFilterConfig = perFilter(t, faultName, faultConfig(0, 0, 503, -1, 100))
		}, codes.Unavailable, reasonFaultAbort},
		{"forbidden maps to permission denied", func(r *routev3.Route) {
			r.TypedPerFilterConfig = perFilter(t, faultName, faultConfig(0, 0, 403, -1, 100))
		}, codes.PermissionDenied, reasonFaultAbort},
		{"grpc status", func(r *routev3.Route) {
			r.TypedPerFilterConfig = perFilter(t, faultName, faultConfig(0, 0, 0, int(codes.ResourceExhausted), 100))
		}, codes.ResourceExhausted, reasonFaultAbort},
		{"delay then ok", func(r *routev3.Route) {
			r.TypedPerFilterConfig = perFilter(t, faultName, faultConfig(200*time.Millisecond, 100, 0, -1, 0))
		}, codes.OK, ""},
		{"rate limited", func(r *routev3.Route) {
			r.TypedPerFilterConfig = perFilter(t, rlName, rateLimit(1, 1, time.Hour))
		}, codes.Unavailable, reasonRateLimited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.setClient(t, filters, func(set *resources.Set) {
				r := unaryRoute()
				tc.cfg(r)
				prependRoutes(set, r)
			})
			var hdr metadata.MD
			start := time.Now()
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&hdr))
			if tc.reason == reasonRateLimited {
				// The first call takes the only token.
				if err != nil {
					t.Fatalf("first call: %v", err)
				}
				_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&hdr))
			}
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code %v (%v), want %v", got, err, tc.code)
			}
			if tc.reason != "" {
				if got := hdr.Get(headerReason); len(got) != 1 || got[0] != tc.reason {
					t.Errorf("%s = %v, want %s", headerReason, got, tc.reason)
				}
			}
			if tc.code == codes.OK && time.Since(start) < 200*time.Millisecond {
				t.Errorf("delayed call took %s", time.Since(start))
			}
		})
	}
}

func TestGRPCMirrorAndDirectResponse(t *testing.T) {
	calls := make(chan metadata.MD, 4)
	shadow := serveGRPC(t, func(md metadata.MD) { calls <- md })
	client, _ := grpcFeatureMesh(t, nil, func(set *resources.Set) {
		set.Clusters["shadow"] = proxytest.StaticCluster(t, "shadow", shadow, true)
		r := unaryRoute()
		r.GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}}
		prependRoutes(set, r, &routev3.Route{Match: prefixMatch("/grpc.testing.TestService/EmptyCall"),
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10})
	if err != nil || len(res.GetPayload().GetBody()) != 10 {
		t.Fatalf("mirrored call: %v", err)
	}
	select {
	case md := <-calls:
		if got := md.Get(":authority"); len(got) != 1 || got[0] != "127.0.0.1-shadow:"+portOf(t, got) {
			t.Errorf("mirror :authority = %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the mirror got no call")
	}
	// A direct response to a gRPC request is a trailers-only gRPC status.
	_, err = client.EmptyCall(ctx, &testgrpc.Empty{})
	if got := status.Code(err); got != codes.Unimplemented {
		t.Errorf("direct 404 to gRPC: %v, want Unimplemented", err)
	}
}

func portOf(t *testing.T, authority []string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(authority[0])
	if err != nil {
		return ""
	}
	return port
}
