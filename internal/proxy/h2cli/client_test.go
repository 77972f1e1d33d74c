package h2cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// echoHandler answers with what it saw of the request.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Proto", r.Proto)
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Uri", r.RequestURI)
	w.Header().Set("X-Content-Length", fmt.Sprint(r.ContentLength))
	w.Header().Set("X-Te", strings.Join(r.Header.Values("Te"), ","))
	var hop []string
	for _, k := range []string{"Connection", "Keep-Alive", "X-Hop"} {
		hop = append(hop, r.Header.Values(k)...)
	}
	w.Header().Set("X-Conn", strings.Join(hop, ","))
	w.Header().Set("X-Cookie", r.Header.Get("Cookie"))
	w.Header().Set("X-Custom", strings.Join(r.Header.Values("X-Custom"), ","))
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "h2c"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, useTLS, echoHandler)
			p := newPool(t, Options{Dial: b.dial})
			ctx := testContext(t)
			cases := []struct {
				name, method, path string
				body               func() io.Reader
				wantBody           string
				wantCL             string
			}{
				{name: "get", method: "GET", path: "/a/b?q=1&r=%20", wantBody: "", wantCL: "0"},
				{name: "post bytes", method: "POST", path: "/p", body: func() io.Reader { return strings.NewReader("hello") }, wantBody: "hello", wantCL: "5"},
				{name: "post streamed", method: "POST", path: "/s", body: func() io.Reader { return io.MultiReader(strings.NewReader("str"), strings.NewReader("eamed")) }, wantBody: "streamed", wantCL: "-1"},
				{name: "put empty", method: "PUT", path: "/e", body: func() io.Reader { return bytes.NewReader(nil) }, wantBody: "", wantCL: "0"},
				{name: "head", method: "HEAD", path: "/h", wantCL: "0"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					var body io.Reader
					if tc.body != nil {
						body = tc.body()
					}
					req := mustRequest(t, ctx, tc.method, b.url(tc.path), body)
					if tc.name == "post streamed" {
						req.ContentLength = -1 // unknown length: copied by a goroutine
					}
					req.Host = "svc.example:8080"
					req.Header.Set("X-Custom", "v1")
					req.Header.Add("X-Custom", "v2")
					req.Header.Set("Connection", "keep-alive, x-hop")
					req.Header.Set("Keep-Alive", "timeout=5")
					req.Header.Set("X-Hop", "dropped")
					req.Header.Set("Te", "trailers")
					req.Header.Set("Cookie", "a=1; b=2")
					res, err := p.RoundTrip(req)
					if err != nil {
						t.Fatal(err)
					}
					got := string(readAll(t, res))
					want := map[string]string{
						"X-Proto": "HTTP/2.0", "X-Method": tc.method, "X-Host": "svc.example:8080", "X-Uri": tc.path,
						"X-Content-Length": tc.wantCL, "X-Te": "trailers", "X-Conn": "", "X-Cookie": "a=1; b=2", "X-Custom": "v1,v2",
					}
					gotH := map[string]string{}
					for k := range want {
						gotH[k] = res.Header.Get(k)
					}
					if diff := cmp.Diff(want, gotH); diff != "" {
						t.Errorf("what the server saw (-want +got):\n%s", diff)
					}
					if res.StatusCode != 200 || res.Proto != "HTTP/2.0" || got != tc.wantBody {
						t.Errorf("got %d %s %q, want 200 HTTP/2.0 %q", res.StatusCode, res.Proto, got, tc.wantBody)
					}
					if useTLS != (res.TLS != nil) {
						t.Errorf("res.TLS = %v, want set for TLS only", res.TLS)
					}
				})
			}
			if n := b.conns.Load(); n != 1 {
				t.Errorf("%d connections for sequential requests, want 1", n)
			}
		})
	}
}

