package h2srv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// requestView is what a handler saw of its request.
type requestView struct {
	Proto, Method, Host, Path, RawQuery, RequestURI string
	ContentLength                                   int64
	TLS, NoBody, ServerCtx                          bool
	Header                                          http.Header
}

func TestRequestAndResponse(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2c", true: "tls"}[useTLS], func(t *testing.T) {
			seen := make(chan requestView, 1)
			ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- requestView{
					Proto: r.Proto, Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
					RequestURI: r.RequestURI, ContentLength: r.ContentLength, TLS: r.TLS != nil,
					NoBody: r.Body == http.NoBody, ServerCtx: r.Context().Value(http.ServerContextKey) != nil,
					Header: r.Header.Clone(),
				}
				w.Header().Set("X-Answer", "42")
				_, _ = io.WriteString(w, "hello")
			}), useTLS)
			req, _ := http.NewRequest("GET", ts.url("/a/b?x=1"), nil)
			req.Header.Add("Cookie", "a=1")
			req.Header.Add("Cookie", "b=2")
			req.Header.Set("X-Custom", "v")
			res, err := ts.client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode != 200 || string(body) != "hello" || res.Header.Get("X-Answer") != "42" ||
				res.ContentLength != 5 || res.Header.Get("Date") == "" || res.Header.Get("Content-Type") != "" {
				t.Errorf("response %d %q %v (content-length %d)", res.StatusCode, body, res.Header, res.ContentLength)
			}
			got := <-seen
			want := requestView{
				Proto: "HTTP/2.0", Method: "GET", Host: ts.addr, Path: "/a/b", RawQuery: "x=1", RequestURI: "/a/b?x=1",
				ContentLength: 0, TLS: useTLS, NoBody: true, ServerCtx: true,
			}
			if got.Header.Get("Cookie") != "a=1; b=2" || got.Header.Get("X-Custom") != "v" {
				t.Errorf("header %v", got.Header)
			}
			got.Header = nil
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStreamingBothWays: the handler echoes each request chunk as it
// arrives and flushes; the client sees every echo before sending the next.
func TestStreamingBothWays(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != -1 {
			t.Errorf("ContentLength %d, want -1", r.ContentLength)
		}
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				_, _ = w.Write(bytes.ToUpper(buf[:n]))
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	}), false)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", ts.url("/echo"), pr)
	res, err := ts.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, 64)
	for i := range 5 {
		msg := fmt.Sprintf("chunk-%d", i)
		if _, err := io.WriteString(pw, msg); err != nil {
			t.Fatal(err)
		}
		n, err := io.ReadAtLeast(res.Body, buf, len(msg))
		if err != nil || string(buf[:n]) != strings.ToUpper(msg) {
			t.Fatalf("echo %d: %q %v", i, buf[:n], err)
		}
	}
	_ = pw.Close()
	if rest, err := io.ReadAll(res.Body); err != nil || len(rest) != 0 {
		t.Fatalf("after the end: %q %v", rest, err)
	}
}

func TestTrailersBothWays(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Trailer["X-Req-Trailer"]; !ok {
			t.Errorf("request trailer not declared: %v", r.Trailer)
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Declared")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(b)
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Undeclared", "u")
		w.Header().Set("X-Echo-Trailer", r.Trailer.Get("X-Req-Trailer"))
	}), false)
	req, _ := http.NewRequest("POST", ts.url("/t"), io.NopCloser(strings.NewReader("body")))
	req.Trailer = http.Header{"X-Req-Trailer": nil}
	req.ContentLength = -1
	req.Trailer.Set("X-Req-Trailer", "rt")
	res, err := ts.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if string(b) != "body" {
		t.Errorf("body %q", b)
	}
	want := http.Header{"X-Declared": {"d"}, "X-Undeclared": {"u"}}
	if diff := cmp.Diff(want, res.Trailer); diff != "" {
		t.Errorf("trailers (-want +got):\n%s", diff)
	}
	if res.Header.Get("X-Echo-Trailer") != "" {
		// set after the headers went out with the body: not sent
		t.Errorf("a header set after the body was sent: %v", res.Header)
	}
}

// TestTrailersOnly: a handler that writes no body answers with one HEADERS
// frame carrying END_STREAM (gRPC trailers-only).
func TestTrailersOnly(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "14")
		w.Header().Set("Grpc-Message", "unavailable")
		w.WriteHeader(200)
	}), false)
	c := dialRaw(t, ts)
	if err := c.headers(1, true, c.block("POST", "/svc/M")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		f, ok := c.next(5*time.Second, func(f http2Frame) bool { return isStreamFrame(f, 1) })
		if !ok {
			t.Fatalf("frames of stream 1: %v", got)
		}
		got = append(got, describe(f))
		if streamEnded(f) {
			break
		}
	}
	if len(got) != 1 || !strings.Contains(got[0], "grpc-status=14") || !strings.Contains(got[0], "END_STREAM") {
		t.Fatalf("frames %v, want one HEADERS with grpc-status and END_STREAM", got)
	}
}

func TestInformational(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "final")
	}), false)
	var early []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		early = append(early, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", ts.url("/"), nil)
	res, err := ts.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	want := []string{"103 </style.css>; rel=preload", "103 </style.css>; rel=preload"}
	if diff := cmp.Diff(want, early); diff != "" || string(b) != "final" || res.Header.Get("Link") != "" {
		t.Errorf("1xx (-want +got):\n%s\nfinal %q %v", diff, b, res.Header)
	}
}

// TestLargeBodies moves bodies many times the windows both ways.
func TestLargeBodies(t *testing.T) {
	const size = 8 << 20
	ts := startServer(t, Config{InitialWindowSize: 64 << 10, ConnWindowSize: 128 << 10}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil || n != size {
			t.Errorf("request body: %d %v", n, err)
		}
		w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		_, _ = io.Copy(w, io.LimitReader(&pattern{}, size))
	}), true)
	body := io.LimitReader(&pattern{}, size)
	res, err := ts.client(t).Post(ts.url("/big"), "application/octet-stream", body)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, res.Body)
	_ = res.Body.Close()
	want := sha256.New()
	_, _ = io.Copy(want, io.LimitReader(&pattern{}, size))
	sum := fmt.Sprintf("%x", want.Sum(nil))
	if err != nil || n != size || fmt.Sprintf("%x", h.Sum(nil)) != sum || res.Header.Get("X-Sum") != sum {
		t.Fatalf("response %d bytes, %v; sums %x / %s, want %s", n, err, h.Sum(nil), res.Header.Get("X-Sum"), sum)
	}
}

// pattern is an endless deterministic byte stream.
type pattern struct{ off int }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(p.off*7 + p.off>>8)
		p.off++
	}
	return len(b), nil
}

// TestLargeResponseHeaders: a header block larger than a frame is split
// into HEADERS and CONTINUATION frames.
func TestLargeResponseHeaders(t *testing.T) {
	big := strings.Repeat("v", 40<<10)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", big)
		w.Header().Set("Trailer", "X-Big-Trailer")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Big-Trailer", big)
	}), false)
	res, err := ts.client(t).Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.Header.Get("X-Big") != big || string(b) != "body" || res.Trailer.Get("X-Big-Trailer") != big {
		t.Fatalf("header %d bytes, body %q, trailer %d bytes", len(res.Header.Get("X-Big")), b, len(res.Trailer.Get("X-Big-Trailer")))
	}
}
