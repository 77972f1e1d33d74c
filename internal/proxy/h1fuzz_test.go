package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// FuzzParseRequestHead: the fast path's head parser must never panic, and
// whatever it accepts must have one unambiguous framing: never both
// Content-Length and chunked, every Content-Length field equal, exactly one
// Transfer-Encoding (chunked), no bare LF, no field name with whitespace,
// and, when net/http also accepts the head, the same body length reading.
func FuzzParseRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		scanned := 0
		n, err := headEnd(data, &scanned, 4096, 8192)
		if err != nil {
			return
		}
		var h msgHead
		if parseRequestHead(data[:n], &h) != nil {
			return
		}
		head := data[:n]
		if bytes.Contains(head, []byte("\n")) && bytes.Count(head, []byte("\n")) != bytes.Count(head, []byte("\r\n")) {
			t.Fatalf("accepted a head with bare LF: %q", head)
		}
		if h.chunked && h.contentLength >= 0 {
			t.Fatalf("accepted both Content-Length and chunked: %q", head)
		}
		te := 0
		for _, f := range h.fields {
			if bytes.ContainsAny(f.name, " \t\r\n\x00") {
				t.Fatalf("accepted field name %q", f.name)
			}
			switch {
			case equalFold(f.name, "Transfer-Encoding"):
				te++
			case equalFold(f.name, "Content-Length"):
				if n, ok := parseContentLength(f.value); !ok || n != h.contentLength {
					t.Fatalf("Content-Length %q disagrees with %d", f.value, h.contentLength)
				}
			}
		}
		if te > 1 || (te == 1) != h.chunked {
			t.Fatalf("Transfer-Encoding fields %d, chunked %v: %q", te, h.chunked, head)
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			return // net/http is stricter here; we are not looser in framing
		}
		chunked := len(req.TransferEncoding) > 0 && strings.EqualFold(req.TransferEncoding[0], "chunked")
		if chunked != h.chunked || (!chunked && req.ContentLength > 0 && req.ContentLength != h.contentLength) {
			t.Fatalf("framing differs from net/http: chunked %v/%v length %d/%d: %q",
				h.chunked, chunked, h.contentLength, req.ContentLength, head)
		}
	})
}
