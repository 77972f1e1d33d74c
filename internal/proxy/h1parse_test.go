package proxy

import (
	"strings"
	"testing"
)

// parseHead runs the fast path's head parsing on raw and returns the status
// code it would answer (0: accepted, -1: incomplete).
func parseHead(raw string, limit int) (*msgHead, int) {
	h := &msgHead{}
	buf := []byte(raw)
	for len(buf) >= 2 && buf[0] == '\r' && buf[1] == '\n' {
		buf = buf[2:]
	}
	scanned := 0
	n, err := headEnd(buf, &scanned, limit, limit)
	if err == errNeedMore {
		return h, -1
	}
	if err == nil {
		err = parseRequestHead(buf[:n], h)
	}
	if err != nil {
		he, ok := err.(*h1Error)
		if !ok {
			return h, 999
		}
		return h, he.code
	}
	return h, 0
}

func TestParseRequestHead(t *testing.T) {
	const get = "GET /a?b=c HTTP/1.1\r\nHost: x\r\n"
	long := strings.Repeat("a", 2000)
	tests := []struct {
		name  string
		raw   string
		limit int
		code  int
		check func(*msgHead) bool
	}{
		{"simple get", get + "\r\n", 0, 0, func(h *msgHead) bool {
			return string(h.method) == "GET" && string(h.path) == "/a" && h.contentLength == -1 && !h.close
		}},
		{"leading empty line", "\r\n" + get + "\r\n", 0, 0, nil},
		{"content-length", get + "Content-Length: 12\r\n\r\n", 0, 0, func(h *msgHead) bool { return h.contentLength == 12 }},
		{"repeated equal content-length", get + "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, 0, func(h *msgHead) bool { return h.contentLength == 5 }},
		{"chunked", get + "Transfer-Encoding: chunked\r\n\r\n", 0, 0, func(h *msgHead) bool { return h.chunked }},
		{"chunked mixed case, OWS", get + "transfer-encoding:  Chunked \r\n\r\n", 0, 0, func(h *msgHead) bool { return h.chunked }},
		{"connection close and listed header dropped", get + "Connection: close, X-Hop\r\nX-Hop: 1\r\n\r\n", 0, 0, func(h *msgHead) bool {
			return h.close && h.fields[1].drop && h.fields[2].drop
		}},
		{"upgrade", get + "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 0, 0, func(h *msgHead) bool { return h.upgrade }},
		{"upgrade header without connection token", get + "Upgrade: websocket\r\n\r\n", 0, 0, func(h *msgHead) bool { return !h.upgrade && h.fields[1].drop }},
		{"expect 100-continue", get + "Expect: 100-continue\r\nContent-Length: 1\r\n\r\n", 0, 0, func(h *msgHead) bool { return h.expect100 }},
		{"http/1.0 closes by default", "GET / HTTP/1.0\r\n\r\n", 0, 0, func(h *msgHead) bool { return h.close && !h.http11 }},
		{"obs-text in value", get + "X-A: caf\xc3\xa9\r\n\r\n", 0, 0, nil},
		{"incomplete", get, 0, -1, nil},

		{"CL and TE", get + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400, nil},
		{"TE and CL", get + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 0, 400, nil},
		{"TE repeated", get + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400, nil},
		{"TE list", get + "Transfer-Encoding: gzip, chunked\r\n\r\n", 0, 400, nil},
		{"TE chunked twice in list", get + "Transfer-Encoding: chunked, chunked\r\n\r\n", 0, 400, nil},
		{"TE obfuscated", get + "Transfer-Encoding: xchunked\r\n\r\n", 0, 400, nil},
		{"TE with vertical tab", get + "Transfer-Encoding: chunked\x0b\r\n\r\n", 0, 400, nil},
		{"TE identity", get + "Transfer-Encoding: identity\r\n\r\n", 0, 400, nil},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400, nil},
		{"CL non-digit", get + "Content-Length: 1a\r\n\r\n", 0, 400, nil},
		{"CL negative", get + "Content-Length: -1\r\n\r\n", 0, 400, nil},
		{"CL plus sign", get + "Content-Length: +1\r\n\r\n", 0, 400, nil},
		{"CL list", get + "Content-Length: 1, 1\r\n\r\n", 0, 400, nil},
		{"CL empty", get + "Content-Length: \r\n\r\n", 0, 400, nil},
		{"CL overflow", get + "Content-Length: 9999999999999999999\r\n\r\n", 0, 400, nil},
		{"CL differing", get + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, 400, nil},
		{"bare LF request line", "GET / HTTP/1.1\nHost: x\r\n\r\n", 0, 400, nil},
		{"bare LF header", get + "X-A: 1\n\r\n", 0, 400, nil},
		{"bare LF end", get + "\n", 0, 400, nil},
		{"bare CR in value", get + "X-A: 1\r2\r\n\r\n", 0, 400, nil},
		{"space before colon", get + "Content-Length : 1\r\n\r\n", 0, 400, nil},
		{"tab before colon", get + "Transfer-Encoding\t: chunked\r\n\r\n", 0, 400, nil},
		{"space in name", get + "X A: 1\r\n\r\n", 0, 400, nil},
		{"empty name", get + ": 1\r\n\r\n", 0, 400, nil},
		{"no colon", get + "X-A\r\n\r\n", 0, 400, nil},
		{"NUL in name", get + "X-\x00A: 1\r\n\r\n", 0, 400, nil},
		{"NUL in value", get + "X-A: 1\x002\r\n\r\n", 0, 400, nil},
		{"CTL in value", get + "X-A: 1\x012\r\n\r\n", 0, 400, nil},
		{"DEL in value", get + "X-A: 1\x7f\r\n\r\n", 0, 400, nil},
		{"obs-fold", get + "X-A: 1\r\n 2\r\n\r\n", 0, 400, nil},
		{"obs-fold tab", get + "X-A: 1\r\n\t2\r\n\r\n", 0, 400, nil},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 0, 400, nil},
		{"two hosts", get + "Host: y\r\n\r\n", 0, 400, nil},
		{"double space in request line", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400, nil},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400, nil},
		{"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400, nil},
		{"bad version", "GET / HTTQ/1.1\r\nHost: x\r\n\r\n", 0, 400, nil},
		{"trailing after version", "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 0, 400, nil},
		{"http/2.0 version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 0, 505, nil},
		{"request line too long", "GET /" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 1024, 414, nil},
		{"request line too long, incomplete", "GET /" + long, 1024, 414, nil},
		{"headers too large", get + "X-A: " + long + "\r\n\r\n", 1024, 431, nil},
		{"headers too large, incomplete", get + "X-A: " + long, 1024, 431, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.limit
			if limit == 0 {
				limit = maxHeaderBytes
			}
			h, code := parseHead(tt.raw, limit)
			if code != tt.code {
				t.Fatalf("code = %d, want %d", code, tt.code)
			}
			if tt.check != nil && !tt.check(h) {
				t.Errorf("parsed head %+v does not satisfy the check", h)
			}
		})
	}
}

func TestParseResponseHead(t *testing.T) {
	tests := []struct {
		raw  string
		ok   bool
		code int
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true, 200},
		{"HTTP/1.1 204\r\n\r\n", true, 204},
		{"HTTP/1.0 200 OK\r\n\r\n", true, 200},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0},
		{"HTTP/1.1 20 OK\r\n\r\n", false, 0},
		{"HTTP/2.0 200 OK\r\n\r\n", false, 0},
		{"HTTP/1.1 200 OK\r\nX : y\r\n\r\n", false, 0},
	}
	for _, tt := range tests {
		var h msgHead
		err := parseResponseHead([]byte(tt.raw), &h)
		if (err == nil) != tt.ok || (tt.ok && h.status != tt.code) {
			t.Errorf("%q: err %v status %d, want ok=%v %d", tt.raw, err, h.status, tt.ok, tt.code)
		}
	}
}

func TestHeaderValueJoinsRepeatedFields(t *testing.T) {
	h, code := parseHead("GET / HTTP/1.1\r\nHost: x\r\nX-Canary: a\r\nx-canary: b\r\n\r\n", maxHeaderBytes)
	if code != 0 {
		t.Fatalf("code %d", code)
	}
	if v, ok := h.headerValue("X-Canary"); !ok || string(v) != "a,b" {
		t.Errorf("headerValue = %q %v, want a,b", v, ok)
	}
	if _, ok := h.headerValue("X-Missing"); ok {
		t.Error("missing header present")
	}
}

func TestChunkSize(t *testing.T) {
	for line, want := range map[string]int64{"0": 0, "a": 10, "FF": 255, "10;ext=1": 16, "10 ;x": 16} {
		if n, ok := parseChunkSize([]byte(line)); !ok || n != want {
			t.Errorf("%q = %d %v, want %d", line, n, ok, want)
		}
	}
	for _, line := range []string{"", "x", ";a", "1x", "-1", "fffffffffffffffff", "1;\x00"} {
		if _, ok := parseChunkSize([]byte(line)); ok {
			t.Errorf("%q accepted", line)
		}
	}
}
