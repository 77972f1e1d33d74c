// Package sidecar is the `trellis proxy` process: everything around the data
// plane that makes one workload part of the mesh.
//
//	start ─► admin port (/ready answers 503 until done)
//	      ─► register workload (join token) ─► make key, CSR ─► SVID
//	      ─► proxy (internal/proxy) ◄── Update(set) ── xDS client (ADS)
//	      ─► heartbeats (ready = config applied and app reachable)
//	      ─► renew the SVID at about half-life
//	stop  ─► deregister (endpoints drain elsewhere) ─► proxy drains ─► exit
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/memtrim"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/proxy"
	xdsclient "github.com/trellis-mesh/trellis/internal/xds/client"
)

// Config is what `trellis proxy` is started with.
type Config struct {
	Workload  model.Workload
	AdminAddr string
	Control   string // admin API URL of the control plane
	XDSAddr   string // empty: ask the control plane
	Token     string // join token

	HeartbeatInterval time.Duration
	DrainTimeout      time.Duration
	Logger            *slog.Logger

	// ReleaseStartupMemory: once ready, give back the memory only start-up
	// needed (internal/memtrim). `trellis proxy` turns it on by default.
	ReleaseStartupMemory bool
}

// Sidecar is one running sidecar.
type Sidecar struct {
	cfg    Config
	logger *slog.Logger
	client *api.Client
	id     *identity
	proxy  *proxy.Proxy
	xds    atomic.Pointer[xdsclient.Client] // set once joined
	lis    net.Listener
}

// New binds the admin port and prepares the key; Run does the rest.
func New(cfg Config) (*Sidecar, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	w := &cfg.Workload
	w.Kind, w.APIVersion = model.KindWorkload, model.APIVersionTrellis
	w.Namespace = w.NamespaceOrDefault()
	w.Spec.Admin = cfg.AdminAddr
	if _, err := model.Validate(w); err != nil {
		return nil, err
	}
	client := api.NewClient(cfg.Control, cfg.Token)
	id, err := newIdentity(client, w.Namespace, w.Name, cfg.Logger)
	if err != nil {
		return nil, err
	}
	p, err := proxy.New(proxy.Options{Identity: id, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("admin listener %s: %w", cfg.AdminAddr, err)
	}
	return &Sidecar{cfg: cfg, logger: cfg.Logger, client: client, id: id, proxy: p, lis: lis}, nil
}

// Run joins the mesh and serves until ctx ends, then drains and leaves.
func (s *Sidecar) Run(ctx context.Context) error {
	admin := &http.Server{Handler: s.adminRoutes(), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := admin.Serve(s.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("admin server", "err", err)
		}
	})
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = admin.Shutdown(shutdownCtx)
		wg.Wait()
	}()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	spiffeID, xdsAddr, err := s.join(runCtx)
	if err != nil {
		return err
	}
	w := &s.cfg.Workload
	xds := xdsclient.New(xdsclient.Options{
		Addr: xdsAddr, NodeID: w.Name, Cluster: w.Spec.Service, Token: s.cfg.Token,
		Logger: s.logger.With("component", "xds"),
	})
	s.xds.Store(xds)
	var bg sync.WaitGroup
	bg.Go(func() {
		if err := xds.Run(runCtx, s.proxy); err != nil && runCtx.Err() == nil {
			s.logger.Error("xDS client stopped", "err", err)
		}
	})
	bg.Go(func() { s.id.rotate(runCtx, spiffeID) })
	bg.Go(func() { s.heartbeat(runCtx) })
	if s.cfg.ReleaseStartupMemory {
		bg.Go(func() { s.releaseStartupMemory(runCtx) })
	}
	s.logger.Info("sidecar joined the mesh", "workload", w.Name, "identity", spiffeID.String(), "xds", xdsAddr)

	<-ctx.Done()
	s.leave()
	cancel()
	bg.Wait()
	return nil
}

// join registers the workload and obtains the first certificate, retrying
// until the control plane answers or ctx ends.
func (s *Sidecar) join(ctx context.Context) (spiffeid.ID, string, error) {
	var reg *api.RegisterResponse
	err := retry(ctx, s.logger, "register", func() (err error) {
		reg, err = s.client.Register(ctx, &s.cfg.Workload)
		return err
	})
	if err != nil {
		return spiffeid.ID{}, "", err
	}
	spiffeID, err := spiffeid.FromString(reg.Identity)
	if err != nil {
		return spiffeid.ID{}, "", fmt.Errorf("control plane gave identity %q: %w", reg.Identity, err)
	}
	if err := retry(ctx, s.logger, "obtain certificate", func() error { return s.id.fetch(ctx, spiffeID) }); err != nil {
		return spiffeid.ID{}, "", err
	}
	xdsAddr := s.cfg.XDSAddr
	if xdsAddr == "" {
		err := retry(ctx, s.logger, "discover xDS address", func() error {
			info, err := s.client.Info(ctx)
			if err == nil {
				xdsAddr = info.XDSAddr
			}
			return err
		})
		if err != nil {
			return spiffeid.ID{}, "", err
		}
	}
	return spiffeID, xdsAddr, nil
}

