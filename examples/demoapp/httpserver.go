package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server limits shared by the HTTP demo apps.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 90 * time.Second
	maxHeaderBytes    = 64 << 10
	// drainTimeout bounds graceful shutdown: in-flight requests get this long.
	drainTimeout = 5 * time.Second
)

// serveHTTP serves h on ln (HTTP/1.1 and h2c with prior knowledge) until ctx
// ends, then shuts down gracefully within drainTimeout.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		Protocols:         protocols,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if err != nil {
		logger.Warn("graceful shutdown incomplete, closing", "err", err)
		_ = srv.Close()
	}
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), serveErr)
	}
	return nil
}

// newMux returns a mux with the endpoints every HTTP demo app serves:
// GET /healthz and GET /whoami.
func newMux(cfg config) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /whoami", whoamiHandler(cfg))
	return mux
}

// Whoami is the answer of GET /whoami: who answered, and what it received.
// Tests use it to see which subset served a request, that the request came
// from the local sidecar (RemoteAddr) and which identity headers arrived
// (x-forwarded-client-cert).
type Whoami struct {
	Workload   string              `json:"workload"`
	Service    string              `json:"service"`
	Version    string              `json:"version"`
	RemoteAddr string              `json:"remoteAddr"`
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	Proto      string              `json:"proto"`
	Headers    map[string][]string `json:"headers"`
}

func whoamiHandler(cfg config) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		headers := make(map[string][]string, len(r.Header))
		for k, v := range r.Header {
			headers[k] = v
		}
		writeJSON(w, http.StatusOK, Whoami{
			Workload:   cfg.workload,
			Service:    cfg.service,
			Version:    cfg.version,
			RemoteAddr: r.RemoteAddr,
			Method:     r.Method,
			Host:       r.Host,
			Path:       r.URL.Path,
			Proto:      r.Proto,
			Headers:    headers,
		})
	}
}

// writeJSON writes v as an indented JSON body with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, fmt.Sprintf("encode response: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// apiError is the JSON body of an error answer.
type apiError struct {
	Error    string `json:"error"`
	Workload string `json:"workload"`
}

// logRequests logs each request at debug level.
func logRequests(next http.Handler, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		logger.Debug("request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "dur", time.Since(start))
	})
}
