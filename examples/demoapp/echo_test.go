package demoapp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// startApp runs app name on a loopback listener until the test ends, and
// checks that it then stops cleanly.
func startApp(t *testing.T, name string, cfg config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- apps[name](ctx, ln, cfg, testLogger(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("%s stopped with %v", name, err)
		}
	})
	return ln.Addr().String()
}

func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestGRPCEcho(t *testing.T) {
	addr := startApp(t, "grpc-echo", testConfig("grpc-echo-v1", "grpc-echo", "v1", nil))
	conn := dialGRPC(t, addr)
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	var header, trailer metadata.MD
	if _, err := client.EmptyCall(ctx, &testgrpc.Empty{}, grpc.Header(&header)); err != nil {
		t.Fatalf("EmptyCall: %v", err)
	}
	if got := header.Get(WhoamiWorkloadKey); len(got) != 1 || got[0] != "grpc-echo-v1" {
		t.Errorf("EmptyCall header %s = %v", WhoamiWorkloadKey, got)
	}

	octx := metadata.AppendToOutgoingContext(ctx,
		echoInitialKey, "hi", echoTrailingKey, "\x01\x02", "x-forwarded-client-cert", "URI=spiffe://cluster.local/ns/default/sa/caller")
	resp, err := client.UnaryCall(octx, &testgrpc.SimpleRequest{ResponseSize: 314}, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	if len(resp.GetPayload().GetBody()) != 314 || resp.GetServerId() != "grpc-echo-v1" || resp.GetHostname() != "grpc-echo-v1" {
		t.Errorf("UnaryCall = payload %d bytes, server %q", len(resp.GetPayload().GetBody()), resp.GetServerId())
	}
	if v := header.Get(echoInitialKey); len(v) != 1 || v[0] != "hi" {
		t.Errorf("initial metadata echo = %v", v)
	}
	if v := trailer.Get(echoTrailingKey); len(v) != 1 || v[0] != "\x01\x02" {
		t.Errorf("trailing metadata echo = %q", v)
	}
	if v := header.Get(WhoamiClientCertKey); len(v) != 1 || v[0] != "URI=spiffe://cluster.local/ns/default/sa/caller" {
		t.Errorf("xfcc echo = %v", v)
	}
	if v := header.Get(WhoamiRemoteKey); len(v) != 1 {
		t.Errorf("remote addr = %v", v)
	}

	_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.ResourceExhausted), Message: "asked for"}})
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || st.Message() != "asked for" {
		t.Errorf("UnaryCall with response_status = %v", err)
	}

	params := []*testgrpc.ResponseParameters{{Size: 10}, {Size: 20}, {Size: 30, IntervalUs: 1000}}
	so, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatalf("StreamingOutputCall: %v", err)
	}
	var sizes []int
	for {
		r, err := so.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("StreamingOutputCall recv: %v", err)
		}
		sizes = append(sizes, len(r.GetPayload().GetBody()))
	}
	if len(sizes) != 3 || sizes[0] != 10 || sizes[2] != 30 {
		t.Errorf("StreamingOutputCall sizes = %v", sizes)
	}

	fd, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatalf("FullDuplexCall: %v", err)
	}
	for _, size := range []int32{1, 100, 1000} {
		if err := fd.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: size}}}); err != nil {
			t.Fatalf("FullDuplexCall send: %v", err)
		}
		r, err := fd.Recv()
		if err != nil || int32(len(r.GetPayload().GetBody())) != size {
			t.Fatalf("FullDuplexCall recv = %v, %v; want %d bytes", r, err, size)
		}
	}
	if err := fd.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := fd.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("FullDuplexCall after CloseSend: %v, want EOF", err)
	}

	health := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "grpc.testing.TestService"} {
		hr, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, %v", svc, hr, err)
		}
	}
}

func TestTCPEcho(t *testing.T) {
	addr := startApp(t, "tcp-echo", testConfig("tcp-echo-v1", "tcp-echo", "v1", nil))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil || greeting != "hello from tcp-echo-v1\n" {
		t.Fatalf("greeting = %q, %v", greeting, err)
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
	// Half-close: what was sent last still comes back, then EOF.
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "last words" {
		t.Fatalf("after half-close read %q, %v; want %q then EOF", rest, err, "last words")
	}
}

// TestTCPEchoDrain checks that shutdown closes connections left open past
// the drain window instead of hanging.
func TestTCPEchoDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the drain window")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- runTCPEcho(ctx, ln, testConfig("tcp-echo-v1", "tcp-echo", "", nil), testLogger(t)) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("runTCPEcho = %v", err)
		}
	case <-time.After(drainTimeout + 5*time.Second):
		t.Fatal("runTCPEcho did not stop after the drain window")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after shutdown")
	}
}
