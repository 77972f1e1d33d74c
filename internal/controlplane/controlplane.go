// Package controlplane wires the parts of `trellis control` together.
//
//	            admin API (HTTP/JSON, loopback)                xDS (gRPC ADS, join token)
//	CLI ─────► apply/get/delete/status/tokens                  ▲
//	sidecar ─► register/heartbeat/certificates ─► registry     │ SetResources(node, set)
//	                 │                              │          │
//	                 ▼                              ▼          │
//	              store ───────── watch ──────► reconciler ── Index.Compile(node)
//	                 ▲                (mesh.go: model,        for affected, connected
//	                 │                 deps.go: who calls whom) proxies only
//	                CA (root persisted in the store, signs CSRs into SPIFFE SVIDs)
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/registry"
	"github.com/trellis-mesh/trellis/internal/store"
	"github.com/trellis-mesh/trellis/internal/store/embedded"
	"github.com/trellis-mesh/trellis/internal/xds"
)

// Config is what `trellis control` is started with.
type Config struct {
	DataDir     string        // bbolt file lives here
	AdminAddr   string        // admin HTTP API; loopback unless AdminTokenFile is set
	XDSAddr     string        // ADS gRPC
	TrustDomain string        // SPIFFE trust domain
	CertTTL     time.Duration // leaf certificate lifetime
	HealthTTL   time.Duration // a workload without heartbeat for this long is unhealthy
	// AdminTokenFile holds the bearer token every operator request must
	// carry (admin_auth.go). Required for a non-loopback AdminAddr.
	AdminTokenFile string
	// CA is an operator-supplied CA (files); zero: generated roots kept in
	// the store (ca_load.go).
	CA ca.OperatorFiles
	// BundleRefresh is how often sidecars fetch the trust bundle (default 30 s).
	BundleRefresh time.Duration
	// GCPercent is the Go GC percent of the process while Run runs (it is
	// process wide; the previous value is restored when Run returns). 0:
	// DefaultGCPercent, unless GOGC is set in the environment (memory.go).
	GCPercent int
	Logger    *slog.Logger
}

// ControlPlane is one running control plane.
type ControlPlane struct {
	cfg      Config
	logger   *slog.Logger
	store    store.Store
	ca       *ca.CA
	registry *registry.Registry
	xds      *xds.Server
	tokens   *tokens
	// adminToken is the SHA-256 of the operator token (nil: loopback trust).
	adminToken []byte

	adminLis net.Listener
	xdsLis   net.Listener

	reconcile chan struct{}
	wanted    atomic.Uint64 // changes seen (trigger calls)
	built     atomic.Uint64 // changes compiled and published
	compiles  atomic.Uint64 // proxies compiled since start (tests, benchmarks)
	evMu      sync.Mutex
	events    []store.Event // store changes not yet folded into the mesh model
	relist    bool          // re-read the whole store before the queued events
	connects  []string      // nodes that opened their first ADS stream, not yet compiled
	// compiledHook, when set before Run, is called by the reconcile loop
	// with the proxies each rebuild compiled (tests).
	compiledHook func(names []string)
}

// New opens the store, loads or creates the CA and binds both listeners, so
// the addresses are known (and usable) as soon as it returns. Call Run next.
func New(ctx context.Context, cfg Config) (*ControlPlane, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = model.DefaultTrustDomain
	}
	adminToken, err := readAdminToken(cfg.AdminTokenFile, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if err := checkLoopback(cfg.AdminAddr, adminToken != nil); err != nil {
		return nil, err
	}
	if _, _, err := gcPercent(cfg.GCPercent, os.Getenv); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	st, err := embedded.Open(filepath.Join(cfg.DataDir, "trellis.db"), cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
	}
	cp := &ControlPlane{
		cfg:        cfg,
		logger:     cfg.Logger,
		store:      st,
		tokens:     &tokens{store: st},
		adminToken: adminToken,
		reconcile:  make(chan struct{}, 1),
	}
	fail := func(err error) (*ControlPlane, error) {
		cp.closeListeners()
		_ = st.Close()
		return nil, err
	}
	if cp.ca, err = cp.loadCA(ctx); err != nil {
		return fail(fmt.Errorf("certificate authority: %w", err))
	}
	cp.registry = registry.New(st, registry.Options{TTL: cfg.HealthTTL, Logger: cfg.Logger.With("component", "registry")})
	cp.xds = xds.NewServer(xds.ServerOptions{
		Logger:        cfg.Logger.With("component", "xds"),
		Authenticate:  cp.tokens.check,
		OnNodeConnect: cp.nodeConnected,
	})
	if cp.adminLis, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		return fail(fmt.Errorf("admin API listener %s: %w", cfg.AdminAddr, err))
	}
	if cp.xdsLis, err = net.Listen("tcp", cfg.XDSAddr); err != nil {
		return fail(fmt.Errorf("xDS listener %s: %w", cfg.XDSAddr, err))
	}
	return cp, nil
}

// checkLoopback refuses a non-loopback admin address unless operators must
// present a token (withToken: --admin-token-file was given).
func checkLoopback(addr string, withToken bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--admin-addr %q: %w", addr, err)
	}
	if withToken || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--admin-addr %q is not a loopback address: without --admin-token-file anyone who reaches it could change the mesh; listen on 127.0.0.1, or give --admin-token-file", addr)
}

// AdminURL is the admin API's base URL.
func (cp *ControlPlane) AdminURL() string { return "http://" + cp.adminLis.Addr().String() }

// XDSAddr is the xDS server's address.
func (cp *ControlPlane) XDSAddr() string { return cp.xdsLis.Addr().String() }

// CreateToken issues a join token (used in-process by `trellis up`).
func (cp *ControlPlane) CreateToken(ctx context.Context) (string, error) {
	return cp.tokens.create(ctx)
}

func (cp *ControlPlane) closeListeners() {
	for _, l := range []net.Listener{cp.adminLis, cp.xdsLis} {
		if l != nil {
			_ = l.Close()
		}
	}
}

// Run serves until ctx ends, then shuts everything down and closes the store.
func (cp *ControlPlane) Run(ctx context.Context) error {
	defer func() { _ = cp.store.Close() }()
	if percent, ok, _ := gcPercent(cp.cfg.GCPercent, os.Getenv); ok { // checked by New
		defer debug.SetGCPercent(debug.SetGCPercent(percent))
		cp.logger.Debug("memory settings", "gc_percent", percent)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	admin := &http.Server{
		Handler:           cp.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(4)
	go func() {
		defer wg.Done()
		if err := admin.Serve(cp.adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin API: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := cp.xds.Serve(ctx, cp.xdsLis); err != nil {
			errc <- fmt.Errorf("xDS server: %w", err)
		}
	}()
	go func() { defer wg.Done(); cp.registry.Run(ctx) }()
	go func() { defer wg.Done(); cp.reconcileLoop(ctx) }()
	cp.logger.Info("control plane running", "admin", cp.AdminURL(), "xds", cp.XDSAddr(), "trustDomain", cp.cfg.TrustDomain)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		cancel()
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_ = admin.Shutdown(shutdownCtx)
	wg.Wait()
	cp.logger.Info("control plane stopped")
	return err
}
