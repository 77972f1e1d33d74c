package h2srv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer serves h2srv on a loopback listener, one ServeConn per
// accepted connection (TLS with ALPN h2 when tlsConf is set).
type testServer struct {
	addr    string
	srv     *Server
	tlsConf *tls.Config
	stats   *countStats

	drain context.CancelFunc // starts a graceful drain of every connection
	abort context.CancelFunc // closes every connection at once
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	errs  []error
	wrap  func(net.Conn) net.Conn // applied to accepted connections
}

func (ts *testServer) setWrap(f func(net.Conn) net.Conn) {
	ts.mu.Lock()
	ts.wrap = f
	ts.mu.Unlock()
}

func startServer(t testing.TB, cfg Config, h http.Handler, useTLS bool) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), ln: ln, stats: &countStats{}}
	if cfg.Stats == nil {
		cfg.Stats = ts.stats
	}
	ts.srv = New(cfg)
	if useTLS {
		ts.tlsConf = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}}
	}
	drainCtx, drain := context.WithCancel(context.Background())
	abortCtx, abort := context.WithCancel(context.Background())
	ts.drain, ts.abort = drain, abort
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				opts := ConnOpts{Handler: h, Abort: abortCtx}
				ts.mu.Lock()
				if ts.wrap != nil {
					c = ts.wrap(c)
				}
				ts.mu.Unlock()
				if ts.tlsConf != nil {
					tc := tls.Server(c, ts.tlsConf)
					if err := tc.HandshakeContext(abortCtx); err != nil {
						_ = c.Close()
						return
					}
					cs := tc.ConnectionState()
					opts.TLS, c = &cs, tc
				}
				if err := ts.srv.ServeConn(drainCtx, c, opts); err != nil {
					ts.mu.Lock()
					ts.errs = append(ts.errs, err)
					ts.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		abort()
		ts.wg.Wait()
		drain()
	})
	return ts
}

func (ts *testServer) serveErrors() []error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]error(nil), ts.errs...)
}

// client returns an x/net HTTP/2 client for the server.
func (ts *testServer) client(t testing.TB) *http.Client {
	tr := &http2.Transport{}
	if ts.tlsConf != nil {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}
	} else {
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func (ts *testServer) url(path string) string {
	if ts.tlsConf != nil {
		return "https://" + ts.addr + path
	}
	return "http://" + ts.addr + path
}

// countStats counts Stats events.
type countStats struct {
	opened, resets, headerLimits atomic.Int64
	mu                           sync.Mutex
	abuse                        []Abuse
}

func (s *countStats) StreamOpened() { s.opened.Add(1) }
func (s *countStats) StreamReset()  { s.resets.Add(1) }
func (s *countStats) HeaderLimit()  { s.headerLimits.Add(1) }
func (s *countStats) ConnAbuse(a Abuse) {
	s.mu.Lock()
	s.abuse = append(s.abuse, a)
	s.mu.Unlock()
}

func (s *countStats) abuses() []Abuse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Abuse(nil), s.abuse...)
}

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "h2srv test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// rawClient speaks HTTP/2 frame by frame; a reader goroutine records what
// the server sends and answers SETTINGS and PING.
type rawClient struct {
	t   testing.TB
	nc  net.Conn
	mu  sync.Mutex // writer
	bw  *bufio.Writer
	fr  *http2.Framer
	enc *hpack.Encoder
	blk bytes.Buffer

	fmu   sync.Mutex
	log   []http2.Frame // copies of what the server sent
	used  []bool        // log entries a wait returned
	done  chan struct{}
	ready chan struct{} // closed once the server's SETTINGS are acknowledged
	err   error         // the reader's, once done is closed
	noAck bool          // do not answer PING (flood tests)
}

func dialRaw(t testing.TB, ts *testServer) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return newRaw(t, nc, true)
}

