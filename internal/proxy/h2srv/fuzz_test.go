package h2srv

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzServeConn feeds arbitrary bytes, after the client preface and an
// empty SETTINGS frame, to a connection: the server must neither panic nor
// hang (it returns once the input ends and its handlers return).
func FuzzServeConn(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(200)
		_, _ = w.Write(b)
		w.(http.Flusher).Flush()
		w.Header().Set("X-Sum", "1")
	})
	srv := New(Config{
		MaxConcurrentStreams: 8, MaxHeaderBytes: 4 << 10, InitialWindowSize: 1 << 16, ConnWindowSize: 1 << 17,
		IdleTimeout: -1, StreamIdleTimeout: -1, WriteTimeout: time.Second, ReadHeaderTimeout: 2 * time.Second,
		Logger: discardLogger(),
	})
	var prefix bytes.Buffer
	prefix.WriteString(http2.ClientPreface)
	_ = http2.NewFramer(&prefix, nil).WriteSettings()
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		abort, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- srv.ServeConn(context.Background(), server, ConnOpts{
				Handler: handler, Abort: abort, Buffered: prefix.Bytes(), PrefaceRead: false,
			})
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = client.Write(data)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not return")
		}
	})
}

// fuzzSeeds are frame sequences of a normal exchange and of error cases.
func fuzzSeeds() [][]byte {
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	block := func(fields ...string) []byte {
		blk.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return bytes.Clone(blk.Bytes())
	}
	req := func(method string, extra ...string) []byte {
		return block(append([]string{":method", method, ":scheme", "http", ":authority", "a", ":path", "/p"}, extra...)...)
	}
	seq := func(write func(fr *http2.Framer)) []byte {
		var b bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		fr.AllowIllegalWrites = true
		write(fr)
		return b.Bytes()
	}
	return [][]byte{
		seq(func(fr *http2.Framer) {
			_ = fr.WriteSettingsAck()
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("GET"), EndStream: true, EndHeaders: true})
		}),
		seq(func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("POST", "content-length", "5", "trailer", "x-t"), EndHeaders: true})
			_ = fr.WriteDataPadded(1, false, []byte("hello"), []byte{0, 0, 0})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("x-t", "v"), EndStream: true, EndHeaders: true})
			_ = fr.WriteWindowUpdate(0, 1000)
			_ = fr.WriteWindowUpdate(1, 1000)
		}),
		seq(func(fr *http2.Framer) {
			b := req("GET", "x-long", string(bytes.Repeat([]byte("a"), 100)))
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:10]})
			_ = fr.WriteContinuation(3, false, b[10:20])
			_ = fr.WriteContinuation(3, true, b[20:])
			_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
			_ = fr.WritePing(false, [8]byte{1, 2, 3})
			_ = fr.WritePriority(5, http2.PriorityParam{StreamDep: 3, Weight: 9})
		}),
		seq(func(fr *http2.Framer) {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14},
				http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("POST"), EndHeaders: true})
			_ = fr.WriteData(1, false, []byte("xyz"))
			_ = fr.WriteData(1, true, nil)
			_ = fr.WriteGoAway(0, http2.ErrCodeNo, []byte("bye"))
		}),
		seq(func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, BlockFragment: req("GET"), EndStream: true, EndHeaders: true})
		}),
		seq(func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("CONNECT"), EndHeaders: true})
			_ = fr.WriteData(7, true, []byte("idle"))
			_ = fr.WriteRawFrame(0xfa, 0xff, 1, []byte("unknown"))
		}),
	}
}
