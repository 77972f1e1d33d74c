package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// bigBody is the size of the bodies sent against the buffering features
// (retries keep up to 64 KiB of a body to resend it, mirrors copy up to
// 64 KiB).
const bigBody = 50 << 20

// patternReader yields left bytes of "abc...z" repeated, without holding
// them.
type patternReader struct{ left, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.left)
	for i := range p[:n] {
		p[i] = 'a' + byte((r.off+int64(i))%26)
	}
	r.left -= n
	r.off += n
	return int(n), nil
}

// rssWatch samples a process's RSS until stopped and reports the peak.
type rssWatch struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func watchRSS(t testing.TB, pid int) *rssWatch {
	w := &rssWatch{stop: make(chan struct{}), done: make(chan struct{})}
	w.peak.Store(readProcUsage(t, pid).rss)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			if u := readProcUsage(t, pid); u.rss > w.peak.Load() {
				w.peak.Store(u.rss)
			}
		}
	}()
	return w
}

func (w *rssWatch) end() int64 {
	close(w.stop)
	<-w.done
	return w.peak.Load()
}

// testOversizedBodies sends 50 MiB bodies through routes with a buffering
// feature, on both proxy paths: the request streams (a body beyond the
// retry buffer makes it not retriable instead of being held), both
// sidecars' memory stays flat, and the app receives every byte.
func testOversizedBodies(t *testing.T, am *attackMesh) {
	h1 := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	h2c := &http.Client{Timeout: 60 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}}
	cases := []struct {
		name    string
		client  *http.Client
		path    string
		chunked bool
	}{
		{"retry route, Content-Length", h1, "/retry/cl", false},
		{"retry route, chunked", h1, "/retry/chunked", true},
		{"mirror route, Content-Length", h1, "/mirror/cl", false},
		{"retry route, HTTP/2 (handler path)", h2c, "/retry/h2", false},
		{"mirror route, HTTP/2 (handler path)", h2c, "/mirror/h2", false},
	}
	client := am.workload("client-v1")
	clientPID, sinkPID := sidecarPID(t, "client-v1"), sidecarPID(t, "sink-v1")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tooLarge := "cluster.outbound|8000||sink.retries_body_too_large"
			tooLargeBefore := sidecarStat(t, client.Admin, tooLarge)
			cw, sw := watchRSS(t, clientPID), watchRSS(t, sinkPID)
			baseC, baseS := cw.peak.Load(), sw.peak.Load()
			req, err := http.NewRequest(http.MethodPost, "http://"+am.clientOut+tc.path, &patternReader{left: bigBody})
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = bigBody
			if tc.chunked {
				req.ContentLength = -1
			}
			begin := time.Now()
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatalf("POST %d bytes: %v", bigBody, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			peakC, peakS := cw.end(), sw.end()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST: %d %q %q", resp.StatusCode, resp.Header.Get("X-Trellis-Reason"), body)
			}
			var got sinkRequest
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("answer: %v: %q", err, body)
			}
			t.Logf("%s: %d MiB in %v; sidecar RSS peak +%d KiB (client), +%d KiB (sink); retries_body_too_large +%d",
				tc.name, got.BodyLen>>20, time.Since(begin).Round(time.Millisecond), (peakC-baseC)>>10, (peakS-baseS)>>10,
				sidecarStat(t, client.Admin, tooLarge)-tooLargeBefore)
			if got.BodyLen != bigBody || got.BodyErr != "" {
				t.Errorf("the app received %d bytes (error %q), want %d", got.BodyLen, got.BodyErr, bigBody)
			}
			if want := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 40)[:1<<10]; got.BodyHead != want {
				t.Errorf("the body arrived altered: %q...", got.BodyHead[:min(len(got.BodyHead), 40)])
			}
			for who, grew := range map[string]int64{"client": peakC - baseC, "sink": peakS - baseS} {
				if grew > 10<<20 && resourceBounds(t) {
					t.Errorf("%s sidecar RSS grew by %d MiB while the body passed", who, grew>>20)
				}
			}
			if strings.HasPrefix(tc.path, "/mirror/") {
				// A mirror copies bodies up to 64 KiB: this one is not
				// copied (the shadow request would reach the same app).
				time.Sleep(300 * time.Millisecond)
				if n := am.sink.seen(tc.path); n != 1 {
					t.Errorf("the app saw %s %d times: the 50 MiB body was mirrored", tc.path, n)
				}
			}
			if strings.HasPrefix(tc.path, "/retry/") && tc.client == h1 {
				if n := sidecarStat(t, client.Admin, tooLarge) - tooLargeBefore; n != 1 {
					t.Errorf("retries_body_too_large grew by %d, want 1 (the request was not made retriable)", n)
				}
			}
		})
	}
	am.legitGet(t, "/after-bodies")
	t.Run("against a buffering feature", func(t *testing.T) { testBufferedBodies(t, am) })
}

