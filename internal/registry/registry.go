// Package registry keeps the workloads that sidecars register, and decides
// which of them are healthy.
//
//	sidecar ──Register──► store (kind Workload: what it serves, where)
//	sidecar ──Heartbeat─► liveness (memory: last seen, ready)
//	                         │ sweep every TTL/3: a workload unseen for TTL, or not ready, is unhealthy
//	                         ▼
//	                    Changed() ──► control plane recompiles endpoints
//
// Registrations are durable (they survive a control plane restart); liveness
// is not. After a restart every stored workload starts with a fresh TTL, so
// endpoints stay healthy while their sidecars reconnect instead of flapping.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store"
)

// DefaultTTL is how long a workload stays healthy without a heartbeat.
const DefaultTTL = 15 * time.Second

// ErrNotRegistered is returned for heartbeats and lookups of unknown workloads.
var ErrNotRegistered = errors.New("workload not registered")

type liveness struct {
	lastSeen time.Time
	ready    bool
	healthy  bool // as last published
}

// Registry is safe for concurrent use.
type Registry struct {
	store  store.Store
	ttl    time.Duration
	now    func() time.Time
	logger *slog.Logger

	mu      sync.Mutex
	live    map[string]*liveness // key: namespace/name
	started time.Time
	changed chan struct{}
}

// Options configures a Registry.
type Options struct {
	TTL    time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// New returns a registry over st.
func New(st store.Store, opts Options) *Registry {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Registry{
		store:   st,
		ttl:     opts.TTL,
		now:     opts.Now,
		logger:  opts.Logger,
		live:    map[string]*liveness{},
		started: opts.Now(),
		changed: make(chan struct{}, 1),
	}
}

func key(namespace, name string) string { return namespace + "/" + name }

// Changed delivers a value whenever some workload's health flips. Store
// changes (registrations) are seen through the store's own watch.
func (r *Registry) Changed() <-chan struct{} { return r.changed }

func (r *Registry) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Register validates and stores a workload. The caller's liveness starts now,
// not ready until its first heartbeat says so.
func (r *Registry) Register(ctx context.Context, w *model.Workload) error {
	w.Kind = model.KindWorkload
	w.APIVersion = model.APIVersionTrellis
	w.Namespace = w.NamespaceOrDefault()
	w.Status = nil
	if _, err := model.Validate(w); err != nil {
		return err
	}
	data, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("encode workload %s: %w", w.Name, err)
	}
	if _, err := r.store.Put(ctx, store.Record{Kind: model.KindWorkload, Namespace: w.Namespace, Name: w.Name, Data: data}); err != nil {
		return fmt.Errorf("store workload %s: %w", w.Name, err)
	}
	r.mu.Lock()
	if _, ok := r.live[key(w.Namespace, w.Name)]; !ok {
		r.live[key(w.Namespace, w.Name)] = &liveness{lastSeen: r.now()}
	} else {
		r.live[key(w.Namespace, w.Name)].lastSeen = r.now()
	}
	r.mu.Unlock()
	r.logger.Info("workload registered", "workload", w.Name, "service", w.Spec.Service)
	return nil
}

// Heartbeat records that a workload's sidecar is alive, and whether it is ready.
func (r *Registry) Heartbeat(ctx context.Context, namespace, name string, ready bool) error {
	if _, err := r.store.Get(ctx, model.KindWorkload, namespace, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s/%s: %w", namespace, name, ErrNotRegistered)
		}
		return fmt.Errorf("heartbeat %s/%s: %w", namespace, name, err)
	}
	r.mu.Lock()
	l, ok := r.live[key(namespace, name)]
	if !ok {
		// Never heard from since start-up: healthy by the start-up grace
		// until now, so a first "not ready" is a flip too.
		l = &liveness{healthy: r.now().Sub(r.started) < r.ttl}
		r.live[key(namespace, name)] = l
	}
	l.lastSeen = r.now()
	l.ready = ready
	flipped := l.healthy != ready
	l.healthy = ready
	r.mu.Unlock()
	if flipped {
		r.notify()
	}
	return nil
}

