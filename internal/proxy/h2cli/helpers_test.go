package h2cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a net/http HTTP/2 server on 127.0.0.1: h2c, or TLS with ALPN.
type backend struct {
	addr  string
	tls   *tls.Config // client config for the TLS backend; nil for h2c
	conns atomic.Int64
	mu    sync.Mutex
	addrs map[string]int // requests by client address
}

func newBackend(t testing.TB, useTLS bool, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{addrs: map[string]int{}}
	wrapped := func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.addrs[r.RemoteAddr]++
		b.mu.Unlock()
		h(w, r)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(wrapped))
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}
	ts.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 250}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		ts.EnableHTTP2 = true
		ts.StartTLS()
		cfg := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
		cfg.NextProtos = []string{"h2"}
		cfg.ServerName = "127.0.0.1"
		b.tls = cfg
	} else {
		ts.Config.Protocols = new(http.Protocols)
		ts.Config.Protocols.SetUnencryptedHTTP2(true)
		ts.Start()
	}
	t.Cleanup(ts.Close)
	b.addr = ts.Listener.Addr().String()
	return b
}

// newBackendMaxStreams is an h2c backend whose SETTINGS_MAX_CONCURRENT_STREAMS
// is n.
func newBackendMaxStreams(t testing.TB, n uint32, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{addrs: map[string]int{}}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.addrs[r.RemoteAddr]++
		b.mu.Unlock()
		h(w, r)
	}))
	ts.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: int(n)}
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetUnencryptedHTTP2(true)
	ts.Start()
	t.Cleanup(ts.Close)
	b.addr = ts.Listener.Addr().String()
	return b
}

func (b *backend) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || b.tls == nil {
		return nc, err
	}
	tc := tls.Client(nc, b.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, err
	}
	return tc, nil
}

// clients returns how many requests each client connection carried, and
// forgets them.
func (b *backend) clients() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.addrs
	b.addrs = map[string]int{}
	return m
}

func (b *backend) url(path string) string {
	if b.tls != nil {
		return "https://" + b.addr + path
	}
	return "http://" + b.addr + path
}

func newPool(t testing.TB, o Options) *Pool {
	t.Helper()
	p := New(o)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func mustRequest(t testing.TB, ctx context.Context, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// readAll reads a response body and closes it.
func readAll(t testing.TB, res *http.Response) []byte {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return b
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rawServer is a hand-written HTTP/2 server on a Framer, for behaviour a
// real server does not show.
type rawServer struct {
	t     testing.TB
	ln    net.Listener
	conns chan *rawConn
	wg    sync.WaitGroup
}

type rawConn struct {
	t    testing.TB
	nc   net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

// newRawServer accepts connections, reads the client preface and sends
// settings as its first SETTINGS frame.
func newRawServer(t testing.TB, settings ...http2.Setting) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{t: t, ln: ln, conns: make(chan *rawConn, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			preface := make([]byte, len(http2.ClientPreface))
			_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(nc, preface); err != nil || string(preface) != http2.ClientPreface {
				_ = nc.Close()
				continue
			}
			rc := &rawConn{t: t, nc: nc}
			rc.fr = http2.NewFramer(nc, nc)
			rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			rc.henc = hpack.NewEncoder(&rc.hbuf)
			if err := rc.fr.WriteSettings(settings...); err != nil {
				_ = nc.Close()
				continue
			}
			s.conns <- rc
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
		close(s.conns)
		for rc := range s.conns {
			_ = rc.nc.Close()
		}
	})
	return s
}

func (s *rawServer) addr() string { return s.ln.Addr().String() }

// accept returns the next connection.
func (s *rawServer) accept() *rawConn {
	s.t.Helper()
	select {
	case rc := <-s.conns:
		s.t.Cleanup(func() { _ = rc.nc.Close() })
		return rc
	case <-time.After(5 * time.Second):
		s.t.Fatal("no connection")
		return nil
	}
}

// readFrame reads the next frame, acknowledging the client's SETTINGS.
func (rc *rawConn) readFrame() (http2.Frame, error) {
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if sf, ok := f.(*http2.SettingsFrame); ok {
			if !sf.IsAck() {
				if err := rc.fr.WriteSettingsAck(); err != nil {
					return nil, err
				}
			}
			continue
		}
		return f, nil
	}
}

// readHeaders reads frames up to the next HEADERS, skipping the others
// (request bodies, resets, WINDOW_UPDATE, PING).
func (rc *rawConn) readHeaders() *http2.MetaHeadersFrame {
	rc.t.Helper()
	for {
		f, err := rc.readFrame()
		if err != nil {
			rc.t.Fatalf("raw server: reading: %v", err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			return f
		case *http2.WindowUpdateFrame, *http2.PingFrame, *http2.DataFrame, *http2.RSTStreamFrame:
			continue
		default:
			rc.t.Fatalf("raw server: unexpected %T %v", f, f.Header())
		}
	}
}

// writeHeaders sends a header block (pseudo-headers first) on id.
func (rc *rawConn) writeHeaders(id uint32, end bool, kv ...string) error {
	rc.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = rc.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.Bytes(), EndStream: end, EndHeaders: true})
}

// readBody reads the DATA of stream id up to END_STREAM.
func (rc *rawConn) readBody(id uint32) string {
	rc.t.Helper()
	var b []byte
	for {
		f, err := rc.readFrame()
		if err != nil {
			rc.t.Fatalf("raw server: reading the body: %v", err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == id {
			b = append(b, d.Data()...)
			if d.StreamEnded() {
				return string(b)
			}
		}
	}
}
