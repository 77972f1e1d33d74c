package h2srv

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// echoService answers grpc-go's interop TestService calls it needs.
type echoService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (echoService) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if in.GetResponseStatus().GetCode() != 0 {
		return nil, status.Error(codes.Code(in.GetResponseStatus().GetCode()), in.GetResponseStatus().GetMessage())
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t"))
	return &testgrpc.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (echoService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

// TestGRPC: grpc-go's server (its ServeHTTP transport) behind h2srv,
// called by grpc-go's client with keepalive pings: unary calls with
// trailers, an error status (a trailers-only response), and a full-duplex
// stream with large messages crossing the flow-control windows.
func TestGRPC(t *testing.T) {
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, echoService{})
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2c", true: "tls"}[useTLS], func(t *testing.T) {
			ts := startServer(t, Config{InitialWindowSize: 64 << 10, ConnWindowSize: 128 << 10}, gs, useTLS)
			creds := insecure.NewCredentials()
			if useTLS {
				creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
			}
			cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(creds),
				grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, PermitWithoutStream: true}))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			client := testgrpc.NewTestServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			for i := range 200 {
				var trailer metadata.MD
				body := make([]byte, i*100)
				res, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: body}}, grpc.Trailer(&trailer))
				if err != nil || len(res.GetPayload().GetBody()) != len(body) || trailer.Get("x-trailer")[0] != "t" {
					t.Fatalf("unary %d: %v, %d bytes, trailer %v", i, err, len(res.GetPayload().GetBody()), trailer)
				}
			}
			_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "nope"}})
			if s, _ := status.FromError(err); s.Code() != codes.NotFound || s.Message() != "nope" {
				t.Fatalf("error status: %v", err)
			}

			stream, err := client.FullDuplexCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			msg := make([]byte, 300<<10)
			for i := range 10 {
				msg[0] = byte(i)
				if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: msg}}); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
				res, err := stream.Recv()
				if err != nil || len(res.GetPayload().GetBody()) != len(msg) || res.GetPayload().GetBody()[0] != byte(i) {
					t.Fatalf("recv %d: %v", i, err)
				}
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("end of stream: %v", err)
			}
			if got := ts.stats.abuses(); len(got) != 0 {
				t.Errorf("grpc-go taken for abuse: %v", got)
			}
		})
	}
}