// TestTrailers: response trailers, announced and not, are in res.Trailer
// at io.EOF; request trailers reach the server after the body.
func TestTrailers(t *testing.T) {
	b := newBackend(t, false, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("payload"))
		w.(http.Flusher).Flush()
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "ok")
		w.Header().Set(http.TrailerPrefix+"X-Req-Trailer", r.Trailer.Get("X-Checksum"))
	})
	p := newPool(t, Options{Dial: b.dial})
	for _, streamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("streamed=%t", streamed), func(t *testing.T) {
			var body io.Reader = strings.NewReader("request body")
			if streamed {
				pr, pw := io.Pipe()
				go func() {
					_, _ = pw.Write([]byte("request body"))
					_ = pw.Close()
				}()
				body = pr
			}
			req := mustRequest(t, testContext(t), "POST", b.url("/t"), body)
			req.Trailer = http.Header{"X-Checksum": nil}
			if streamed {
				req.ContentLength = -1
			}
			setTrailer := func() { req.Trailer.Set("X-Checksum", "abc") }
			setTrailer() // values are read after the body, here already final
			res, err := p.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := res.Trailer["Grpc-Status"]; !ok {
				t.Errorf("announced trailer missing before the body: %v", res.Trailer)
			}
			if got := string(readAll(t, res)); got != "payload" {
				t.Errorf("body %q", got)
			}
			want := http.Header{"Grpc-Status": {"0"}, "Grpc-Message": {"ok"}, "X-Req-Trailer": {"abc"}}
			if diff := cmp.Diff(want, res.Trailer); diff != "" {
				t.Errorf("trailers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFullDuplex: bidirectional streams (as gRPC's) run concurrently: each
// message is answered before the next is sent.
func TestFullDuplex(t *testing.T) {
	b := newBackend(t, true, func(w http.ResponseWriter, r *http.Request) {
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
	})
	p := newPool(t, Options{Dial: b.dial})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			pr, pw := io.Pipe()
			req := mustRequest(t, testContext(t), "POST", b.url("/bidi"), pr)
			res, err := p.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			buf := make([]byte, 64)
			for j := range 20 {
				msg := fmt.Sprintf("stream %d message %d", i, j)
				if _, err := pw.Write([]byte(msg)); err != nil {
					t.Error(err)
					return
				}
				n, err := io.ReadAtLeast(res.Body, buf, len(msg))
				if err != nil || string(buf[:n]) != strings.ToUpper(msg) {
					t.Errorf("echo %q, %v; want %q", buf[:n], err, strings.ToUpper(msg))
					return
				}
			}
			_ = pw.Close()
			if rest, err := io.ReadAll(res.Body); err != nil || len(rest) != 0 {
				t.Errorf("end of stream: %q, %v", rest, err)
			}
		})
	}
	wg.Wait()
	if n := b.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// TestLargeBodies: megabytes in both directions, across many windows
// (small receive windows on the client; net/http's on the server).
func TestLargeBodies(t *testing.T) {
	b := newBackend(t, false, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		w.Header().Set("X-Len", fmt.Sprint(n))
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 1024)
		for range 5 << 20 / len(chunk) {
			_, _ = w.Write(chunk)
		}
	})
	p := newPool(t, Options{Dial: b.dial, StreamWindow: 64 << 10, ConnWindow: 128 << 10})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			up := bytes.Repeat([]byte("upload-"), 3<<20/7)
			req := mustRequest(t, testContext(t), "POST", b.url("/big"), io.MultiReader(bytes.NewReader(up)))
			req.ContentLength = int64(len(up))
			res, err := p.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			got := readAll(t, res)
			if sum := fmt.Sprintf("%x", sha256.Sum256(up)); res.Header.Get("X-Sum") != sum {
				t.Errorf("server got %s bytes, sum %s; want %d, %s", res.Header.Get("X-Len"), res.Header.Get("X-Sum"), len(up), sum)
			}
			if len(got) != 5<<20 {
				t.Errorf("downloaded %d bytes, want %d", len(got), 5<<20)
			}
		})
	}
	wg.Wait()
}

