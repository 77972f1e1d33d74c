package controlplane

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	tests := []struct {
		name       string
		configured int
		env        string
		want       int
		wantApply  bool
		wantErr    bool
	}{
		{name: "default", want: DefaultGCPercent, wantApply: true},
		{name: "GOGC in the environment stays", env: "200"},
		{name: "GOGC=off in the environment stays", env: "off"},
		{name: "configured wins over the environment", configured: 80, env: "200", want: 80, wantApply: true},
		{name: "configured", configured: 25, want: 25, wantApply: true},
		{name: "negative is refused", configured: -1, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "GOGC" {
					return tc.env
				}
				return ""
			}
			got, apply, err := gcPercent(tc.configured, getenv)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want || apply != tc.wantApply {
				t.Errorf("gcPercent(%d, GOGC=%q) = %d, %v; want %d, %v", tc.configured, tc.env, got, apply, tc.want, tc.wantApply)
			}
		})
	}
}

// currentGCPercent reads the runtime's GC percent without changing it.
func currentGCPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestRunAppliesGCPercent: Run sets the configured GC percent while it runs
// and puts the previous one back when it returns.
func TestRunAppliesGCPercent(t *testing.T) {
	t.Setenv("GOGC", "")
	before := currentGCPercent()
	const want = 37
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := New(ctx, Config{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0", GCPercent: want, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for currentGCPercent() != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := currentGCPercent(); got != want {
		t.Errorf("GC percent while running = %d, want %d", got, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := currentGCPercent(); got != before {
		t.Errorf("GC percent after Run = %d, want %d restored", got, before)
	}
}

// TestPprofIsOperatorOnly: the control plane's Go profiles are an operator
// route (the admin token when there is one).
func TestPprofIsOperatorOnly(t *testing.T) {
	const token = "s3cr3t-admin-token-0123456789"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cp := runCP(t, Config{AdminTokenFile: file})
	join, err := cp.CreateToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, bearer string
		want         int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"join token", join, http.StatusUnauthorized},
		{"admin token", token, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, cp.AdminURL()+"/debug/pprof/heap?debug=1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET /debug/pprof/heap with %s: %d, want %d", tc.name, resp.StatusCode, tc.want)
			}
		})
	}
}
