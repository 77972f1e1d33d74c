package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is the config an app would get from `trellis up`, with env as
// the rest of its environment (the upstream variables).
func testConfig(workload, service, version string, env map[string]string) config {
	return config{
		workload: workload,
		service:  service,
		version:  version,
		getenv:   func(k string) string { return env[k] },
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// getJSON does GET url with headers and decodes the JSON answer into out.
func getJSON(t *testing.T, url string, headers http.Header, out any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: decode %q: %v", url, body, err)
		}
	}
	return resp
}

func TestUpstreamEnv(t *testing.T) {
	for in, want := range map[string]string{
		"reviews":   "TRELLIS_UPSTREAM_REVIEWS",
		"tcp-echo":  "TRELLIS_UPSTREAM_TCP_ECHO",
		"grpc-echo": "TRELLIS_UPSTREAM_GRPC_ECHO",
		"api-v2":    "TRELLIS_UPSTREAM_API_V2",
	} {
		if got := UpstreamEnv(in); got != want {
			t.Errorf("UpstreamEnv(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{EnvPort: "9080", EnvVersion: "v2", "TRELLIS_UPSTREAM_RATINGS": "127.0.0.1:4000"}
	cfg := configFromEnv("reviews", func(k string) string { return env[k] })
	if cfg.addr != "127.0.0.1:9080" || cfg.workload != "reviews" || cfg.service != "reviews" || cfg.version != "v2" {
		t.Errorf("configFromEnv = %+v", cfg)
	}
	if addr, err := cfg.upstream("ratings"); err != nil || addr != "127.0.0.1:4000" {
		t.Errorf("upstream(ratings) = %q, %v", addr, err)
	}
	if _, err := cfg.upstream("details"); err == nil {
		t.Error("upstream(details) without its variable: no error")
	}
	env[EnvAppAddr] = "127.0.0.1:7000"
	if cfg := configFromEnv("reviews", func(k string) string { return env[k] }); cfg.addr != "127.0.0.1:7000" {
		t.Errorf("TRELLIS_APP_ADDR not preferred over PORT: addr %q", cfg.addr)
	}
}

func TestRunUnknownApp(t *testing.T) {
	err := Run(t.Context(), "no-such-app", nil)
	if !errors.Is(err, ErrUnknownApp) {
		t.Fatalf("Run(no-such-app) = %v, want ErrUnknownApp", err)
	}
}

func TestRunNeedsAddress(t *testing.T) {
	if err := run(t.Context(), "details", testConfig("details-v1", "details", "", nil), nil); err == nil {
		t.Fatal("run(details) without an address: no error")
	}
}

// TestRunStopsGracefully runs every app on a loopback port and checks that
// each returns nil once its context ends.
func TestRunStopsGracefully(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(name+"-v1", name, "v1", nil)
			cfg.addr = "127.0.0.1:0"
			ctx, cancel := context.WithCancel(t.Context())
			errc := make(chan error, 1)
			go func() { errc <- run(ctx, name, cfg, testLogger(t)) }()
			time.Sleep(50 * time.Millisecond)
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Fatalf("run(%s) after cancel = %v, want nil", name, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("run(%s) did not return after cancel", name)
			}
		})
	}
}

func TestIdleWithoutAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := run(ctx, "idle", testConfig("caller-v1", "caller", "", nil), nil); err != nil {
		t.Fatalf("run(idle) = %v", err)
	}
}

func TestWhoami(t *testing.T) {
	srv := httptest.NewServer(detailsHandler(testConfig("details-v1", "details", "v1", nil)))
	defer srv.Close()
	var got Whoami
	headers := http.Header{
		"X-Forwarded-Client-Cert": {"By=spiffe://cluster.local/ns/default/sa/details;URI=spiffe://cluster.local/ns/default/sa/productpage"},
		"X-Multi":                 {"a", "b"},
	}
	resp := getJSON(t, srv.URL+"/whoami", headers, &got)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got.Workload != "details-v1" || got.Service != "details" || got.Version != "v1" || got.Path != "/whoami" {
		t.Errorf("whoami = %+v", got)
	}
	if host, _, err := net.SplitHostPort(got.RemoteAddr); err != nil || host != "127.0.0.1" {
		t.Errorf("remoteAddr = %q, want 127.0.0.1:port", got.RemoteAddr)
	}
	for k, v := range headers {
		if diff := cmp.Diff(v, got.Headers[k]); diff != "" {
			t.Errorf("header %s (-sent +echoed):\n%s", k, diff)
		}
	}
	resp = getJSON(t, srv.URL+"/healthz", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz status %d", resp.StatusCode)
	}
}

func TestBenchBackend(t *testing.T) {
	srv := httptest.NewServer(benchHandler(testConfig("backend-v1", "backend", "", nil)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/anything")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != BenchBody || resp.ContentLength != int64(len(BenchBody)) {
		t.Errorf("GET /anything = %d %q (length %d)", resp.StatusCode, body, resp.ContentLength)
	}
	var who Whoami
	getJSON(t, srv.URL+"/whoami", nil, &who)
	if who.Workload != "backend-v1" {
		t.Errorf("whoami workload %q", who.Workload)
	}
}

func TestBenchHandlerAllocs(t *testing.T) {
	h := benchHandler(testConfig("backend-v1", "backend", "", nil))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	w := &discardWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(100, func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	})
	if allocs > 0 {
		t.Errorf("bench handler allocates %.0f times per request, want 0", allocs)
	}
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