func newRaw(t testing.TB, nc net.Conn, preface bool) *rawClient {
	c := &rawClient{t: t, nc: nc, bw: bufio.NewWriterSize(nc, 64<<10), done: make(chan struct{}), ready: make(chan struct{})}
	c.fr = http2.NewFramer(c.bw, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.blk)
	if preface {
		if err := c.write(func() error {
			if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
				return err
			}
			return c.fr.WriteSettings()
		}); err != nil {
			t.Fatal(err)
		}
	}
	go c.read()
	t.Cleanup(func() { _ = nc.Close(); <-c.done })
	if preface { // attacks must not have the ACK in the middle of a header block
		select {
		case <-c.ready:
		case <-c.done:
			select {
			case <-c.ready: // SETTINGS came, then the close
			default:
				t.Fatalf("connection closed before the server's SETTINGS: %v", c.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no SETTINGS from the server")
		}
	}
	return c
}

func (c *rawClient) read() {
	defer close(c.done)
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.err = err
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = c.write(c.fr.WriteSettingsAck)
				select {
				case <-c.ready:
				default:
					close(c.ready)
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() && !c.noAck {
				_ = c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		}
		c.fmu.Lock()
		c.log = append(c.log, copyFrame(f))
		c.used = append(c.used, false)
		c.fmu.Unlock()
	}
}

// frameCount counts the frames received that match keep.
func (c *rawClient) frameCount(keep func(http2.Frame) bool) int {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	n := 0
	for _, f := range c.log {
		if keep(f) {
			n++
		}
	}
	return n
}

// copyFrame keeps what tests look at (the Framer reuses its buffers).
func copyFrame(f http2.Frame) http2.Frame {
	switch f := f.(type) {
	case *http2.DataFrame:
		return &dataFrame{StreamID: f.StreamID, Data: bytes.Clone(f.Data()), End: f.StreamEnded()}
	case *http2.MetaHeadersFrame:
		return &headersFrame{StreamID: f.StreamID, Fields: append([]hpack.HeaderField(nil), f.Fields...), End: f.StreamEnded()}
	case *http2.GoAwayFrame:
		g := *f
		return &g
	case *http2.RSTStreamFrame:
		r := *f
		return &r
	}
	return f
}

type dataFrame struct {
	http2.FrameHeader
	StreamID uint32
	Data     []byte
	End      bool
}

type headersFrame struct {
	http2.FrameHeader
	StreamID uint32
	Fields   []hpack.HeaderField
	End      bool
}

func (h *headersFrame) get(name string) string {
	for _, f := range h.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func (c *rawClient) write(f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := f(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// block encodes a request header block.
func (c *rawClient) block(method, path string, extra ...hpack.HeaderField) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blk.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: method}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "example.test"}, {Name: ":path", Value: path},
	}, extra...) {
		_ = c.enc.WriteField(f)
	}
	return bytes.Clone(c.blk.Bytes())
}

func (c *rawClient) headers(id uint32, end bool, blk []byte) error {
	return c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: end, EndHeaders: true})
	})
}

// next waits up to d for the first frame matching keep that no earlier
// wait returned.
func (c *rawClient) next(d time.Duration, keep func(http2.Frame) bool) (http2.Frame, bool) {
	deadline := time.Now().Add(d)
	for {
		c.fmu.Lock()
		for i, f := range c.log {
			if !c.used[i] && keep(f) {
				c.used[i] = true
				c.fmu.Unlock()
				return f, true
			}
		}
		c.fmu.Unlock()
		select {
		case <-c.done:
			c.fmu.Lock()
			n := len(c.log)
			c.fmu.Unlock()
			if n == len(c.used) && c.allSeen(keep) {
				return nil, false
			}
		default:
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// allSeen: the reader is done and no unused frame matches keep.
func (c *rawClient) allSeen(keep func(http2.Frame) bool) bool {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	for i, f := range c.log {
		if !c.used[i] && keep(f) {
			return false
		}
	}
	return true
}

func (c *rawClient) goAway(d time.Duration) *http2.GoAwayFrame {
	f, _ := c.next(d, func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	g, _ := f.(*http2.GoAwayFrame)
	return g
}

func (c *rawClient) reset(id uint32, d time.Duration) *http2.RSTStreamFrame {
	f, _ := c.next(d, func(f http2.Frame) bool { r, ok := f.(*http2.RSTStreamFrame); return ok && r.StreamID == id })
	r, _ := f.(*http2.RSTStreamFrame)
	return r
}

func (c *rawClient) response(id uint32, d time.Duration) *headersFrame {
	f, _ := c.next(d, func(f http2.Frame) bool {
		h, ok := f.(*headersFrame)
		return ok && h.StreamID == id && h.get(":status") != "" && h.get(":status")[0] != '1'
	})
	h, _ := f.(*headersFrame)
	return h
}

// closed waits for the server to close the connection.
func (c *rawClient) closed(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

var errStop = errors.New("stop")

type http2Frame = http2.Frame

// isStreamFrame: a HEADERS, DATA or RST_STREAM frame of stream id.
func isStreamFrame(f http2.Frame, id uint32) bool {
	switch f := f.(type) {
	case *headersFrame:
		return f.StreamID == id
	case *dataFrame:
		return f.StreamID == id
	case *http2.RSTStreamFrame:
		return f.StreamID == id
	}
	return false
}

func streamEnded(f http2.Frame) bool {
	switch f := f.(type) {
	case *headersFrame:
		return f.End
	case *dataFrame:
		return f.End
	case *http2.RSTStreamFrame:
		return true
	}
	return false
}

func describe(f http2.Frame) string {
	var b strings.Builder
	switch f := f.(type) {
	case *headersFrame:
		b.WriteString("HEADERS")
		for _, hf := range f.Fields {
			fmt.Fprintf(&b, " %s=%s", hf.Name, hf.Value)
		}
		if f.End {
			b.WriteString(" END_STREAM")
		}
	case *dataFrame:
		fmt.Fprintf(&b, "DATA %q", f.Data)
		if f.End {
			b.WriteString(" END_STREAM")
		}
	case *http2.RSTStreamFrame:
		fmt.Fprintf(&b, "RST_STREAM %v", f.ErrCode)
	default:
		fmt.Fprintf(&b, "%T", f)
	}
	return b.String()
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
