package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// h2sSetup is one proxy with an HTTP listener (mTLS with ALPN h2, or
// plaintext for h2c) in front of app.
type h2sSetup struct {
	p    *Proxy
	dial func() (net.Conn, error)
}

func newH2sSetup(t *testing.T, app http.Handler, mtls, netHTTP2 bool) *h2sSetup {
	t.Helper()
	ca := proxytest.NewCA(t, trustDomain)
	s := &h2sSetup{p: newProxyOpts(t, Options{Identity: ca.Identity(t, serverID), Logger: testLogger(t), NetHTTP2: netHTTP2})}
	addr := proxytest.FreeAddr(t)
	set := resources.NewSet()
	rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	var ts = proxytest.DownstreamTLS(t, "h2", "http/1.1")
	if !mtls {
		ts = nil
	}
	set.Listeners[inName] = proxytest.Listener(t, inName, addr, proxytest.HCM(t, "", rc, mtls), ts)
	set.Clusters[inName] = proxytest.StaticCluster(t, inName, serveApp(t, app), false)
	if err := s.p.Update(set); err != nil {
		t.Fatalf("Update: %v", err)
	}
	s.dial = func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
	if mtls {
		cfg := proxytest.ClientTLS(ca.SVID(t, clientID), ca, "h2")
		s.dial = func() (net.Conn, error) {
			return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		}
	}
	return s
}

func (s *h2sSetup) stat(t *testing.T, name string) int {
	t.Helper()
	prefix := "listener." + inName + "." + name + " "
	for line := range strings.SplitSeq(statsOf(s.p), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("no stat %s", name)
	return 0
}

// h2sConn is a frame-level client: it reads the server's SETTINGS first.
type h2sConn struct {
	nc       net.Conn
	bw       *bufio.Writer
	fr       *http2.Framer
	settings map[http2.SettingID]uint32
}

func dialH2s(t *testing.T, s *h2sSetup) *h2sConn {
	t.Helper()
	nc, err := s.dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &h2sConn{nc: nc, bw: bufio.NewWriter(nc), settings: map[http2.SettingID]uint32{}}
	c.fr = http2.NewFramer(c.bw, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	_, _ = c.bw.WriteString(http2.ClientPreface)
	_ = c.fr.WriteSettings()
	if err := c.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := c.fr.ReadFrame()
	sf, ok := f.(*http2.SettingsFrame)
	if err != nil || !ok {
		t.Fatalf("first frame %v, %v; want SETTINGS", f, err)
	}
	_ = sf.ForeachSetting(func(s http2.Setting) error { c.settings[s.ID] = s.Val; return nil })
	_ = c.fr.WriteSettingsAck()
	if err := c.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *h2sConn) request(t *testing.T, id uint32, path string, rst bool) {
	t.Helper()
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "app"}, {":path", path}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1], Sensitive: true})
	}
	_ = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk.Bytes(), EndStream: true, EndHeaders: true})
	if rst {
		_ = c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	if err := c.bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// until reads frames, answering PING and SETTINGS, until f returns true or
// the connection ends (false).
func (c *h2sConn) until(f func(http2.Frame) bool) bool {
	for {
		fr, err := c.fr.ReadFrame()
		if err != nil {
			return false
		}
		switch fr := fr.(type) {
		case *http2.PingFrame:
			if !fr.IsAck() {
				_ = c.fr.WritePing(true, fr.Data)
				_ = c.bw.Flush()
			}
		case *http2.SettingsFrame:
			if !fr.IsAck() {
				_ = c.fr.WriteSettingsAck()
				_ = c.bw.Flush()
			}
		}
		if f(fr) {
			return true
		}
	}
}

func statusOf(f http2.Frame, id uint32) string {
	if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id {
		return h.PseudoValue("status")
	}
	return ""
}

// TestH2ServerSelection: HTTP/2 connections are served by h2srv (its
// SETTINGS show the listener's limits) unless Options.NetHTTP2 is set;
// both answer through the proxy.
func TestH2ServerSelection(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "app") })
	for _, mtls := range []bool{false, true} {
		for _, netHTTP2 := range []bool{false, true} {
			name := map[bool]string{false: "h2c", true: "h2 over mTLS"}[mtls] + map[bool]string{false: "/h2srv", true: "/nethttp"}[netHTTP2]
			t.Run(name, func(t *testing.T) {
				s := newH2sSetup(t, app, mtls, netHTTP2)
				c := dialH2s(t, s)
				frame := c.settings[http2.SettingMaxFrameSize]
				if own := frame == maxHeaderBytes; own == netHTTP2 {
					t.Errorf("SETTINGS_MAX_FRAME_SIZE %d: served by the wrong server", frame)
				}
				c.request(t, 1, "/x", false)
				status := ""
				c.until(func(f http2.Frame) bool { status = statusOf(f, 1); return status != "" })
				if status != "200" {
					t.Fatalf("status %q", status)
				}
			})
		}
	}
}

