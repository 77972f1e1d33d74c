package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// fastOnly skips a test of fast-path behaviour when the whole suite runs
// on the legacy path (TRELLIS_PROXY_LEGACY_HTTP1=1).
func fastOnly(t *testing.T) {
	t.Helper()
	if os.Getenv("TRELLIS_PROXY_LEGACY_HTTP1") == "1" {
		t.Skip("fast path behaviour; the suite runs on the legacy path")
	}
}

// rawConn dials addr for hand-written HTTP/1.1.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

func mustWrite(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(body)
}

func statsOf(p *Proxy) string {
	var sb strings.Builder
	p.WriteStats(&sb)
	return sb.String()
}

func waitStat(t *testing.T, p *Proxy, line string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(statsOf(p), line+"\n") {
		if time.Now().After(deadline) {
			t.Fatalf("stats lack %q:\n%s", line, statsOf(p))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bodyApp echoes request bodies and trailers and serves the special paths
// the fast-path tests need.
func bodyApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/trailers":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Trailer", "X-Sum")
			w.WriteHeader(http.StatusOK)
			fmt.Fprintf(w, "got %s te=%v trailer=%s", body, r.TransferEncoding, r.Trailer.Get("X-Req-Trailer"))
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "42")
		case "/echo":
			w.Header().Set("Content-Type", "application/octet-stream")
			buf := make([]byte, 32<<10)
			for {
				n, err := r.Body.Read(buf)
				if n > 0 {
					_, _ = w.Write(buf[:n])
					w.(http.Flusher).Flush()
				}
				if err != nil {
					return
				}
			}
		case "/sum":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/big":
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for range 64 {
				_, _ = w.Write(chunk)
			}
		case "/nobody":
			w.WriteHeader(http.StatusNoContent)
		case "/notmod":
			w.WriteHeader(http.StatusNotModified)
		default:
			fmt.Fprintf(w, "path=%s", r.URL.Path)
		}
	})
}

func TestFastChunkedBodiesWithTrailers(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, bodyApp(), false)
	c, br := rawConn(t, m.outAddr)
	mustWrite(t, c, "POST /trailers HTTP/1.1\r\nHost: server\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req-Trailer\r\n\r\n"+
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Req-Trailer: yes\r\n\r\n")
	res, body := readResponse(t, br, "POST")
	if res.StatusCode != 200 || body != "got hello world te=[chunked] trailer=yes" {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
	if got := res.Trailer.Get("X-Sum"); got != "42" {
		t.Errorf("response trailer X-Sum = %q, want 42 (transfer encoding %v)", got, res.TransferEncoding)
	}
}

func TestFastLargeBodiesStream(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, bodyApp(), false)
	c := httpClient(t)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 512<<10) // 8 MiB
	res, err := c.Post(m.url("/sum"), "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := fmt.Sprintf("%d %x", len(payload), sha256.Sum256(payload)); string(body) != want {
		t.Fatalf("app saw %q, want %q", body, want)
	}
	res, err = c.Get(m.url("/big"))
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil || n != 4<<20 {
		t.Fatalf("big response: %d bytes, %v", n, err)
	}
}

// The fast path streams bodies: the app sees the start of the request body
// before the caller sends the rest, and the caller sees the start of the
// response before the app writes the rest. (Request and response are not
// full duplex: the response is read once the request body is complete.)
func TestFastBodiesStreamWithoutBuffering(t *testing.T) {
	fastOnly(t)
	gotFirst, sendRest := make(chan struct{}), make(chan struct{})
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return
		}
		close(gotFirst)
		rest, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s|", rest)
		w.(http.Flusher).Flush()
		<-sendRest
		_, _ = io.WriteString(w, "end")
	})
	m := newMesh(t, app, false)
	c, br := rawConn(t, m.outAddr)
	mustWrite(t, c, "POST /stream HTTP/1.1\r\nHost: server\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhead\r\n")
	select {
	case <-gotFirst:
	case <-time.After(10 * time.Second):
		t.Fatal("the app did not get the first chunk before the body was complete")
	}
	mustWrite(t, c, "4\r\ntail\r\n0\r\n\r\n")
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("response: %v", err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(res.Body, buf); err != nil || string(buf) != "tail|" {
		t.Fatalf("first part %q %v", buf, err)
	}
	close(sendRest)
	if rest, _ := io.ReadAll(res.Body); string(rest) != "end" {
		t.Fatalf("rest %q", rest)
	}
}

func TestFastPipelinedAndNoBodyResponses(t *testing.T) {
	fastOnly(t)
	m := newMesh(t, bodyApp(), false)
	c, br := rawConn(t, m.outAddr)
	mustWrite(t, c, "GET /one HTTP/1.1\r\nHost: server\r\n\r\n"+
		"HEAD /two HTTP/1.1\r\nHost: server\r\n\r\n"+
		"GET /nobody HTTP/1.1\r\nHost: server\r\n\r\n"+
		"GET /notmod HTTP/1.1\r\nHost: server\r\n\r\n"+
		"POST /three HTTP/1.1\r\nHost: server\r\nContent-Length: 3\r\n\r\nabc")
	for _, want := range []struct {
		method, body string
		code         int
	}{{"GET", "path=/one", 200}, {"HEAD", "", 200}, {"GET", "", 204}, {"GET", "", 304}, {"POST", "path=/three", 200}} {
		res, body := readResponse(t, br, want.method)
		if res.StatusCode != want.code || body != want.body {
			t.Fatalf("got %d %q, want %d %q", res.StatusCode, body, want.code, want.body)
		}
	}
}
