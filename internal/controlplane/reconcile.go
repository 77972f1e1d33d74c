package controlplane

import (
	"context"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/compile"
	"github.com/trellis-mesh/trellis/internal/model"
)

// debounce groups bursts of changes (an apply of many documents, a wave of
// registrations) into one recompilation.
const debounce = 50 * time.Millisecond

func (cp *ControlPlane) trigger() {
	cp.wanted.Add(1)
	select {
	case cp.reconcile <- struct{}{}:
	default:
	}
}

// reconcileLoop recompiles every proxy's configuration when the store or
// workload health changes, until ctx ends.
func (cp *ControlPlane) reconcileLoop(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { cp.watchStore(ctx) })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-cp.registry.Changed():
				cp.trigger()
			}
		}
	})
	cp.trigger()
	for {
		select {
		case <-ctx.Done():
			return
		case <-cp.reconcile:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(debounce):
		}
		cp.rebuild(ctx)
	}
}

// watchStore triggers a rebuild for every store change; when the watch ends
// early (this watcher fell behind) it watches again.
func (cp *ControlPlane) watchStore(ctx context.Context) {
	for ctx.Err() == nil {
		events, err := cp.store.Watch(ctx, "")
		if err != nil {
			cp.logger.Error("store watch failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		for range events {
			cp.trigger()
		}
		cp.trigger() // the watch ended: something may have been missed
	}
}

// pending reports whether a change has been seen that is not yet compiled
// and published: until then no proxy can be called SYNCED.
func (cp *ControlPlane) pending() bool { return cp.wanted.Load() != cp.built.Load() }

// rebuild compiles and publishes the configuration of every registered workload.
func (cp *ControlPlane) rebuild(ctx context.Context) {
	start := time.Now()
	generation := cp.wanted.Load()
	defer cp.built.Store(generation)
	workloads, err := cp.registry.Workloads(ctx)
	if err != nil {
		cp.logger.Error("rebuild: list workloads", "err", err)
		return
	}
	cfg, err := cp.loadConfig(ctx)
	if err != nil {
		cp.logger.Error("rebuild: load config", "err", err)
		return
	}
	in := &compile.Input{TrustDomain: cp.cfg.TrustDomain, Workloads: workloads}
	for _, obj := range cfg {
		switch o := obj.(type) {
		case *model.VirtualService:
			in.VirtualServices = append(in.VirtualServices, o)
		case *model.DestinationRule:
			in.DestinationRules = append(in.DestinationRules, o)
		}
	}
	live := map[string]bool{}
	for _, w := range workloads {
		live[w.Name] = true
		set, err := compile.Proxy(in, w.Name)
		if err != nil {
			// Keep serving the last good configuration for this proxy.
			cp.logger.Error("compile failed; proxy keeps its last config", "workload", w.Name, "err", err)
			continue
		}
		if err := cp.xds.SetResources(w.Name, set); err != nil {
			cp.logger.Error("publish failed", "workload", w.Name, "err", err)
		}
	}
	cp.mu.Lock()
	for node := range cp.published {
		if !live[node] {
			cp.xds.ClearNode(node)
		}
	}
	cp.published = live
	cp.mu.Unlock()
	cp.logger.Debug("rebuilt proxy configs", "proxies", len(workloads), "took", time.Since(start))
}
