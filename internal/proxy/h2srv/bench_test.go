package h2srv

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// BenchmarkServer compares h2srv with net/http's HTTP/2 server (h2c, one
// connection, 10 streams in flight like h2load -m10) with the same
// handlers. The client is a frame-level loop that allocates almost nothing
// per request, so allocs/op is mostly the server's.
//
//	go test -run '^$' -bench Server -benchmem ./internal/proxy/h2srv/
func BenchmarkServer(b *testing.B) {
	handlers := map[string]http.HandlerFunc{
		"get": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(helloBody)
		},
		"grpc-unary": func(w http.ResponseWriter, r *http.Request) {
			var in [64]byte
			n, _ := r.Body.Read(in[:])
			for n > 0 {
				m, err := r.Body.Read(in[n:])
				if err != nil {
					break
				}
				n += m
			}
			h := w.Header()
			h.Set("Content-Type", "application/grpc")
			h.Set("Trailer", "Grpc-Status")
			_, _ = w.Write(in[:n])
			h.Set("Grpc-Status", "0")
		},
	}
	for _, name := range []string{"get", "grpc-unary"} {
		for _, server := range []string{"h2srv", "nethttp"} {
			b.Run(name+"/"+server, func(b *testing.B) {
				addr := benchServer(b, server, handlers[name])
				lc := dialLoad(b, addr, name == "grpc-unary")
				b.ReportAllocs()
				b.ResetTimer()
				lc.run(b, b.N, 10)
			})
		}
	}
}

var helloBody = []byte("hello, world\n")

func benchServer(b *testing.B, which string, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	switch which {
	case "h2srv":
		srv := New(Config{})
		ctx, cancel := context.WithCancel(context.Background())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = srv.ServeConn(context.Background(), c, ConnOpts{Handler: h, Abort: ctx})
				}()
			}
		}()
		b.Cleanup(func() { _ = ln.Close(); cancel(); wg.Wait() })
	default:
		hs := &http.Server{Handler: h, Protocols: new(http.Protocols)}
		hs.Protocols.SetUnencryptedHTTP2(true)
		wg.Add(1)
		go func() { defer wg.Done(); _ = hs.Serve(ln) }()
		b.Cleanup(func() { _ = hs.Close(); wg.Wait() })
	}
	return ln.Addr().String()
}

// loadClient pipelines requests on one connection, encoding headers as
// clients do (HPACK dynamic table: repeated fields are indexed).
type loadClient struct {
	nc     net.Conn
	bw     *bufio.Writer
	fr     *http2.Framer
	enc    *hpack.Encoder
	blk    bytes.Buffer
	fields []hpack.HeaderField
	body   bool
	done   chan struct{} // one per completed stream
	mu     sync.Mutex
	gone   chan struct{}
}

func dialLoad(b *testing.B, addr string, post bool) *loadClient {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	lc := &loadClient{nc: nc, bw: bufio.NewWriterSize(nc, 64<<10), body: post, done: make(chan struct{}, 1024), gone: make(chan struct{})}
	lc.fr = http2.NewFramer(lc.bw, bufio.NewReaderSize(nc, 64<<10))
	lc.fr.SetReuseFrames()
	lc.enc = hpack.NewEncoder(&lc.blk)
	method := "GET"
	if post {
		method = "POST"
	}
	for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "bench"}, {":path", "/svc/Method"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		lc.fields = append(lc.fields, hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_, _ = lc.bw.WriteString(http2.ClientPreface)
	_ = lc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	_ = lc.fr.WriteWindowUpdate(0, 1<<30)
	if err := lc.bw.Flush(); err != nil {
		b.Fatal(err)
	}
	go lc.read()
	b.Cleanup(func() { _ = nc.Close(); <-lc.gone })
	return lc
}

func (lc *loadClient) read() {
	defer close(lc.gone)
	var recv uint32
	for {
		f, err := lc.fr.ReadFrame()
		if err != nil {
			return
		}
		end := false
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				lc.locked(func() { _ = lc.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				lc.locked(func() { _ = lc.fr.WritePing(true, f.Data) })
			}
		case *http2.DataFrame:
			end = f.StreamEnded()
			if recv += f.Length; recv > 1<<20 {
				n := recv
				lc.locked(func() { _ = lc.fr.WriteWindowUpdate(0, n) })
				recv = 0
			}
		case *http2.HeadersFrame:
			end = f.StreamEnded()
		case *http2.RSTStreamFrame:
			end = f.ErrCode != http2.ErrCodeNo // NO_ERROR follows a complete response
		case *http2.GoAwayFrame:
			return
		}
		if end {
			lc.done <- struct{}{}
		}
	}
}

func (lc *loadClient) locked(f func()) {
	lc.mu.Lock()
	f()
	_ = lc.bw.Flush()
	lc.mu.Unlock()
}

var grpcMessage = []byte("\x00\x00\x00\x00\x05hello")

// run sends n requests keeping inFlight streams open.
func (lc *loadClient) run(b *testing.B, n, inFlight int) {
	id := uint32(1)
	send := func(k int) {
		lc.mu.Lock()
		for range k {
			lc.blk.Reset()
			for _, f := range lc.fields {
				_ = lc.enc.WriteField(f)
			}
			_ = lc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: lc.blk.Bytes(), EndStream: !lc.body, EndHeaders: true})
			if lc.body {
				_ = lc.fr.WriteData(id, true, grpcMessage)
			}
			id += 2
		}
		_ = lc.bw.Flush()
		lc.mu.Unlock()
	}
	sent := min(inFlight, n)
	send(sent)
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for got := 0; got < n; got++ {
		select {
		case <-lc.done:
		case <-lc.gone:
			b.Fatalf("connection closed after %d of %d responses", got, n)
		case <-timeout.C:
			b.Fatalf("%d of %d responses in a minute", got, n)
		}
		if sent < n {
			send(1)
			sent++
		}
	}
}