// TestH2RapidResetThroughProxy: h2srv's guard ends the connection with
// GOAWAY ENHANCE_YOUR_CALM and the listener counts it.
func TestH2RapidResetThroughProxy(t *testing.T) {
	var seen atomic.Int64
	s := newH2sSetup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen.Add(1) }), true, false)
	c := dialH2s(t, s)
	var away *http2.GoAwayFrame
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.until(func(f http2.Frame) bool {
			g, ok := f.(*http2.GoAwayFrame)
			if ok {
				away = g
			}
			return ok
		})
	}()
	for i := range 2000 {
		c.request(t, uint32(2*i+1), "/rapid", true)
		select {
		case <-done:
		default:
			continue
		}
		break
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("connection not ended")
	}
	if away == nil || away.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", away)
	}
	if n := s.stat(t, "downstream_rq_too_many_premature_resets"); n != 1 {
		t.Errorf("downstream_rq_too_many_premature_resets = %d, want 1", n)
	}
	if n := s.stat(t, "downstream_rq_rx_reset"); n < 250 {
		t.Errorf("downstream_rq_rx_reset = %d, want the guard's count (> 250)", n)
	}
	t.Logf("the app saw %d of the reset requests", seen.Load())
}

// TestH2ProxyShutdownDrains: Proxy.Shutdown sends GOAWAY and lets the
// in-flight stream finish.
func TestH2ProxyShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s := newH2sSetup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "late")
	}), false, false)
	c := dialH2s(t, s)
	c.request(t, 1, "/slow", false)
	<-started
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- s.p.Shutdown(ctx)
	}()
	var away *http2.GoAwayFrame
	c.until(func(f http2.Frame) bool { away, _ = f.(*http2.GoAwayFrame); return away != nil })
	if away == nil || away.ErrCode != http2.ErrCodeNo || away.LastStreamID != 1 {
		t.Fatalf("GOAWAY %v, want NO_ERROR with last stream 1", away)
	}
	close(release)
	status := ""
	c.until(func(f http2.Frame) bool { status = statusOf(f, 1); return status != "" })
	if status != "200" {
		t.Fatalf("in-flight stream answered %q", status)
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// BenchmarkSidecarH2: gRPC-like POSTs (5-byte body, trailers) through one
// sidecar, h2c in and out, with the downstream connection served by h2srv
// or by net/http (the upstream side is the same). 10 streams in flight per
// client goroutine's connection share; allocations include the client's.
//
//	go test -run '^$' -bench SidecarH2 -benchmem ./internal/proxy/
func BenchmarkSidecarH2(b *testing.B) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write([]byte("\x00\x00\x00\x00\x02ok"))
		w.Header().Set("Grpc-Status", "0")
	})
	for _, netHTTP2 := range []bool{false, true} {
		b.Run(map[bool]string{false: "h2srv", true: "nethttp"}[netHTTP2], func(b *testing.B) {
			ca := proxytest.NewCA(b, trustDomain)
			p := newProxyOpts(b, Options{Identity: ca.Identity(b, serverID), Logger: testLogger(b), NetHTTP2: netHTTP2})
			addr := proxytest.FreeAddr(b)
			set := resources.NewSet()
			rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
			set.Listeners[inName] = proxytest.Listener(b, inName, addr, proxytest.HCM(b, "", rc, false), nil)
			set.Clusters[inName] = proxytest.StaticCluster(b, inName, serveApp(b, app), true)
			if err := p.Update(set); err != nil {
				b.Fatal(err)
			}
			tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, a)
			}}
			defer tr.CloseIdleConnections()
			body := []byte("\x00\x00\x00\x00\x05hello")
			b.ReportAllocs()
			b.SetParallelism(5) // 10 streams in flight on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("POST", "http://"+addr+"/svc/M", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/grpc")
					res, err := tr.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					_ = res.Body.Close()
					if res.Trailer.Get("Grpc-Status") != "0" {
						b.Errorf("trailers %v", res.Trailer)
						return
					}
				}
			})
		})
	}
}
