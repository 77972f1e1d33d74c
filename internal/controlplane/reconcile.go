package controlplane

import (
	"context"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/compile"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store"
)

// debounce groups bursts of changes (an apply of many documents, a wave of
// registrations) into one recompilation. Changes coalesce per proxy: a
// proxy touched by ten changes in one window is compiled once.
const debounce = 50 * time.Millisecond

// loopState is what the reconcile loop owns between rebuilds.
type loopState struct {
	mesh   *meshModel
	deps   *dependencies
	failed map[string]bool // proxies whose last compile failed: retried every rebuild
	// active are the nodes that have opened an ADS stream since this control
	// plane started: only they are compiled (a registered workload whose
	// sidecar never connects costs nothing), and a node is compiled as soon
	// as it connects. Kept after a disconnect, so a reconnecting sidecar
	// finds its configuration current.
	active map[string]bool
}

func (cp *ControlPlane) trigger() {
	cp.wanted.Add(1)
	select {
	case cp.reconcile <- struct{}{}:
	default:
	}
}

// nodeConnected hands a node that opened its first ADS stream to the reconcile loop.
func (cp *ControlPlane) nodeConnected(node string) {
	cp.evMu.Lock()
	cp.connects = append(cp.connects, node)
	cp.evMu.Unlock()
	cp.trigger()
}

// queue hands store events to the reconcile loop; relist asks it to re-read
// the whole store first.
func (cp *ControlPlane) queue(ev *store.Event, relist bool) {
	cp.evMu.Lock()
	if ev != nil {
		cp.events = append(cp.events, *ev)
	}
	cp.relist = cp.relist || relist
	cp.evMu.Unlock()
	cp.trigger()
}

func (cp *ControlPlane) takeEvents() (events []store.Event, connects []string, relist bool) {
	cp.evMu.Lock()
	defer cp.evMu.Unlock()
	events, connects, relist = cp.events, cp.connects, cp.relist
	cp.events, cp.connects, cp.relist = nil, nil, false
	return events, connects, relist
}

// reconcileLoop recompiles the proxies a change affects when the store or
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
	ls := &loopState{mesh: newMeshModel(cp.logger), deps: newDependencies(), failed: map[string]bool{}, active: map[string]bool{}}
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
		cp.rebuild(ctx, ls)
	}
}

// watchStore queues every change of a watched kind; when the watch ends
// early (this watcher fell behind) it watches again and asks for a relist.
// The first watch also asks for one: the model starts empty.
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
		cp.queue(nil, true) // after Watch: nothing between the list and the watch is missed
		for ev := range events {
			if watchedKinds[ev.Record.Kind] {
				cp.queue(&ev, false)
			}
		}
	}
}

// pending reports whether a change has been seen that is not yet compiled
// and published: until then no proxy can be called SYNCED.
func (cp *ControlPlane) pending() bool { return cp.wanted.Load() != cp.built.Load() }

// rebuild folds the queued changes into the model, then compiles and
// publishes the configuration of every proxy they affect.
func (cp *ControlPlane) rebuild(ctx context.Context, ls *loopState) {
	start := time.Now()
	generation := cp.wanted.Load()
	defer cp.built.Store(generation)
	cs := newChangeSet()
	events, connects, relist := cp.takeEvents()
	for _, node := range connects {
		ls.active[node] = true
		cs.proxies[node] = true
	}
	if relist {
		if err := ls.mesh.relist(ctx, cp.store, cs); err != nil {
			cp.logger.Error("rebuild: read the store", "err", err)
			cp.queue(nil, true) // try again after the next debounce; the relist covers the events
			return
		}
	}
	for _, ev := range events {
		ls.mesh.apply(ev, cs)
	}
	ls.mesh.refreshHealth(cp.registry.Status, cs)
	for name := range ls.failed {
		cs.proxies[name] = true
	}
	if cs.empty() {
		return
	}
	for name := range cs.removed {
		cp.xds.ClearNode(name)
		ls.deps.forget(name)
		delete(ls.failed, name)
	}
	targets := ls.targets(cs)
	ix := compile.NewIndex(ls.mesh.input(cp.cfg.TrustDomain))
	for _, r := range cp.compileAll(ix, targets) {
		if r.err != nil {
			// Keep serving the last good configuration for this proxy.
			cp.logger.Error("compile failed; proxy keeps its last config", "workload", r.name, "err", r.err)
			ls.failed[r.name] = true
			continue
		}
		delete(ls.failed, r.name)
		ls.deps.set(r.name, r.deps)
	}
	if hook := cp.compiledHook; hook != nil {
		hook(targets)
	}
	cp.logger.Debug("rebuilt proxy configs", "proxies", len(targets), "workloads", len(ls.mesh.workloads), "took", time.Since(start))
}

// targets are the connected proxies a change set affects, sorted.
func (ls *loopState) targets(cs *changeSet) []string {
	want := map[string]bool{}
	if cs.all {
		for name := range ls.mesh.workloads {
			want[name] = true
		}
	}
	for name := range cs.proxies {
		want[name] = true
	}
	for svc := range cs.services {
		ls.deps.addDependents(svc, want)
	}
	out := make([]string, 0, len(want))
	for name := range want {
		if _, ok := ls.mesh.workloads[name]; ok && ls.active[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// compileResult is one proxy's compile and publish.
type compileResult struct {
	name string
	deps []model.ServiceRef
	err  error
}

// compileAll compiles and publishes proxies in parallel, one worker per CPU.
func (cp *ControlPlane) compileAll(ix *compile.Index, names []string) []compileResult {
	results := make([]compileResult, len(names))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(names)) {
		wg.Go(func() {
			for i := range next {
				results[i] = cp.compileOne(ix, names[i])
			}
		})
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

func (cp *ControlPlane) compileOne(ix *compile.Index, name string) compileResult {
	cp.compiles.Add(1)
	set, deps, err := ix.Compile(name)
	if err != nil {
		return compileResult{name: name, err: err}
	}
	if err := cp.xds.SetResources(name, set); err != nil {
		cp.logger.Error("publish failed", "workload", name, "err", err)
	}
	return compileResult{name: name, deps: deps}
}
