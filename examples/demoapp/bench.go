package demoapp

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
)

// BenchBody is what bench-backend answers to every request but GET /whoami.
const BenchBody = "hello from trellis bench-backend\n"

var (
	benchBody          = []byte(BenchBody)
	benchContentType   = []string{"text/plain; charset=utf-8"}
	benchContentLength = []string{strconv.Itoa(len(BenchBody))}
)

// benchHandler answers a fixed small body with as little work as net/http
// allows: no routing, no logging, header values shared and preallocated.
// GET /whoami still works, to check a request's path through the sidecars.
func benchHandler(cfg config) http.Handler {
	whoami := whoamiHandler(cfg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/whoami" {
			whoami(w, r)
			return
		}
		h := w.Header()
		h["Content-Type"] = benchContentType
		h["Content-Length"] = benchContentLength
		_, _ = w.Write(benchBody)
	})
}

func runBenchBackend(ctx context.Context, ln net.Listener, cfg config, logger *slog.Logger) error {
	return serveHTTP(ctx, ln, benchHandler(cfg), logger)
}

// runIdle is the app of a workload that only calls others (tests and load
// generators dial its sidecar's outbound ports directly). With an address it
// serves /healthz and /whoami there, so readiness checks that dial the app
// succeed; without one it just waits.
func runIdle(ctx context.Context, ln net.Listener, cfg config, logger *slog.Logger) error {
	if ln == nil {
		<-ctx.Done()
		return nil
	}
	return serveHTTP(ctx, ln, logRequests(newMux(cfg), logger), logger)
}
