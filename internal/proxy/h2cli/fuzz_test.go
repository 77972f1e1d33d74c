package h2cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// serverBytes builds what a server sends after its SETTINGS.
func serverBytes(build func(fr *http2.Framer, block func(kv ...string) []byte)) []byte {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	fr.AllowIllegalWrites = true
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	block := func(kv ...string) []byte {
		hbuf.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return bytes.Clone(hbuf.Bytes())
	}
	build(fr, block)
	return buf.Bytes()
}

func fuzzSeeds() [][]byte {
	hdr := func(fr *http2.Framer, id uint32, end bool, b []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndStream: end, EndHeaders: true})
	}
	return [][]byte{
		serverBytes(func(fr *http2.Framer, block func(...string) []byte) { // a response with a body and trailers
			hdr(fr, 1, false, block(":status", "200", "content-type", "application/grpc"))
			_ = fr.WriteData(1, false, []byte("hello"))
			hdr(fr, 1, true, block("grpc-status", "0"))
		}),
		serverBytes(func(fr *http2.Framer, block func(...string) []byte) { // 1xx, split block, content-length
			hdr(fr, 1, false, block(":status", "103", "link", "</a>"))
			b := block(":status", "200", "content-length", "3")
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:2], EndHeaders: false})
			_ = fr.WriteContinuation(1, true, b[2:])
			_ = fr.WriteDataPadded(1, true, []byte("abc"), make([]byte, 7))
		}),
		serverBytes(func(fr *http2.Framer, block func(...string) []byte) { // housekeeping, then reset
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
			_ = fr.WritePing(false, [8]byte{1})
			_ = fr.WriteWindowUpdate(0, 100)
			_ = fr.WriteWindowUpdate(1, 100)
			_ = fr.WriteRSTStream(1, http2.ErrCodeRefusedStream)
		}),
		serverBytes(func(fr *http2.Framer, block func(...string) []byte) { // GOAWAY
			_ = fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte("bye"))
		}),
		serverBytes(func(fr *http2.Framer, block func(...string) []byte) { // protocol errors
			_ = fr.WriteData(3, false, []byte("idle stream"))
			hdr(fr, 1, true, block(":status", "200", ":path", "/"))
			_ = fr.WriteWindowUpdate(0, 1<<31-1)
		}),
		serverBytes(func(fr *http2.Framer, block func(...string) []byte) { // CONTINUATION flood
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":status", "200"), EndHeaders: false})
			for range 64 {
				_ = fr.WriteContinuation(1, false, bytes.Repeat([]byte{0x40, 1, 'a', 1, 'b'}, 200))
			}
		}),
		[]byte("HTTP/1.1 200 OK\r\n\r\n"),
		{0, 0, 0, 9, 0, 0, 0, 0, 1},
	}
}

// FuzzClientFrames: whatever the server sends after its SETTINGS, the
// client neither panics nor hangs: RoundTrip and Body.Read return.
func FuzzClientFrames(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cli, srv := net.Pipe()
		serverDone := make(chan struct{})
		go func() {
			defer close(serverDone)
			go func() { _, _ = io.Copy(io.Discard, srv) }()
			var settings bytes.Buffer
			_ = http2.NewFramer(&settings, nil).WriteSettings()
			_ = srv.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = srv.Write(append(settings.Bytes(), data...))
			time.Sleep(20 * time.Millisecond)
			_ = srv.Close()
		}()
		dialed := false
		p := New(Options{
			Dial: func(ctx context.Context, addr string) (net.Conn, error) {
				if dialed {
					return nil, errors.New("one connection only")
				}
				dialed = true
				return cli, nil
			},
			PingInterval: -1, HandshakeTimeout: 200 * time.Millisecond,
			MaxHeaderListSize: 4 << 10, StreamWindow: 1 << 10, ConnWindow: 1 << 16,
		})
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://fuzz.test/x", strings.NewReader("request"))
		done := make(chan struct{})
		go func() {
			defer close(done)
			res, err := p.RoundTrip(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("RoundTrip or Body.Read hung")
		}
		<-serverDone
	})
}
