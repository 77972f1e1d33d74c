// Package demoapp holds the demo applications that `trellis up` runs for a
// Mesh workload that says `demo: NAME`. They are ordinary programs: they know
// nothing of the mesh except the environment `trellis up` gives them, and
// they call other services only through the local sidecar's outbound ports.
//
//	            TRELLIS_APP_ADDR                 TRELLIS_UPSTREAM_<SERVICE>
//	sidecar ──► app (Run) ──► handler ──► upstream client ──► local sidecar ──► …
//	inbound                   /whoami, /healthz on every HTTP app
//
// Apps: productpage, details, reviews, ratings (bookinfo, HTTP JSON/HTML),
// grpc-echo (grpc-go's interop TestService, health and reflection, h2c), tcp-echo
// (raw TCP with a greeting), bench-backend (a fixed small body, for bench/)
// httpbin (a subset of httpbin.org with a control API to make one instance
// fail or slow down, for traffic-management tests) and idle (serves only
// /healthz and /whoami, for callers driven by tests).
package demoapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
)

// Environment variables set by `trellis up` for every app.
const (
	EnvAppAddr        = "TRELLIS_APP_ADDR"
	EnvPort           = "PORT"
	EnvWorkload       = "TRELLIS_WORKLOAD"
	EnvService        = "TRELLIS_SERVICE"
	EnvVersion        = "TRELLIS_VERSION"
	EnvUpstreamPrefix = "TRELLIS_UPSTREAM_"
)

// UpstreamEnv returns the environment variable that carries the local
// outbound address of service: the name upper-cased with '-' turned into
// '_' ("reviews" → TRELLIS_UPSTREAM_REVIEWS, "tcp-echo" →
// TRELLIS_UPSTREAM_TCP_ECHO), as `trellis up` sets it.
func UpstreamEnv(service string) string {
	return EnvUpstreamPrefix + strings.ToUpper(strings.ReplaceAll(service, "-", "_"))
}

// config is what an app learns from its environment.
type config struct {
	addr     string // host:port to listen on; empty only for idle
	workload string
	service  string
	version  string
	getenv   func(string) string
}

// upstream returns the local sidecar address for service, or an error that
// names the missing variable.
func (c config) upstream(service string) (string, error) {
	name := UpstreamEnv(service)
	if v := c.getenv(name); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("no upstream %q configured (%s is not set)", service, name)
}

// configFromEnv reads the environment contract. PORT alone means
// 127.0.0.1:PORT: demo apps never listen beyond loopback on their own.
func configFromEnv(name string, getenv func(string) string) config {
	c := config{
		addr:     getenv(EnvAppAddr),
		workload: getenv(EnvWorkload),
		service:  getenv(EnvService),
		version:  getenv(EnvVersion),
		getenv:   getenv,
	}
	if c.addr == "" {
		if p := getenv(EnvPort); p != "" {
			c.addr = net.JoinHostPort("127.0.0.1", p)
		}
	}
	if c.service == "" {
		c.service = name
	}
	if c.workload == "" {
		c.workload = name
	}
	return c
}

// app runs one demo app on an open listener until ctx ends. ln is nil only
// for apps that accept running without an address (idle).
type app func(ctx context.Context, ln net.Listener, cfg config, logger *slog.Logger) error

var apps = map[string]app{
	"productpage":   runProductpage,
	"details":       runDetails,
	"reviews":       runReviews,
	"ratings":       runRatings,
	"grpc-echo":     runGRPCEcho,
	"tcp-echo":      runTCPEcho,
	"bench-backend": runBenchBackend,
	"httpbin":       runHttpbin,
	"idle":          runIdle,
}

// Names returns the names of the demo apps, sorted.
func Names() []string {
	names := make([]string, 0, len(apps))
	for n := range apps {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ErrUnknownApp is returned (wrapped) by Run for a name that is not a demo app.
var ErrUnknownApp = errors.New("unknown demo app")

// Run runs the demo app name, configured from the environment (see the Env
// constants), until ctx ends, then shuts it down gracefully. It returns nil
// after a clean shutdown.
func Run(ctx context.Context, name string, logger *slog.Logger) error {
	return run(ctx, name, configFromEnv(name, os.Getenv), logger)
}

func run(ctx context.Context, name string, cfg config, logger *slog.Logger) error {
	a, ok := apps[name]
	if !ok {
		return fmt.Errorf("demo app %q: %w (known: %s)", name, ErrUnknownApp, strings.Join(Names(), ", "))
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("app", name, "workload", cfg.workload)
	var ln net.Listener
	if cfg.addr != "" {
		var err error
		ln, err = net.Listen("tcp", cfg.addr)
		if err != nil {
			return fmt.Errorf("demo app %q: listen on %s: %w", name, cfg.addr, err)
		}
		logger.Info("demo app listening", "addr", ln.Addr().String(), "service", cfg.service, "version", cfg.version)
	} else if name != "idle" {
		return fmt.Errorf("demo app %q: no listen address: set %s or %s", name, EnvAppAddr, EnvPort)
	}
	if err := a(ctx, ln, cfg, logger); err != nil {
		return fmt.Errorf("demo app %q: %w", name, err)
	}
	logger.Info("demo app stopped")
	return nil
}
