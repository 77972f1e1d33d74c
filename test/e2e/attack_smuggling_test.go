package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// smuggleCase is one request the sidecar must read exactly as the app
// would, or refuse. req is the raw request; "{path}" is replaced by a path
// unique to the case and port, so the sink can tell whether it arrived.
type smuggleCase struct {
	name string
	req  string
	// want is the proxy's answer: 400 (or 505) for a refused head, which
	// must close the connection with nothing reaching the app; 200 for a
	// legal request the app must receive with body wantBody.
	want     int
	wantBody string
	// inBody: the defect is in the chunked body, after a valid head the
	// proxy has already forwarded (as Envoy does). The app may see the
	// request start, but never a complete body, and the answer is 400.
	inBody bool
}

const chunkedHead = "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: chunked\r\n\r\n"

// smuggleCases follow RFC 9112 (message syntax, 6.1 Transfer-Encoding,
// 6.3 message body length, 7.1 chunked coding) and the request smuggling
// literature: anything two parsers could read differently is a 400.
var smuggleCases = []smuggleCase{
	// Content-Length and Transfer-Encoding together (CL.TE / TE.CL).
	{name: "CL then TE", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"},
	{name: "TE then CL", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"},
	{name: "CL 0 and TE", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	// Obfuscated Transfer-Encoding (TE.TE).
	{name: "TE chunked, identity", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
	{name: "TE identity, chunked", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"},
	{name: "TE xchunked", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
	{name: "TE chunkedx", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n"},
	{name: "TE chunked twice", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{name: "TE chunked then TE x", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n"},
	{name: "TE chunked with vertical tab", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n"},
	{name: "TE quoted", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n"},
	{name: "TE space before colon", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
	{name: "TE tab before colon", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n"},
	{name: "TE folded onto a previous line", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{name: "TE value on a folded line", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
	{name: "TE on HTTP/1.0", want: 400, req: "POST {path} HTTP/1.0\r\nHost: sink\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	// Content-Length that is not exactly 1*DIGIT, or two that disagree.
	{name: "two different CL", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
	{name: "CL list", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: 5, 6\r\n\r\nhello!"},
	{name: "CL +5", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: +5\r\n\r\nhello"},
	{name: "CL 0x10", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: 0x10\r\n\r\n0123456789abcdef"},
	{name: "CL -1", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: -1\r\n\r\n"},
	{name: "CL with inner space", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: 1 0\r\n\r\n0123456789"},
	{name: "CL overflow", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: 99999999999999999999999\r\n\r\n"},
	{name: "CL empty", want: 400, req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: \r\n\r\n"},
	// Field syntax.
	{name: "space before colon", want: 400, req: "GET {path} HTTP/1.1\r\nHost : sink\r\n\r\n"},
	{name: "obs-fold continuation", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX-A: a\r\n b\r\n\r\n"},
	{name: "obs-fold with tab", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX-A: a\r\n\tb\r\n\r\n"},
	{name: "NUL in header value", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX-A: a\x00b\r\n\r\n"},
	{name: "CR in header value", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX-A: a\rb\r\n\r\n"},
	{name: "DEL in header value", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX-A: a\x7fb\r\n\r\n"},
	{name: "bare LF ending a header line", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX-A: a\nX-B: b\r\n\r\n"},
	{name: "bare LF ending the head", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\n\n"},
	{name: "bare LF ending the request line", want: 400, req: "GET {path} HTTP/1.1\nHost: sink\r\n\r\n"},
	{name: "bracket in header name", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX[A]: a\r\n\r\n"},
	{name: "space in header name", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX A: a\r\n\r\n"},
	{name: "NUL in header name", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX\x00A: a\r\n\r\n"},
	{name: "non-ASCII header name", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX-\xc3\xa4: a\r\n\r\n"},
	{name: "empty header name", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\n: a\r\n\r\n"},
	{name: "line without colon", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nX-A a\r\n\r\n"},
	{name: "two Host headers", want: 400, req: "GET {path} HTTP/1.1\r\nHost: sink\r\nHost: evil\r\n\r\n"},
	{name: "no Host on HTTP/1.1", want: 400, req: "GET {path} HTTP/1.1\r\nX-A: a\r\n\r\n"},
	// Request line.
	{name: "NUL in method", want: 400, req: "G\x00ET {path} HTTP/1.1\r\nHost: sink\r\n\r\n"},
	{name: "double space in request line", want: 400, req: "GET  {path} HTTP/1.1\r\nHost: sink\r\n\r\n"},
	{name: "tab in request line", want: 400, req: "GET\t{path} HTTP/1.1\r\nHost: sink\r\n\r\n"},
	{name: "lowercase version", want: 400, req: "GET {path} http/1.1\r\nHost: sink\r\n\r\n"},
	{name: "HTTP/1.2", want: 505, req: "GET {path} HTTP/1.2\r\nHost: sink\r\n\r\n"},
	// Chunked body framing: the head is valid and already forwarded.
	{name: "bare LF after chunk size", inBody: true, want: 400, req: chunkedHead + "5\nhello\r\n0\r\n\r\n"},
	{name: "bare LF after chunk data", inBody: true, want: 400, req: chunkedHead + "5\r\nhello\n0\r\n\r\n"},
	{name: "NUL in chunk extension", inBody: true, want: 400, req: chunkedHead + "5;a=\x00\r\nhello\r\n0\r\n\r\n"},
	{name: "CR in chunk extension", inBody: true, want: 400, req: chunkedHead + "5;a=\rb\r\nhello\r\n0\r\n\r\n"},
	{name: "chunk size 0x5", inBody: true, want: 400, req: chunkedHead + "0x5\r\nhello\r\n0\r\n\r\n"},
	{name: "negative chunk size", inBody: true, want: 400, req: chunkedHead + "-5\r\nhello\r\n0\r\n\r\n"},
	{name: "chunk size overflow", inBody: true, want: 400, req: chunkedHead + "1000000000000000000005\r\nhello\r\n0\r\n\r\n"},
	{name: "chunk data longer than its size", inBody: true, want: 400, req: chunkedHead + "5\r\nhelloSMUGGLED\r\n0\r\n\r\n"},
	{name: "NUL in trailer", inBody: true, want: 400, req: chunkedHead + "5\r\nhello\r\n0\r\nX-T: a\x00\r\n\r\n"},
	// Legal forms, read the same way by the proxy and the app.
	{name: "TE Chunked (case-insensitive)", want: 200, wantBody: "hello", req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{name: "TE with surrounding whitespace", want: 200, wantBody: "hello", req: "POST {path} HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: \t chunked \t\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{name: "chunk extension", want: 200, wantBody: "hello", req: chunkedHead + "5;name=value\r\nhello\r\n0\r\n\r\n"},
	{name: "two equal CL", want: 200, wantBody: "hello", req: "POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
	{name: "body that looks like a request (CL)", want: 200, wantBody: followUp,
		req: fmt.Sprintf("POST {path} HTTP/1.1\r\nHost: sink\r\nContent-Length: %d\r\n\r\n%s", len(followUp), followUp)},
	{name: "body that looks like a request (chunked)", want: 200, wantBody: "0\r\n\r\n" + followUp,
		req: chunkedHead + fmt.Sprintf("%x\r\n0\r\n\r\n%s\r\n0\r\n\r\n", len(followUp)+5, followUp)},
}

// followUp is a second request sent in the same write as every case: it
// must never reach the app behind a refused one (the connection closes),
// and behind a legal one it is an ordinary pipelined request.
const followUp = "GET /smuggled HTTP/1.1\r\nHost: sink\r\n\r\n"

// testSmuggling runs every case at the client sidecar's outbound port and
// at the sink sidecar's inbound port (mTLS with a genuine mesh certificate).
func testSmuggling(t *testing.T, am *attackMesh) {
	ports := []struct {
		name string
		dial func(t *testing.T) net.Conn
	}{
		{"outbound", func(t *testing.T) net.Conn { return am.dialOutbound(t) }},
		{"inbound", func(t *testing.T) net.Conn { return am.dialInbound(t, am.ca.peer(t, clientID), "http/1.1") }},
	}
	for _, port := range ports {
		t.Run(port.name, func(t *testing.T) {
			for i, tc := range smuggleCases {
				t.Run(tc.name, func(t *testing.T) {
					path := fmt.Sprintf("/smuggle/%s/%d", port.name, i)
					checkSmuggle(t, am, port.dial(t), path, tc)
				})
			}
			t.Run("pipelined requests are served in order (control)", func(t *testing.T) {
				c := port.dial(t)
				payload := "GET /pipe/1 HTTP/1.1\r\nHost: sink\r\n\r\nGET /pipe/2 HTTP/1.1\r\nHost: sink\r\n\r\n"
				before1, before2 := am.sink.seen("/pipe/1"), am.sink.seen("/pipe/2")
				if _, err := c.Write([]byte(payload)); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				for i := 1; i <= 2; i++ {
					r := readReply(c, br, 5*time.Second, 0)
					if got, _ := am.sink.lastFor(fmt.Sprintf("/pipe/%d", i)); r.status != 200 || !strings.Contains(r.body, got.Path) {
						t.Fatalf("pipelined request %d: %v", i, r)
					}
				}
				if am.sink.seen("/pipe/1") != before1+1 || am.sink.seen("/pipe/2") != before2+1 {
					t.Fatalf("the app saw /pipe/1 %d and /pipe/2 %d times, want once each",
						am.sink.seen("/pipe/1")-before1, am.sink.seen("/pipe/2")-before2)
				}
			})
			am.legitGet(t, "/after-smuggling")
		})
	}
}

func checkSmuggle(t *testing.T, am *attackMesh, c net.Conn, path string, tc smuggleCase) {
	t.Helper()
	started, completed := am.sink.started.Load(), am.sink.completed.Load()
	smuggled := am.sink.seen("/smuggled")
	req := strings.ReplaceAll(tc.req, "{path}", path)
	reply := exchange(c, []byte(req+followUp), 5*time.Second, 2*time.Second)
	switch {
	case tc.want == http.StatusOK:
		if reply.status != http.StatusOK {
			t.Fatalf("legal request refused: %v", reply)
		}
		got, _ := am.sink.lastFor(path)
		if am.sink.seen(path) != 1 || got.BodyLen != int64(len(tc.wantBody)) || got.BodyHead != tc.wantBody || got.BodyErr != "" {
			t.Fatalf("the app saw %d requests, body %q (err %q), want one with body %q", am.sink.seen(path), got.BodyHead, got.BodyErr, tc.wantBody)
		}
		// The follow-up is a genuine pipelined request here: served once.
		eventually(t, 2*time.Second, "pipelined follow-up served", func() error {
			if n := am.sink.seen("/smuggled") - smuggled; n != 1 {
				return fmt.Errorf("/smuggled seen %d times", n)
			}
			return nil
		})
		return
	case reply.status != tc.want:
		t.Errorf("answer: %v, want %d", reply, tc.want)
	case !reply.closed:
		t.Errorf("answer %d, but the connection stayed open", reply.status)
	}
	if !reply.closed {
		t.Errorf("connection not closed after the refusal")
	}
	if n := am.sink.seen("/smuggled") - smuggled; n != 0 {
		t.Errorf("the request behind the refused one reached the app %d times", n)
	}
	if tc.inBody {
		if n := am.sink.completed.Load() - completed; n != 0 {
			t.Errorf("the app received %d complete requests", n)
		}
		if got, ok := am.sink.lastFor(path); ok && got.BodyErr == "" {
			t.Errorf("the app read the malformed body to its end: %+v", got)
		}
		return
	}
	if n := am.sink.started.Load() - started; n != 0 {
		t.Errorf("%d requests reached the app", n)
	}
}