// testBufferedBodies applies examples/security/buffer-limit.yaml (its
// selector retargeted from httpbin to the attack mesh's workloads): the
// sink's sidecar reads each request body whole, at most 1 MiB. 50 MiB
// bodies, with a Content-Length or chunked, through the client's sidecar
// and from a mesh peer over h2 straight at the inbound port (the net/http
// path), get a 413 quickly, the app sees none of them and the sink
// sidecar's memory stays flat; a 512 KiB body arrives whole with a
// Content-Length, whatever its framing. The EnvoyFilter is removed at the
// end.
func testBufferedBodies(t *testing.T, am *attackMesh) {
	const name = "httpbin-buffer-limit"
	doc := mustRead(t, "examples/security/buffer-limit.yaml")
	if !strings.Contains(doc, "app: httpbin") {
		t.Fatal("the example no longer selects app: httpbin")
	}
	_, errOut := applyYAML(t, am.mesh, "buffer-limit.yaml", strings.Replace(doc, "app: httpbin", "version: v1", 1))
	if strings.Contains(errOut, "not implemented") {
		t.Errorf("apply warns: %s", errOut)
	}
	defer func() {
		deleteConfig(t, am.mesh, "envoyfilter", name)
		time.Sleep(300 * time.Millisecond) // past the control plane's debounce
		am.waitMeshReady(t)
		am.legitGet(t, "/after-buffering")
	}()
	time.Sleep(300 * time.Millisecond)
	am.waitMeshReady(t)

	peerTLS := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{am.ca.peer(t, "spiffe://cluster.local/ns/default/sa/peer")},
		InsecureSkipVerify: true, VerifyConnection: am.ca.verifyServer(sinkID), NextProtos: []string{"h2"}}
	h1 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	h2 := &http.Client{Timeout: 30 * time.Second, Transport: &http2.Transport{TLSClientConfig: peerTLS}}
	sink := am.workload("sink-v1")
	sinkPID := sidecarPID(t, "sink-v1")
	tooLarge := "listener.inbound|8000.downstream_rq_too_large"
	cases := []struct {
		name    string
		client  *http.Client
		url     string
		size    int64
		chunked bool
		want    int
	}{
		{"50 MiB with a Content-Length", h1, "http://" + am.clientOut + "/buffered/cl", bigBody, false, http.StatusRequestEntityTooLarge},
		{"50 MiB chunked", h1, "http://" + am.clientOut + "/buffered/chunked", bigBody, true, http.StatusRequestEntityTooLarge},
		{"50 MiB over h2 from a mesh peer, no content-length", h2, "https://" + am.sinkInbound + "/buffered/h2", bigBody, true, http.StatusRequestEntityTooLarge},
		{"512 KiB with a Content-Length", h1, "http://" + am.clientOut + "/buffered/small-cl", 512 << 10, false, http.StatusOK},
		{"512 KiB chunked", h1, "http://" + am.clientOut + "/buffered/small-chunked", 512 << 10, true, http.StatusOK},
		{"512 KiB over h2 from a mesh peer, no content-length", h2, "https://" + am.sinkInbound + "/buffered/small-h2", 512 << 10, true, http.StatusOK},
	}
	refused := sidecarStat(t, sink.Admin, tooLarge)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.url[strings.Index(tc.url, "/buffered/"):]
			started := am.sink.started.Load()
			rss := watchRSS(t, sinkPID)
			base := rss.peak.Load()
			req, err := http.NewRequest(http.MethodPost, tc.url, &patternReader{left: tc.size})
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = tc.size
			if tc.chunked {
				req.ContentLength = -1
			}
			begin := time.Now()
			resp, err := tc.client.Do(req)
			if err != nil {
				rss.end()
				t.Fatalf("POST %d bytes: %v", tc.size, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(begin)
			grew := rss.end() - base
			t.Logf("%s: %d in %v; sink sidecar RSS peak +%d KiB", tc.name, resp.StatusCode, took.Round(time.Millisecond), grew>>10)
			if resp.StatusCode != tc.want {
				t.Fatalf("POST %d bytes: %d %q %q, want %d", tc.size, resp.StatusCode, resp.Header.Get("X-Trellis-Reason"), body, tc.want)
			}
			if grew > 6<<20 && resourceBounds(t) {
				t.Errorf("sink sidecar RSS grew by %d MiB", grew>>20)
			}
			if tc.want == http.StatusRequestEntityTooLarge {
				if reason := resp.Header.Get("X-Trellis-Reason"); reason != "request_payload_too_large" {
					t.Errorf("413 with reason %q, want request_payload_too_large", reason)
				}
				if took > 5*time.Second {
					t.Errorf("the 413 took %v", took)
				}
				time.Sleep(100 * time.Millisecond)
				if n, s := am.sink.seen(path), am.sink.started.Load()-started; n != 0 || s != 0 {
					t.Errorf("the app saw %d requests (%d started)", n, s)
				}
				return
			}
			var got sinkRequest
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("answer: %v: %q", err, body)
			}
			if got.BodyLen != tc.size || got.BodyErr != "" {
				t.Errorf("the app received %d bytes (error %q), want %d", got.BodyLen, got.BodyErr, tc.size)
			}
			if want := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 40)[:1<<10]; got.BodyHead != want {
				t.Errorf("the body arrived altered: %q...", got.BodyHead[:min(len(got.BodyHead), 40)])
			}
			if cl := got.Header.Get("Content-Length"); cl != fmt.Sprint(tc.size) {
				t.Errorf("the app got Content-Length %q, want %d (sent chunked: %v)", cl, tc.size, tc.chunked)
			}
		})
	}
	if n := sidecarStat(t, sink.Admin, tooLarge) - refused; n != 3 {
		t.Errorf("%s grew by %d, want 3", tooLarge, n)
	}
}
