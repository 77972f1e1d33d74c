package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
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
		{"retry route, HTTP/2 (net/http path)", h2c, "/retry/h2", false},
		{"mirror route, HTTP/2 (net/http path)", h2c, "/mirror/h2", false},
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
}
