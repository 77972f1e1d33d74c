package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
	"strings"
	"testing"
	"testing/iotest"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

const bufName = "envoy.filters.http.buffer"

func bufferCfg(max uint32) *bufferv3.Buffer {
	return &bufferv3.Buffer{MaxRequestBytes: wrapperspb.UInt32(max)}
}

func bufferPerRoute(max uint32) *bufferv3.BufferPerRoute {
	return &bufferv3.BufferPerRoute{Override: &bufferv3.BufferPerRoute_Buffer{Buffer: bufferCfg(max)}}
}

func bufferOff() *bufferv3.BufferPerRoute {
	return &bufferv3.BufferPerRoute{Override: &bufferv3.BufferPerRoute_Disabled{Disabled: true}}
}

// TestTranslateBuffer checks the config each route resolves: the most
// specific BufferPerRoute (route, virtual host), else the HCM's.
func TestTranslateBuffer(t *testing.T) {
	set := validSet(t)
	set.Listeners[outName] = proxytest.Listener(t, outName, "127.0.0.1:1", hcmWith(t, outName, httpFilterEntry(t, bufName, bufferCfg(1000))), nil)
	vh := set.Routes[outName].VirtualHosts[0]
	vh.Routes = append(vh.Routes, proxytest.PrefixRoute("/z", outCluster, 0)) // the virtual host's config
	vh.TypedPerFilterConfig = perFilter(t, bufName, bufferPerRoute(500))
	vh.Routes[0].TypedPerFilterConfig = perFilter(t, bufName, bufferOff())
	vh.Routes[1].TypedPerFilterConfig = perFilter(t, bufName, bufferPerRoute(7))
	p := &Proxy{stats: newStatsRegistry()}
	cfg, err := p.build(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &cfg.listeners[outName].filters.chain[0]
	if f.kind != filterBuffer || f.kind.String() != "buffer" || f.buffer.max != 1000 {
		t.Fatalf("HCM filter = %+v", f)
	}
	routes := cfg.routes[outName].routes
	for i, want := range []int64{-1, 7, 500} {
		got := int64(-1)
		if bp := f.resolveBuffer(routes[i]); bp != nil {
			got = bp.max
		}
		if got != want {
			t.Errorf("routes[%d]: buffer %d, want %d (-1: disabled)", i, got, want)
		}
	}
	if bp := f.resolveBuffer(nil); bp == nil || bp.max != 1000 {
		t.Errorf("without a route: %+v, want the HCM's", bp)
	}
	// explain shows the same resolution.
	rc := set.Routes[outName]
	for i, want := range []FilterDetail{
		{Filter: bufName, Kind: "buffer", Level: "route", Reason: "disabled for this route"},
		{Filter: bufName, Kind: "buffer", Level: "route", Applies: true, MaxRequestBytes: 7},
		{Filter: bufName, Kind: "buffer", Level: "virtual host", Applies: true, MaxRequestBytes: 500},
	} {
		got := filterDetails(cfg.listeners[outName], routes[i], rc, vh.Routes[i], &request[string]{}, nil)
		if len(got) != 1 || got[0] != want {
			t.Errorf("explain routes[%d]: %+v, want %+v", i, got, want)
		}
	}

	// Without the filter in the HCM, a BufferPerRoute does nothing.
	set = validSet(t)
	set.Routes[outName].VirtualHosts[0].TypedPerFilterConfig = perFilter(t, bufName, bufferPerRoute(500))
	if cfg, err = p.build(set, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.listeners[outName].filters.chain); n != 0 {
		t.Errorf("%d filters, want none", n)
	}
}

// TestTranslateBufferInvalid checks that configs the filter cannot honour
// are refused (NACKed) with the field named.
func TestTranslateBufferInvalid(t *testing.T) {
	route := func(s *resources.Set) *routev3.Route { return s.Routes[outName].VirtualHosts[0].Routes[1] }
	setFilters := func(t *testing.T, s *resources.Set, filters ...*hcmv3.HttpFilter) {
		s.Listeners[outName] = proxytest.Listener(t, outName, "127.0.0.1:1", hcmWith(t, outName, filters...), nil)
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, s *resources.Set)
		want   string
	}{
		{"zero limit", func(t *testing.T, s *resources.Set) {
			setFilters(t, s, httpFilterEntry(t, bufName, bufferCfg(0)))
		}, `http_filters[0] ("envoy.filters.http.buffer").typed_config.max_request_bytes: 0, want > 0`},
		{"no limit", func(t *testing.T, s *resources.Set) {
			setFilters(t, s, httpFilterEntry(t, bufName, &bufferv3.Buffer{}))
		}, "typed_config.max_request_bytes: missing"},
		{"two buffer filters", func(t *testing.T, s *resources.Set) {
			setFilters(t, s, httpFilterEntry(t, bufName, bufferCfg(1)), httpFilterEntry(t, "b2", bufferCfg(2)))
		}, `http_filters[1] ("b2"): a second`},
		{"per-route zero limit", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, bufName, bufferPerRoute(0))
		}, `routes[1].typed_per_filter_config["envoy.filters.http.buffer"].buffer.max_request_bytes: 0, want > 0`},
		{"per-route disabled false", func(t *testing.T, s *resources.Set) {
			route(s).TypedPerFilterConfig = perFilter(t, bufName, &bufferv3.BufferPerRoute{Override: &bufferv3.BufferPerRoute_Disabled{}})
		}, "disabled: false, want true or a buffer"},
		{"per-route empty", func(t *testing.T, s *resources.Set) {
			s.Routes[outName].VirtualHosts[0].TypedPerFilterConfig = perFilter(t, bufName, &bufferv3.BufferPerRoute{})
		}, `virtual_hosts[0].typed_per_filter_config["envoy.filters.http.buffer"].override: missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Proxy{stats: newStatsRegistry()}
			set := validSet(t)
			tt.mutate(t, set)
			_, err := p.build(set, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("build error %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestBodyPool(t *testing.T) {
	var p bodyPool
	for _, tc := range []struct{ n, cap int }{{0, 512}, {1, 512}, {512, 512}, {513, 1024}, {100 << 10, 128 << 10}, {1 << 24, 1 << 24}, {1<<24 + 1, 1<<24 + 1}} {
		b := p.get(tc.n)
		if len(b) != 0 || cap(b) != tc.cap {
			t.Errorf("get(%d): len %d cap %d, want 0 and %d", tc.n, len(b), cap(b), tc.cap)
		}
		p.put(b)
	}
	b := append(p.get(10), "hello"...)
	b = p.grow(b, 4000)
	if string(b) != "hello" || cap(b) != 4096 {
		t.Errorf("grow: %q cap %d", b, cap(b))
	}
	p.put(make([]byte, 0, 1000)) // not a class size: dropped, not handed out
	if got := p.get(1000); cap(got) != 1024 {
		t.Errorf("a foreign buffer came back: cap %d", cap(got))
	}
}

func TestReadBody(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 10_000) // 100,000 bytes
	tests := []struct {
		name     string
		src      io.Reader
		declared int64
		limit    int64
		want     int   // body length, or -1
		err      error // when want is -1
	}{
		{"declared", bytes.NewReader(body), 100_000, 100_000, 100_000, nil},
		{"declared, one byte at a time", iotest.OneByteReader(bytes.NewReader(body[:3000])), 3000, 100_000, 3000, nil},
		{"unknown length, under the limit", bytes.NewReader(body), -1, 200_000, 100_000, nil},
		{"unknown length, exactly the limit", bytes.NewReader(body), -1, 100_000, 100_000, nil},
		{"unknown length, one byte over", bytes.NewReader(body), -1, 99_999, -1, errBodyTooLarge},
		{"declared, but longer", bytes.NewReader(body), 10, 100_000, -1, errBodyTooLarge},
		{"declared, but shorter", bytes.NewReader(body[:5]), 10, 100_000, -1, io.ErrUnexpectedEOF},
		{"empty", bytes.NewReader(nil), -1, 10, 0, nil},
		{"read error", iotest.ErrReader(io.ErrClosedPipe), -1, 10, -1, io.ErrClosedPipe},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p bodyPool
			got, err := p.readBody(tc.src, tc.declared, tc.limit)
			if tc.want < 0 {
				if !errors.Is(err, tc.err) || got != nil {
					t.Fatalf("readBody: %d bytes, %v; want %v", len(got), err, tc.err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, body[:tc.want]) {
				t.Fatalf("readBody: %d bytes, %v; want the first %d", len(got), err, tc.want)
			}
			if int64(cap(got)) > max(tc.limit, 512) && cap(got) > 2*tc.want {
				t.Errorf("buffer capacity %d for %d bytes (limit %d)", cap(got), tc.want, tc.limit)
			}
		})
	}
}

func TestDecodeChunked(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int64
		want  string // the body, or the error's text
		rest  string // what the reader has left
		err   bool
	}{
		{"two chunks", "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\nNEXT", 100, "abcde", "NEXT", false},
		{"trailers dropped", "1\r\na\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n", 100, "a", "", false},
		{"empty body", "0\r\n\r\n", 100, "", "", false},
		{"exactly the limit", "5\r\nabcde\r\n0\r\n\r\n", 5, "abcde", "", false},
		{"a chunk over the limit is not read", "3\r\nabc\r\n3\r\ndefXYZ", 5, errBodyTooLarge.Error(), "defXYZ", true},
		{"a huge chunk size", "fffffffffffffff\r\n", 1 << 30, errBodyTooLarge.Error(), "", true},
		{"bare LF", "3\nabc\r\n0\r\n\r\n", 100, errChunk.Error(), "", true},
		{"no CRLF after data", "3\r\nabcX\r\n0\r\n\r\n", 100, errChunk.Error(), "", true},
		{"bad size", "x\r\n", 100, errChunk.Error(), "", true},
		{"NUL in a trailer", "0\r\nX-A: a\x00b\r\n\r\n", 100, errChunk.Error(), "", true},
		{"ends in the data", "5\r\nab", 100, "chunked body: unexpected EOF", "", true},
		{"a line longer than the read buffer", "1\r\na\r\n0\r\nX-Long: " + strings.Repeat("v", 40) + "\r\n\r\n", 100, errChunk.Error(), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p bodyPool
			src := &connReader{rd: iotest.HalfReader(strings.NewReader(tc.in)), buf: make([]byte, 32)}
			got, err := decodeChunked(src, p.get(1), tc.limit, &p)
			if tc.err {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("decodeChunked: %q, %v; want error %q", got, err, tc.want)
				}
			} else if err != nil || string(got) != tc.want {
				t.Fatalf("decodeChunked: %q, %v; want %q", got, err, tc.want)
			}
			if tc.rest != "" {
				rest, _ := io.ReadAll(io.MultiReader(bytes.NewReader(src.buffered()), src.rd))
				if string(rest) != tc.rest {
					t.Errorf("left %q, want %q", rest, tc.rest)
				}
			}
		})
	}
}

// FuzzDecodeChunked checks the fast path's chunked decoder against
// net/http's: what it accepts, net/http decodes to the same bytes, and it
// never returns more than its limit.
func FuzzDecodeChunked(f *testing.F) {
	for _, s := range []string{"3\r\nabc\r\n0\r\n\r\n", "1;a=b\r\nx\r\n0\r\nT: v\r\n\r\n", "0\r\n\r\n", "A\r\n0123456789\r\n0\r\n\r\n", "3\nabc\n0\n\n"} {
		f.Add([]byte(s), uint16(8))
	}
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		var p bodyPool
		src := &connReader{rd: bytes.NewReader(in), buf: make([]byte, 64)}
		got, err := decodeChunked(src, p.get(1), int64(limit)+1, &p)
		if err != nil {
			return
		}
		if len(got) > int(limit)+1 {
			t.Fatalf("%d bytes over the limit %d", len(got), int(limit)+1)
		}
		want, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatalf("accepted %q, which net/http refuses: %v", in, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("decoded %q, net/http %q", got, want)
		}
	})
}

// BenchmarkDecodeChunked is the fast path's buffer filter reading a 64 KiB
// body sent as 16 KiB chunks, its buffer from the pool and back.
func BenchmarkDecodeChunked(b *testing.B) {
	var wire []byte
	chunk := patterned(16 << 10)
	for range 4 {
		wire = append(wire, "4000\r\n"...)
		wire = append(append(wire, chunk...), "\r\n"...)
	}
	wire = append(wire, "0\r\n\r\n"...)
	var p bodyPool
	src := connReader{buf: make([]byte, readBufSize)}
	rd := bytes.NewReader(wire)
	b.SetBytes(64 << 10)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(wire)
		src.rd, src.r, src.w = rd, 0, 0
		body, err := decodeChunked(&src, p.get(firstChunk), 1<<20, &p)
		if err != nil || len(body) != 64<<10 {
			b.Fatalf("%d bytes, %v", len(body), err)
		}
		p.put(body)
	}
}
