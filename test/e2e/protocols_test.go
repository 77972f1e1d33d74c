package e2e

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trellis-mesh/trellis/examples/demoapp"
)

// TestProtocols sends gRPC (unary, server streaming, status codes, trailers)
// and opaque TCP through two sidecars, as the caller app would.
func TestProtocols(t *testing.T) {
	m := startMesh(t, "examples/protocols/mesh.yaml")
	caller := m.workload("caller-v1")

	// First, so that everything after it runs on a sidecar whose start-up
	// pages were unmapped (internal/memtrim).
	t.Run("start-up memory released", func(t *testing.T) { testStartupMemoryReleased(t, m, "caller-v1") })

	t.Run("gRPC", func(t *testing.T) {
		conn, err := grpc.NewClient(caller.Upstreams["grpc-echo"], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		client := testgrpc.NewTestServiceClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		var header, trailer metadata.MD
		ctx2 := metadata.AppendToOutgoingContext(ctx, "x-grpc-test-echo-trailing-bin", "\x01\x02")
		resp, err := client.UnaryCall(ctx2, &testgrpc.SimpleRequest{ResponseSize: 64, Payload: &testgrpc.Payload{Body: []byte("ping")}},
			grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			t.Fatalf("unary: %v", err)
		}
		if len(resp.GetPayload().GetBody()) != 64 {
			t.Errorf("unary payload %d bytes, want 64", len(resp.GetPayload().GetBody()))
		}
		if got := header.Get(demoapp.WhoamiWorkloadKey); len(got) != 1 || got[0] != "grpc-echo-v1" {
			t.Errorf("answered by %v, want grpc-echo-v1", got)
		}
		if xfcc := strings.Join(header.Get(demoapp.WhoamiClientCertKey), ","); !strings.Contains(xfcc, "sa/caller") {
			t.Errorf("server saw client cert %q, want the caller's identity", xfcc)
		}
		if got := trailer.Get("x-grpc-test-echo-trailing-bin"); len(got) != 1 || got[0] != "\x01\x02" {
			t.Errorf("trailer lost through the mesh: %v", trailer)
		}

		_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such book"}})
		if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such book" {
			t.Errorf("status through the mesh = %v, want NotFound \"no such book\"", err)
		}

		stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10, IntervalUs: 20000}, {Size: 20, IntervalUs: 20000}, {Size: 30, IntervalUs: 20000}},
		})
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			sizes = append(sizes, len(msg.GetPayload().GetBody()))
		}
		if len(sizes) != 3 || sizes[0] != 10 || sizes[1] != 20 || sizes[2] != 30 {
			t.Errorf("streamed sizes %v, want [10 20 30]", sizes)
		}
	})

	t.Run("TCP", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", caller.Upstreams["tcp-echo"], 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(conn)
		greeting, err := r.ReadString('\n')
		if err != nil || greeting != demoapp.TCPGreeting("tcp-echo-v1") {
			t.Fatalf("greeting %q, %v", greeting, err)
		}
		msg := strings.Repeat("trellis ", 10000) + "\n"
		go func() { _, _ = io.WriteString(conn, msg); _ = conn.(*net.TCPConn).CloseWrite() }()
		echoed, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read echo: %v", err)
		}
		if string(echoed) != msg {
			t.Errorf("echoed %d bytes, want %d identical bytes", len(echoed), len(msg))
		}
	})
}