// retry calls f with capped exponential backoff until it succeeds or ctx
// ends. Errors the control plane gives for bad input (4xx other than 404)
// are final.
func retry(ctx context.Context, logger *slog.Logger, what string, f func() error) error {
	backoff := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		var se *api.StatusError
		if errors.As(err, &se) && se.Code/100 == 4 && se.Code != http.StatusNotFound {
			return fmt.Errorf("%s: %w", what, err)
		}
		logger.Warn(what+" failed; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 3*time.Second)
	}
}

// ready is true once the sidecar can carry traffic: certificate issued and
// a first complete configuration applied.
func (s *Sidecar) ready() (bool, string) {
	switch {
	case s.id.Leaf() == nil:
		return false, "no certificate yet"
	case s.xds.Load() == nil || !s.xds.Load().State().Synced:
		return false, "initial xDS sync not done"
	case !s.proxy.Ready():
		return false, "no configuration applied"
	}
	return true, "ready"
}

// appReachable reports whether the app accepts connections on its ports.
func (s *Sidecar) appReachable() bool {
	for _, p := range s.cfg.Workload.Spec.Ports {
		c, err := net.DialTimeout("tcp", p.App, 500*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
	}
	return true
}

// probeInterval is how often the sidecar checks its own readiness, so that a
// change (the app starting to listen) reaches the control plane at once
// instead of at the next heartbeat.
const probeInterval = 250 * time.Millisecond

// heartbeat reports liveness until ctx ends: immediately when readiness
// changes, otherwise every HeartbeatInterval. The workload counts as ready
// for traffic when the sidecar is ready and the app answers. If the control
// plane forgot the workload (a wiped store), the sidecar registers again.
func (s *Sidecar) heartbeat(ctx context.Context) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	w := &s.cfg.Workload
	var last time.Time
	lastReady, sent := false, false
	for {
		ready, _ := s.ready()
		ready = ready && s.appReachable()
		if !sent || ready != lastReady || time.Since(last) >= s.cfg.HeartbeatInterval {
			err := s.client.Heartbeat(ctx, w.Namespace, w.Name, ready)
			if api.IsNotFound(err) {
				_, err = s.client.Register(ctx, w)
			}
			if err == nil {
				sent, lastReady, last = true, ready, time.Now()
			} else if ctx.Err() == nil {
				s.logger.Debug("heartbeat failed", "err", err)
				last = time.Now() // retry at the next interval, not every probe
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startupSettle is how long after first becoming ready the sidecar releases
// its start-up memory: by then the first configuration is applied and what
// building it allocated is garbage.
const startupSettle = 2 * time.Second

// releaseStartupMemory waits until the sidecar is ready, then once returns
// the garbage of start-up to the OS and unmaps the binary's pages that
// package initialisation touched (internal/memtrim; docs/perf.md, "Sidecar
// memory": about two thirds of an idle sidecar's RSS).
func (s *Sidecar) releaseStartupMemory(ctx context.Context) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for ready, _ := s.ready(); !ready; ready, _ = s.ready() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(startupSettle):
	}
	res, err := memtrim.Release()
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		s.logger.Debug("start-up memory: only the heap part is implemented on this OS")
	case err != nil:
		s.logger.Warn("releasing start-up memory", "err", err, "executable_bytes_unmapped", res.FileResident)
	default:
		s.logger.Info("released start-up memory", "executable_bytes_unmapped", res.FileResident,
			"mappings", res.Mappings, "heap_bytes_returned", res.HeapReleased)
	}
}

// leave deregisters (so other proxies stop sending new requests here) and
// drains in-flight requests.
func (s *Sidecar) leave() {
	w := &s.cfg.Workload
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := s.client.Deregister(ctx, w.Namespace, w.Name); err != nil {
		s.logger.Warn("deregister failed", "err", err)
	}
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	if err := s.proxy.Shutdown(ctx); err != nil {
		s.logger.Warn("drain ended early", "err", err)
	}
	s.logger.Info("sidecar stopped")
}
