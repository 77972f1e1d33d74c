package demoapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Metadata the grpc-echo app reads and sends. The two echo keys are those of
// grpc-go's interop server; the whoami keys are sent in the response headers
// of every call, the gRPC counterpart of GET /whoami.
const (
	echoInitialKey      = "x-grpc-test-echo-initial"
	echoTrailingKey     = "x-grpc-test-echo-trailing-bin"
	WhoamiWorkloadKey   = "x-whoami-workload"
	WhoamiVersionKey    = "x-whoami-version"
	WhoamiRemoteKey     = "x-whoami-remote-addr"
	WhoamiClientCertKey = "x-whoami-xfcc"
	maxEchoPayload      = 4 << 20
	maxIntervalUs       = int32(10 * time.Second / time.Microsecond)
)

// echoServer implements grpc-go's interop TestService (grpc.testing), the
// methods interop clients use: EmptyCall, UnaryCall, StreamingOutputCall,
// StreamingInputCall, FullDuplexCall and HalfDuplexCall. Responses carry the
// workload name in server_id and hostname.
type echoServer struct {
	testgrpc.UnimplementedTestServiceServer
	cfg config
}

// whoami returns the header metadata that names the answering workload and
// echoes what the caller sent, as the interop server does.
func (s *echoServer) whoami(ctx context.Context) (header, trailer metadata.MD) {
	header = metadata.Pairs(WhoamiWorkloadKey, s.cfg.workload, WhoamiVersionKey, s.cfg.version)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		header.Set(WhoamiRemoteKey, p.Addr.String())
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-forwarded-client-cert"); len(v) > 0 {
		header.Set(WhoamiClientCertKey, v...)
	}
	if v := md.Get(echoInitialKey); len(v) > 0 {
		header.Set(echoInitialKey, v[0])
	}
	if v := md.Get(echoTrailingKey); len(v) > 0 {
		trailer = metadata.Pairs(echoTrailingKey, v[0])
	}
	return header, trailer
}

func newPayload(t testgrpc.PayloadType, size int32) (*testgrpc.Payload, error) {
	if t != testgrpc.PayloadType_COMPRESSABLE {
		return nil, status.Errorf(codes.InvalidArgument, "unsupported payload type %v", t)
	}
	if size < 0 || size > maxEchoPayload {
		return nil, status.Errorf(codes.InvalidArgument, "payload size %d out of range [0, %d]", size, maxEchoPayload)
	}
	return &testgrpc.Payload{Type: t, Body: make([]byte, size)}, nil
}

func echoStatus(st *testgrpc.EchoStatus) error {
	if st != nil && st.GetCode() != 0 {
		return status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return nil
}

// sleepInterval waits intervalUs microseconds (bounded), or until ctx ends.
func sleepInterval(ctx context.Context, us int32) error {
	if us <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(min(us, maxIntervalUs)) * time.Microsecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (s *echoServer) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	header, trailer := s.whoami(ctx)
	_ = grpc.SetHeader(ctx, header)
	if trailer != nil {
		_ = grpc.SetTrailer(ctx, trailer)
	}
	return &testgrpc.Empty{}, nil
}

func (s *echoServer) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	header, trailer := s.whoami(ctx)
	_ = grpc.SetHeader(ctx, header)
	if trailer != nil {
		_ = grpc.SetTrailer(ctx, trailer)
	}
	if err := echoStatus(in.GetResponseStatus()); err != nil {
		return nil, err
	}
	pl, err := newPayload(in.GetResponseType(), in.GetResponseSize())
	if err != nil {
		return nil, err
	}
	resp := &testgrpc.SimpleResponse{Payload: pl, ServerId: s.cfg.workload, Hostname: s.cfg.workload}
	if md, ok := metadata.FromIncomingContext(ctx); ok && in.GetFillUsername() {
		if v := md.Get("end-user"); len(v) > 0 {
			resp.Username = v[0]
		}
	}
	return resp, nil
}

func (s *echoServer) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	header, trailer := s.whoami(stream.Context())
	if err := stream.SendHeader(header); err != nil {
		return err
	}
	stream.SetTrailer(trailer)
	if err := echoStatus(in.GetResponseStatus()); err != nil {
		return err
	}
	return s.sendAll(stream.Context(), in, stream.Send)
}

// sendAll sends one response per response parameter of in.
func (s *echoServer) sendAll(ctx context.Context, in *testgrpc.StreamingOutputCallRequest, send func(*testgrpc.StreamingOutputCallResponse) error) error {
	for _, p := range in.GetResponseParameters() {
		if err := sleepInterval(ctx, p.GetIntervalUs()); err != nil {
			return err
		}
		pl, err := newPayload(in.GetResponseType(), p.GetSize())
		if err != nil {
			return err
		}
		if err := send(&testgrpc.StreamingOutputCallResponse{Payload: pl}); err != nil {
			return err
		}
	}
	return nil
}

func (s *echoServer) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	header, trailer := s.whoami(stream.Context())
	_ = stream.SetHeader(header)
	stream.SetTrailer(trailer)
	var sum int
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(sum)})
		}
		if err != nil {
			return err
		}
		sum += len(in.GetPayload().GetBody())
	}
}

func (s *echoServer) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	header, trailer := s.whoami(stream.Context())
	if err := stream.SendHeader(header); err != nil {
		return err
	}
	stream.SetTrailer(trailer)
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := echoStatus(in.GetResponseStatus()); err != nil {
			return err
		}
		if err := s.sendAll(stream.Context(), in, stream.Send); err != nil {
			return err
		}
	}
}

func (s *echoServer) HalfDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	header, trailer := s.whoami(stream.Context())
	if err := stream.SendHeader(header); err != nil {
		return err
	}
	stream.SetTrailer(trailer)
	var held []*testgrpc.StreamingOutputCallRequest
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		held = append(held, in)
	}
	for _, in := range held {
		if err := s.sendAll(stream.Context(), in, stream.Send); err != nil {
			return err
		}
	}
	return nil
}

// newGRPCEchoServer builds the gRPC server: TestService, server reflection
// and health, whose overall and grpc.testing.TestService statuses are SERVING.
func newGRPCEchoServer(cfg config) (*grpc.Server, *health.Server) {
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(maxEchoPayload+1024), grpc.MaxConcurrentStreams(1000))
	testgrpc.RegisterTestServiceServer(srv, &echoServer{cfg: cfg})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(testgrpc.TestService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv) // so grpcurl and similar tools work without .proto files
	return srv, hs
}

// runGRPCEcho serves gRPC over h2c (HTTP/2 with prior knowledge, which is
// what grpc-go's server speaks without credentials). On shutdown it reports
// NOT_SERVING, then stops gracefully within drainTimeout.
func runGRPCEcho(ctx context.Context, ln net.Listener, cfg config, logger *slog.Logger) error {
	srv, hs := newGRPCEchoServer(cfg)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve grpc on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(drainTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		logger.Warn("graceful stop incomplete, closing streams")
		srv.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve grpc on %s: %w", ln.Addr(), err)
	}
	return nil
}
