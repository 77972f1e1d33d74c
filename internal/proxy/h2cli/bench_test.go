package h2cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkRoundTrip compares the pool with net/http's HTTP/2 transport,
// both over h2c to the same net/http server: a GET and a small POST (a
// unary gRPC-sized exchange), one at a time and from parallel goroutines.
//
//	go test -run '^$' -bench RoundTrip -benchmem ./internal/proxy/h2cli
//
// allocs/op include the in-process server's (about 30) and building the
// request (about 5): the clients differ by what is left, about 7 for the
// pool (stream, its channel, the Framer's HEADERS frame, the response and
// its header map) and about 40 for net/http.
func BenchmarkRoundTrip(b *testing.B) {
	payload := []byte("0123456789abcdef0123456789abcdef")
	be := newBackend(b, false, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(payload)
	})
	nethttp := &http.Transport{
		DialContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return dialTCP(ctx, addr) },
		Protocols:           new(http.Protocols),
		MaxIdleConnsPerHost: 16,
		HTTP2:               &http.HTTP2Config{MaxConcurrentStreams: 1000},
	}
	nethttp.Protocols.SetUnencryptedHTTP2(true)
	b.Cleanup(nethttp.CloseIdleConnections)
	clients := []struct {
		name string
		rt   http.RoundTripper
	}{
		{"h2cli", newPool(b, Options{Dial: dialTCP})},
		{"nethttp", nethttp},
	}
	url := be.url("/bench")
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	for _, method := range []string{"GET", "POST"} {
		for _, cl := range clients {
			do := func(b *testing.B, buf []byte) {
				var body io.Reader
				if method == "POST" {
					body = bytes.NewReader(payload)
				}
				// A cancellable context, as every proxied request has.
				req, _ := http.NewRequestWithContext(ctx, method, url, body)
				res, err := cl.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				if n, _ := io.ReadFull(res.Body, buf); n != len(payload) {
					b.Fatalf("read %d bytes", n)
				}
				_, _ = res.Body.Read(buf) // io.EOF
				_ = res.Body.Close()
			}
			b.Run(method+"/"+cl.name, func(b *testing.B) {
				buf := make([]byte, len(payload))
				b.ReportAllocs()
				for b.Loop() {
					do(b, buf)
				}
			})
			b.Run(method+"/"+cl.name+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					buf := make([]byte, len(payload))
					for pb.Next() {
						do(b, buf)
					}
				})
			})
		}
	}
}
