package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

const benchRequest = "GET /api/v2/items?id=7 HTTP/1.1\r\nHost: server:8080\r\nUser-Agent: bench/1.0\r\n" +
	"Accept: application/json\r\nAccept-Encoding: gzip\r\nX-Canary: 1\r\nX-Request-Id: 5f0c2a\r\n" +
	"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n"

func BenchmarkParseRequestHead(b *testing.B) {
	raw := []byte(benchRequest)
	var h msgHead
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		scanned := 0
		n, err := headEnd(raw, &scanned, maxHeaderBytes, maxHeaderBytes)
		if err != nil {
			b.Fatal(err)
		}
		if err := parseRequestHead(raw[:n], &h); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForwardHead is the per-request header work of the fast path:
// parse, strip hop-by-hop and sanitize, write the rewritten head.
func BenchmarkForwardHead(b *testing.B) {
	raw := []byte(benchRequest)
	dc := &downConn{req: msgHead{contentLength: -1}, xfcc: []byte("X-Forwarded-Client-Cert: By=spiffe://a;URI=spiffe://b\r\n")}
	uc := &upConn{bw: bufio.NewWriterSize(io.Discard, writeBufSize)}
	b.ReportAllocs()
	for b.Loop() {
		scanned := 0
		n, _ := headEnd(raw, &scanned, maxHeaderBytes, maxHeaderBytes)
		if err := parseRequestHead(raw[:n], &dc.req); err != nil {
			b.Fatal(err)
		}
		for i := range dc.req.fields {
			f := &dc.req.fields[i]
			if equalFold(f.name, headerXFCC) || hasPrefixFold(f.name, "X-Trellis-") {
				f.drop = true
			}
		}
		dc.rd.buf = raw
		if _, err := dc.sendRequest(uc, 0, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRouteMatchRawHead(b *testing.B) {
	cfg, err := (&Proxy{stats: newStatsRegistry()}).build(validSet(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	table := cfg.routes[outName]
	var h msgHead
	raw := []byte(benchRequest)
	if err := parseRequestHead(raw, &h); err != nil {
		b.Fatal(err)
	}
	var scratch []byte
	b.ReportAllocs()
	for b.Loop() {
		path, _ := routedPath(&scratch, h.path, allPathOpts)
		rt := table.match(path, &h)
		c := cfg.clusters[rt.clusterName()]
		if c != nil {
			c.pick()
		}
	}
}

func BenchmarkStatsRecord(b *testing.B) {
	s := &endpointStats{}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.requests.Add(1)
			s.response(200)
		}
	})
}

// BenchmarkMeshRequest sends sequential keep-alive GETs through two
// in-process sidecars (outbound plaintext, mTLS between them) to a minimal
// raw HTTP/1.1 app, with a raw client, so allocations are the proxies'.
func BenchmarkMeshRequest(b *testing.B) {
	get := "GET /bench HTTP/1.1\r\nHost: server\r\nUser-Agent: bench\r\n\r\n"
	post := "POST /bench HTTP/1.1\r\nHost: server\r\nContent-Length: 5\r\n\r\nhello"
	for _, legacy := range []bool{false, true} {
		name := "fast"
		if legacy {
			name = "legacy"
		}
		b.Run(name, func(b *testing.B) { benchMesh(b, legacy, get) })
		b.Run(name+"-post", func(b *testing.B) { benchMesh(b, legacy, post) })
	}
}

func benchMesh(b *testing.B, legacy bool, request string) {
	ca := proxytest.NewCA(b, trustDomain)
	m := &mesh{ca: ca, allowed: []string{serverID}}
	m.appAddr = rawApp(b, "hello, mesh\n")
	m.client = newProxyOpts(b, Options{Identity: ca.Identity(b, clientID), Logger: testLogger(b), LegacyHTTP1: legacy})
	m.server = newProxyOpts(b, Options{Identity: ca.Identity(b, serverID), Logger: testLogger(b), LegacyHTTP1: legacy})
	m.inAddr, m.outAddr = proxytest.FreeAddr(b), proxytest.FreeAddr(b)
	if err := m.server.Update(m.serverSet(b)); err != nil {
		b.Fatal(err)
	}
	if err := m.client.Update(m.buildClientSet(b)); err != nil {
		b.Fatal(err)
	}
	conn, err := net.Dial("tcp", m.outAddr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 16<<10)
	req := []byte(request)
	roundTrip := func() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readRawResponse(br); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip() // warm up: dial both hops
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
}

// readRawResponse reads one response with a Content-Length body.
func readRawResponse(br *bufio.Reader) error {
	cl := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			break
		}
		if len(line) > 16 && equalFold(line[:15], "Content-Length:") {
			n, err := strconv.Atoi(string(bytes.TrimSpace(line[15:])))
			if err != nil {
				return err
			}
			cl = n
		}
	}
	if cl < 0 {
		return io.ErrUnexpectedEOF
	}
	_, err := br.Discard(cl)
	return err
}

// rawApp is a minimal keep-alive HTTP/1.1 server answering every request
// with body, so it allocates nothing per request.
func rawApp(tb testing.TB, body string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	res := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	done := make(chan struct{})
	conns := make(chan net.Conn, 64)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() {
				br := bufio.NewReader(c)
				for {
					cl := 0
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							_ = c.Close()
							return
						}
						if len(line) == 2 {
							break
						}
						if len(line) > 16 && equalFold(line[:15], "Content-Length:") {
							cl = int(line[16] - '0') // single-digit bodies only
						}
					}
					if _, err := br.Discard(cl); err != nil {
						_ = c.Close()
						return
					}
					if _, err := c.Write(res); err != nil {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		_ = ln.Close()
		<-done
		close(conns)
		for c := range conns {
			_ = c.Close()
		}
		time.Sleep(10 * time.Millisecond) // let the conn goroutines see the close
	})
	return ln.Addr().String()
}
