package h2cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStress: many concurrent requests of every shape (bodiless, in
// memory, streamed, with trailers), some cancelled at random points, over
// few connections with small windows and a low stream limit. Completed
// exchanges are intact, cancelled ones fail with the context's error, and
// nothing is left running (goleak, TestMain).
func TestStress(t *testing.T) {
	b := newBackendMaxStreams(t, 8, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Trailer", "X-Len")
		_, _ = w.Write(bytes.Repeat(body, 3))
		w.Header().Set("X-Len", fmt.Sprint(len(body)))
	})
	p := newPool(t, Options{Dial: dialTCP, StreamWindow: 16 << 10, ConnWindow: 64 << 10, MaxRequestsPerConn: 25})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, cancelled := 0, 0
	for i := range 300 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			payload := strings.Repeat(fmt.Sprintf("%03d", i), rng.IntN(4000))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if rng.IntN(4) == 0 {
				time.AfterFunc(time.Duration(rng.IntN(20))*time.Millisecond, cancel)
			}
			var body io.Reader
			switch rng.IntN(3) {
			case 1:
				body = strings.NewReader(payload)
			case 2:
				body = io.MultiReader(strings.NewReader(payload)) // streamed
			default:
				payload = ""
			}
			url := b.url(fmt.Sprintf("/s?sleep=%dms", rng.IntN(10)))
			req := mustRequest(t, ctx, "POST", url, body)
			if _, streamed := body.(*strings.Reader); !streamed && body != nil {
				req.ContentLength = -1
			}
			res, err := p.RoundTrip(req)
			if err == nil {
				var got []byte
				got, err = io.ReadAll(res.Body)
				_ = res.Body.Close()
				if err == nil {
					if string(got) != strings.Repeat(payload, 3) || res.Trailer.Get("X-Len") != fmt.Sprint(len(payload)) {
						t.Errorf("request %d: %d bytes back, trailer %q; want %d, %d", i, len(got), res.Trailer.Get("X-Len"), 3*len(payload), len(payload))
					}
					mu.Lock()
					ok++
					mu.Unlock()
					return
				}
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("request %d: %v", i, err)
				return
			}
			mu.Lock()
			cancelled++
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("%d completed, %d cancelled, %d connections", ok, cancelled, b.conns.Load())
	if ok < 150 {
		t.Errorf("only %d of 300 requests completed", ok)
	}
}
