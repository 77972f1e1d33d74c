package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

// testService is a small grpc.testing.TestService: unary with a requested
// status and a trailer, server streaming, and full duplex echo.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (testService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-app-trailer", "yes"))
	if s := req.GetResponseStatus(); s != nil && s.GetCode() != 0 {
		return nil, status.Error(codes.Code(s.GetCode()), s.GetMessage())
	}
	md, _ := metadata.FromIncomingContext(ctx)
	xfcc := ""
	if v := md.Get("x-forwarded-client-cert"); len(v) > 0 {
		xfcc = v[0]
	}
	return &testgrpc.SimpleResponse{Username: xfcc, Payload: &testgrpc.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func (testService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range req.GetResponseParameters() {
		if d := p.GetIntervalUs(); d > 0 {
			time.Sleep(time.Duration(d) * time.Microsecond)
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return status.Error(codes.ResourceExhausted, "stream done")
}

func (testService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range req.GetResponseParameters() {
			if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
				return err
			}
		}
	}
}

// grpcMesh runs the test service as the app (h2c) behind two sidecars.
func grpcMesh(t *testing.T) testgrpc.TestServiceClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	gs := grpc.NewServer()
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
	ca := proxytest.NewCA(t, trustDomain)
	m := &mesh{ca: ca, http2: true, allowed: []string{serverID}, appAddr: ln.Addr().String()}
	m.client = newProxy(t, ca.Identity(t, clientID))
	m.server = newProxy(t, ca.Identity(t, serverID))
	m.inAddr = proxytest.FreeAddr(t)
	m.outAddr = proxytest.FreeAddr(t)
	if err := m.server.Update(m.serverSet(t)); err != nil {
		t.Fatalf("server Update: %v", err)
	}
	if err := m.client.Update(m.buildClientSet(t)); err != nil {
		t.Fatalf("client Update: %v", err)
	}
	cc, err := grpc.NewClient("passthrough:///"+m.outAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc client: %v", err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

func TestGRPCThroughMesh(t *testing.T) {
	client := grpcMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("unary ok", func(t *testing.T) {
		var trailer metadata.MD
		res, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 1 << 16}, grpc.Trailer(&trailer))
		if err != nil {
			t.Fatalf("UnaryCall: %v", err)
		}
		if len(res.GetPayload().GetBody()) != 1<<16 {
			t.Errorf("payload %d bytes, want %d", len(res.GetPayload().GetBody()), 1<<16)
		}
		if want := "By=" + serverID + ";URI=" + clientID; res.GetUsername() != want {
			t.Errorf("app saw xfcc %q, want %q", res.GetUsername(), want)
		}
		if got := trailer.Get("x-app-trailer"); len(got) != 1 || got[0] != "yes" {
			t.Errorf("trailer x-app-trailer = %v", got)
		}
	})
	t.Run("unary status", func(t *testing.T) {
		var trailer metadata.MD
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{
			ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.PermissionDenied), Message: "nope"},
		}, grpc.Trailer(&trailer))
		if s := status.Convert(err); s.Code() != codes.PermissionDenied || s.Message() != "nope" {
			t.Errorf("status = %v, want PermissionDenied nope", s)
		}
		if got := trailer.Get("x-app-trailer"); len(got) != 1 {
			t.Errorf("trailer lost on error: %v", trailer)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		var params []*testgrpc.ResponseParameters
		for i := range 5 {
			params = append(params, &testgrpc.ResponseParameters{Size: int32(10 * (i + 1)), IntervalUs: 20000})
		}
		stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatalf("StreamingOutputCall: %v", err)
		}
		for i := range 5 {
			res, err := stream.Recv()
			if err != nil {
				t.Fatalf("Recv %d: %v", i, err)
			}
			if len(res.GetPayload().GetBody()) != 10*(i+1) {
				t.Errorf("message %d: %d bytes", i, len(res.GetPayload().GetBody()))
			}
		}
		_, err = stream.Recv()
		if s := status.Convert(err); s.Code() != codes.ResourceExhausted || s.Message() != "stream done" {
			t.Errorf("final status = %v, want ResourceExhausted", s)
		}
	})
	t.Run("full duplex", func(t *testing.T) {
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatalf("FullDuplexCall: %v", err)
		}
		// Ping-pong proves nothing is buffered in either direction.
		for i := range 3 {
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(i + 1)}}}); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
			res, err := stream.Recv()
			if err != nil {
				t.Fatalf("Recv %d: %v", i, err)
			}
			if len(res.GetPayload().GetBody()) != i+1 {
				t.Errorf("message %d: %d bytes", i, len(res.GetPayload().GetBody()))
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatalf("CloseSend: %v", err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("end of stream: %v, want EOF", err)
		}
	})
}