// TestMaxConcurrentStreams: more concurrent requests than the server's
// SETTINGS_MAX_CONCURRENT_STREAMS open more connections; none is refused.
func TestMaxConcurrentStreams(t *testing.T) {
	release := make(chan struct{})
	var inFlight sync.Mutex
	n, most := 0, 0
	b := newBackendMaxStreams(t, 2, func(w http.ResponseWriter, r *http.Request) {
		inFlight.Lock()
		n++
		most = max(most, n)
		inFlight.Unlock()
		<-release
		inFlight.Lock()
		n--
		inFlight.Unlock()
	})
	p := newPool(t, Options{Dial: dialTCP})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			res, err := p.RoundTrip(mustRequest(t, testContext(t), "GET", "http://"+b.addr+"/", nil))
			if err != nil {
				errs <- err
				return
			}
			readAll(t, res)
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		inFlight.Lock()
		cur := n
		inFlight.Unlock()
		if cur == 10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	perConn := b.clients()
	if len(perConn) != 5 || most != 10 {
		t.Errorf("10 concurrent requests with 2 streams per connection: %d connections %v, %d at once; want 5 and 10", len(perConn), perConn, most)
	}
	for addr, k := range perConn {
		if k != 2 {
			t.Errorf("connection %s carried %d requests, want 2", addr, k)
		}
	}
}

// TestCancelWhileWaiting: a cancelled context ends RoundTrip with the
// context's error, and the server's handler sees its request cancelled.
func TestCancelWhileWaiting(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	b := newBackend(t, false, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		cancelled <- struct{}{}
	})
	p := newPool(t, Options{Dial: b.dial})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := p.RoundTrip(mustRequest(t, ctx, "GET", b.url("/"), nil))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip: %v, want context.Canceled", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the server's handler was not cancelled")
	}
}

// TestCancelWhileReading: cancelling while the body streams makes Read
// return the context's error.
func TestCancelWhileReading(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	b := newBackend(t, false, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		cancelled <- struct{}{}
	})
	p := newPool(t, Options{Dial: b.dial})
	ctx, cancel := context.WithCancel(context.Background())
	res, err := p.RoundTrip(mustRequest(t, ctx, "GET", b.url("/"), nil))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := res.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel: %v, want context.Canceled", err)
	}
	_ = res.Body.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the server's handler was not cancelled")
	}
}

// TestTrace: WroteHeaders, WroteRequest once the body is complete (the
// proxy's per-try timer starts there), first response byte, 1xx.
func TestTrace(t *testing.T) {
	b := newBackend(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Del("Link")
		_, _ = w.Write([]byte("done"))
	})
	p := newPool(t, Options{Dial: b.dial})
	var mu sync.Mutex
	var events []string
	add := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	trace := &httptrace.ClientTrace{
		WroteHeaders:         func() { add("headers") },
		WroteRequest:         func(i httptrace.WroteRequestInfo) { add(fmt.Sprintf("request err=%v", i.Err)) },
		GotFirstResponseByte: func() { add("first byte") },
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			add(fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		},
	}
	pr, pw := io.Pipe()
	ctx := httptrace.WithClientTrace(testContext(t), trace)
	done := make(chan *http.Response, 1)
	go func() {
		res, err := p.RoundTrip(mustRequest(t, ctx, "POST", b.url("/"), pr))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	before := strings.Join(events, "|")
	mu.Unlock()
	if strings.Contains(before, "request") {
		t.Errorf("WroteRequest before the body ended: %s", before)
	}
	_, _ = pw.Write([]byte("body"))
	_ = pw.Close()
	res := <-done
	if res == nil {
		return
	}
	readAll(t, res)
	var got string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		mu.Lock() // WroteRequest runs on the body's goroutine: wait for it
		got = strings.Join(events, "|")
		mu.Unlock()
		if strings.Contains(got, "request") {
			break
		}
	}
	// WroteHeaders races with the server's 103; the rest is ordered.
	got = strings.Replace(got, "headers|", "", 1)
	if want := "first byte|103 </style.css>; rel=preload|request err=<nil>"; got != want || !strings.Contains(before, "headers") {
		t.Errorf("trace events\n got %s (before the body: %s)\nwant %s, headers before the body", got, before, want)
	}
}
