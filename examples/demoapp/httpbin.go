package demoapp

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HeaderServedBy names the workload that answered, on every httpbin response.
const HeaderServedBy = "X-Served-By"

// Httpbin limits.
const (
	httpbinMaxDelay = 30 * time.Second
	httpbinMaxBody  = 1 << 20
)

// httpbin is a small subset of httpbin.org for traffic-management demos and
// tests, plus a control API on the app's own port that tests call directly
// (never through the mesh) to make one instance fail or slow down:
//
//	GET|POST|… /status/{code}     answers with that status
//	GET /delay/{seconds}          answers after that many seconds (fractions allowed, ≤ 30)
//	GET /headers, /get, /anything/… echo method, path, query, headers and body as JSON
//	GET /cookies                  echoes the request's cookies
//	GET /whoami, /healthz         as every demo app
//	POST /control/fail?status=503[&count=N]   the next N requests (all if N is absent) answer status
//	POST /control/delay?d=200ms[&count=N]      the next N requests wait d first
//	POST /control/reset                        clear failure, delay and counters
//	GET  /control/stats                        {"requests": N, "byPath": {...}}: what reached this instance
//
// Every response carries X-Served-By: <workload>. Control and stats paths are
// not counted.
type httpbin struct {
	cfg config

	requests atomic.Int64
	mu       sync.Mutex
	byPath   map[string]int64
	failCode int
	failLeft int64 // -1: unlimited
	delay    time.Duration
	delayN   int64 // -1: unlimited
}

func runHttpbin(ctx context.Context, ln net.Listener, cfg config, logger *slog.Logger) error {
	return serveHTTP(ctx, ln, newHttpbin(cfg).handler(), logger)
}

func newHttpbin(cfg config) *httpbin {
	return &httpbin{cfg: cfg, byPath: map[string]int64{}}
}

func (b *httpbin) handler() http.Handler {
	mux := newMux(b.cfg)
	mux.HandleFunc("POST /control/fail", b.controlFail)
	mux.HandleFunc("POST /control/delay", b.controlDelay)
	mux.HandleFunc("POST /control/reset", b.controlReset)
	mux.HandleFunc("GET /control/stats", b.controlStats)
	mux.HandleFunc("/status/{code}", b.status)
	mux.HandleFunc("GET /delay/{seconds}", b.delayed)
	mux.HandleFunc("GET /cookies", b.cookies)
	mux.HandleFunc("/headers", b.echo)
	mux.HandleFunc("/get", b.echo)
	mux.HandleFunc("/anything", b.echo)
	mux.HandleFunc("/anything/", b.echo)
	mux.HandleFunc("/", b.echo)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderServedBy, b.cfg.workload)
		if strings.HasPrefix(r.URL.Path, "/control/") || r.URL.Path == "/healthz" {
			mux.ServeHTTP(w, r)
			return
		}
		b.count(r.URL.Path)
		if code, d := b.injected(); d > 0 || code != 0 {
			if d > 0 {
				select {
				case <-time.After(d):
				case <-r.Context().Done():
					return
				}
			}
			if code != 0 {
				_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, httpbinMaxBody))
				w.WriteHeader(code)
				_, _ = io.WriteString(w, "injected by /control/fail\n")
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

func (b *httpbin) count(path string) {
	b.requests.Add(1)
	b.mu.Lock()
	b.byPath[path]++
	b.mu.Unlock()
}

// injected returns the failure status and delay the control API set for this
// request, consuming one of their counts.
func (b *httpbin) injected() (int, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	code, d := 0, time.Duration(0)
	if b.failCode != 0 && b.failLeft != 0 {
		code = b.failCode
		if b.failLeft > 0 {
			b.failLeft--
		}
	}
	if b.delay > 0 && b.delayN != 0 {
		d = b.delay
		if b.delayN > 0 {
			b.delayN--
		}
	}
	return code, d
}

func countParam(r *http.Request) (int64, bool) {
	s := r.URL.Query().Get("count")
	if s == "" {
		return -1, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

func (b *httpbin) controlFail(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.URL.Query().Get("status"))
	n, ok := countParam(r)
	if err != nil || code < 100 || code > 599 || !ok {
		http.Error(w, "want ?status=100..599[&count=N]", http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.failCode, b.failLeft = code, n
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (b *httpbin) controlDelay(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("d"))
	n, ok := countParam(r)
	if err != nil || d < 0 || d > httpbinMaxDelay || !ok {
		http.Error(w, "want ?d=DURATION (≤ 30s)[&count=N]", http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.delay, b.delayN = d, n
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (b *httpbin) controlReset(w http.ResponseWriter, _ *http.Request) {
	b.mu.Lock()
	b.failCode, b.failLeft, b.delay, b.delayN = 0, 0, 0, 0
	b.byPath = map[string]int64{}
	b.requests.Store(0)
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// HttpbinStats is the answer of GET /control/stats.
type HttpbinStats struct {
	Requests int64            `json:"requests"`
	ByPath   map[string]int64 `json:"byPath"`
}

func (b *httpbin) controlStats(w http.ResponseWriter, _ *http.Request) {
	b.mu.Lock()
	st := HttpbinStats{Requests: b.requests.Load(), ByPath: make(map[string]int64, len(b.byPath))}
	for k, v := range b.byPath {
		st.ByPath[k] = v
	}
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, st)
}

func (b *httpbin) status(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.PathValue("code"))
	if err != nil || code < 200 || code > 599 {
		http.Error(w, "want /status/200..599", http.StatusBadRequest)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, httpbinMaxBody))
	w.WriteHeader(code)
}

func (b *httpbin) delayed(w http.ResponseWriter, r *http.Request) {
	secs, err := strconv.ParseFloat(r.PathValue("seconds"), 64)
	d := time.Duration(secs * float64(time.Second))
	if err != nil || d < 0 || d > httpbinMaxDelay {
		http.Error(w, "want /delay/0..30", http.StatusBadRequest)
		return
	}
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		return
	}
	b.echo(w, r)
}

func (b *httpbin) cookies(w http.ResponseWriter, r *http.Request) {
	out := map[string]string{}
	for _, c := range r.Cookies() {
		out[c.Name] = c.Value
	}
	writeJSON(w, http.StatusOK, map[string]any{"cookies": out})
}

// HttpbinEcho is the answer of the echo endpoints.
type HttpbinEcho struct {
	Workload string              `json:"workload"`
	Version  string              `json:"version"`
	Method   string              `json:"method"`
	Host     string              `json:"host"`
	Path     string              `json:"path"`
	URI      string              `json:"uri"` // the request-target exactly as received
	Query    map[string][]string `json:"query"`
	Headers  map[string][]string `json:"headers"`
	Body     string              `json:"body,omitempty"`
}

func (b *httpbin) echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, httpbinMaxBody))
	writeJSON(w, http.StatusOK, HttpbinEcho{
		Workload: b.cfg.workload, Version: b.cfg.version,
		Method: r.Method, Host: r.Host, Path: r.URL.Path, URI: r.RequestURI, Query: r.URL.Query(),
		Headers: r.Header, Body: string(body),
	})
}