// Deregister removes a workload; its endpoints are drained from every proxy.
func (r *Registry) Deregister(ctx context.Context, namespace, name string) error {
	if err := r.store.Delete(ctx, model.KindWorkload, namespace, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s/%s: %w", namespace, name, ErrNotRegistered)
		}
		return fmt.Errorf("deregister %s/%s: %w", namespace, name, err)
	}
	r.mu.Lock()
	delete(r.live, key(namespace, name))
	r.mu.Unlock()
	r.logger.Info("workload deregistered", "workload", name)
	return nil
}

// Get returns one registered workload with its status.
func (r *Registry) Get(ctx context.Context, namespace, name string) (*model.Workload, error) {
	rec, err := r.store.Get(ctx, model.KindWorkload, namespace, name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%s/%s: %w", namespace, name, ErrNotRegistered)
		}
		return nil, fmt.Errorf("get workload %s/%s: %w", namespace, name, err)
	}
	w, err := r.decode(rec)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.fillStatus(w)
	r.mu.Unlock()
	return w, nil
}

// Workloads returns every registered workload, with Status filled in.
func (r *Registry) Workloads(ctx context.Context) ([]*model.Workload, error) {
	recs, err := r.store.List(ctx, model.KindWorkload)
	if err != nil {
		return nil, fmt.Errorf("list workloads: %w", err)
	}
	out := make([]*model.Workload, 0, len(recs))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		w, err := r.decode(rec)
		if err != nil {
			r.logger.Error("skipping unreadable workload record", "name", rec.Name, "err", err)
			continue
		}
		r.fillStatus(w)
		out = append(out, w)
	}
	return out, nil
}

func (r *Registry) decode(rec store.Record) (*model.Workload, error) {
	var w model.Workload
	if err := json.Unmarshal(rec.Data, &w); err != nil {
		return nil, fmt.Errorf("decode workload %s/%s: %w", rec.Namespace, rec.Name, err)
	}
	return &w, nil
}

// Status returns a workload's status from liveness alone, without reading
// the store: the control plane calls it for every workload it compiles.
// The workload is assumed registered (see fillStatus for one never heard from).
func (r *Registry) Status(namespace, name string) *model.WorkloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.statusLocked(namespace, name)
}

// fillStatus sets w.Status from liveness; r.mu must be held.
func (r *Registry) fillStatus(w *model.Workload) {
	w.Status = r.statusLocked(w.Namespace, w.Name)
}

// statusLocked computes a workload's status; r.mu must be held. A workload
// never heard from since this control plane started is given the benefit
// of the doubt until one TTL has passed (it is probably reconnecting).
func (r *Registry) statusLocked(namespace, name string) *model.WorkloadStatus {
	l, ok := r.live[key(namespace, name)]
	now := r.now()
	if !ok {
		grace := now.Sub(r.started) < r.ttl
		return &model.WorkloadStatus{Ready: grace, Healthy: grace}
	}
	alive := now.Sub(l.lastSeen) < r.ttl
	return &model.WorkloadStatus{Ready: l.ready, Healthy: alive && l.ready, LastSeen: l.lastSeen}
}

// Run sweeps liveness until ctx ends, notifying Changed when a workload
// goes unhealthy for lack of heartbeats (or the start-up grace ends).
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(r.ttl / 3)
	defer t.Stop()
	graceOver := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := r.now()
		flipped := false
		r.mu.Lock()
		for k, l := range r.live {
			healthy := l.ready && now.Sub(l.lastSeen) < r.ttl
			if healthy != l.healthy {
				l.healthy = healthy
				flipped = true
				r.logger.Info("workload health changed", "workload", k, "healthy", healthy)
			}
		}
		if !graceOver && now.Sub(r.started) >= r.ttl {
			graceOver = true
			flipped = true
		}
		r.mu.Unlock()
		if flipped {
			r.notify()
		}
	}
}
