package proxy

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// grpcApp serves the test service (h2c); with failWith set every call fails
// with that code before reaching the service.
func grpcApp(t *testing.T, failWith codes.Code, calls *atomic.Int64) *app {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls.Add(1)
		if failWith != codes.OK {
			return nil, status.Error(failWith, "failing on purpose")
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
	return &app{name: failWith.String(), addr: ln.Addr().String()}
}

func grpcClient(t *testing.T, addr string) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// TestGRPCRetryOnUnavailable: a call answered UNAVAILABLE (a trailers-only
// response) is retried on the other endpoint under retry_on "unavailable";
// other codes are not.
func TestGRPCRetryOnUnavailable(t *testing.T) {
	var badCalls, goodCalls atomic.Int64
	bad := grpcApp(t, codes.Unavailable, &badCalls)
	good := grpcApp(t, codes.OK, &goodCalls)
	m := newRMesh(t, false, true, []*app{bad, good}, nil,
		rroute("/", 5*time.Second, retryPolicy("unavailable,cancelled", 1, previousHosts(t, 5))))
	client := grpcClient(t, m.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if badCalls.Load() == 0 || badCalls.Load() > 10 || goodCalls.Load() != 10 {
		t.Errorf("bad endpoint %d calls, good %d; want 1..10 and 10", badCalls.Load(), goodCalls.Load())
	}
	// PermissionDenied is not a retry condition: every call reaches the
	// good endpoint exactly once (directly, or as the retry of the bad
	// endpoint's UNAVAILABLE) and its answer is final.
	badCalls.Store(0)
	goodCalls.Store(0)
	for range 4 {
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{
			ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.PermissionDenied)},
		})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("status %v, want PermissionDenied", err)
		}
	}
	if goodCalls.Load() != 4 || badCalls.Load() > 4 {
		t.Errorf("good endpoint %d calls, bad %d; want 4 and at most 4", goodCalls.Load(), badCalls.Load())
	}
}

// TestGRPCMaxRequests: on the HTTP/2 path max_requests bounds concurrent
// streams; the excess fails with UNAVAILABLE (503 upstream_overflow).
func TestGRPCMaxRequests(t *testing.T) {
	var calls atomic.Int64
	a := grpcApp(t, codes.OK, &calls)
	m := newRMesh(t, false, true, []*app{a}, func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxRequests: wrapperspb.UInt32(1),
		}}}
	}, rroute("/", 5*time.Second, nil))
	client := grpcClient(t, m.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := client.FullDuplexCall(ctx) // holds the only request slot
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("second concurrent call: %v, want Unavailable", err)
	}
	if got := m.stat("upstream_overflow"); got != "1" {
		t.Errorf("upstream_overflow = %s, want 1", got)
	}
	_ = stream.CloseSend()
	if _, err := stream.Recv(); err == nil {
		t.Error("stream did not end")
	}
}

// TestGRPCRouteTimeout: a gRPC call that outlives the route timeout ends
// with DEADLINE_EXCEEDED (not the UNAVAILABLE a bare HTTP 504 maps to), and
// the upstream call is cancelled.
func TestGRPCRouteTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cancelled := make(chan struct{}, 1)
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, _ any, _ *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
		select {
		case <-time.After(5 * time.Second):
			return nil, status.Error(codes.Internal, "not cancelled")
		case <-ctx.Done():
			cancelled <- struct{}{}
			return nil, ctx.Err()
		}
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
	m := newRMesh(t, false, true, []*app{{name: "slow", addr: ln.Addr().String()}}, nil,
		rroute("/", 200*time.Millisecond, nil))
	client := grpcClient(t, m.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call: %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("answered after %v, want about the 200ms route timeout", el)
	}
	select {
	case <-cancelled:
	case <-time.After(3 * time.Second):
		t.Error("the upstream call was not cancelled")
	}
}
