package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// The net/http counterparts of BenchmarkParseRequestHead and
// BenchmarkForwardHead: what the legacy path does per request head (server
// parse; ReverseProxy's clone, hop-by-hop removal and XFCC; transport write).

func BenchmarkParseRequestHeadNetHTTP(b *testing.B) {
	raw := []byte(benchRequest)
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		rd.Reset(raw)
		br.Reset(rd)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkForwardHeadNetHTTP(b *testing.B) {
	raw := []byte(benchRequest)
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	bw := bufio.NewWriterSize(io.Discard, writeBufSize)
	hop := []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(raw)
		br.Reset(rd)
		in, err := http.ReadRequest(br)
		if err != nil {
			b.Fatal(err)
		}
		out := in.Clone(in.Context())
		for _, h := range hop {
			out.Header.Del(h)
		}
		out.Header.Del(headerXFCC)
		out.Header.Set(headerXFCC, "By=spiffe://a;URI=spiffe://b")
		out.URL.Scheme, out.URL.Host = "http", "127.0.0.1:8080"
		if err := out.Write(bw); err != nil {
			b.Fatal(err)
		}
	}
}
