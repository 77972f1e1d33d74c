package controlplane

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"

	"github.com/trellis-mesh/trellis/internal/compile"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store"
)

// meshModel is the control plane's in-memory copy of what compile reads:
// workloads (with their health), VirtualServices, DestinationRules, the
// front ends converted into them (TrafficSplit, ServiceProfile, HTTPRoute),
// the local rate limits (RateLimit, EnvoyFilter) and the security policies
// (PeerAuthentication, AuthorizationPolicy, RequestAuthentication). It is fed by store
// watch events, each decoded once, and says which services and workloads a
// change touches, so only the proxies that depend on them are recompiled. It is owned by the reconcile loop: not safe for
// concurrent use.
type meshModel struct {
	logger    *slog.Logger
	workloads map[string]*workloadEntry // by workload name (the node id)
	configs   map[model.Key]*configEntry
}

// workloadEntry is one registered workload. w is immutable once stored: a
// health change stores a new copy, so an Index built earlier is unaffected.
type workloadEntry struct {
	rev uint64
	sum recordSum       // of the stored bytes: a write that changes nothing is ignored
	w   *model.Workload // Status: as last compiled
}

// configEntry is one routing, policy or rate limit object.
type configEntry struct {
	rev   uint64
	sum   recordSum
	obj   model.Object
	hosts []model.ServiceRef // the services it shapes
}

// recordSum is the SHA-256 of a stored record's bytes. The model keeps it
// instead of the bytes (10,000 workloads: 0.3 MB instead of 5.5).
type recordSum [sha256.Size]byte

// changeSet is what a batch of changes touched.
type changeSet struct {
	services map[model.ServiceRef]bool // recompile every proxy depending on these
	proxies  map[string]bool           // recompile these (their own spec changed)
	removed  map[string]bool           // workloads gone: clear their nodes
	all      bool                      // recompile everything (a relist)
}

func newChangeSet() *changeSet {
	return &changeSet{services: map[model.ServiceRef]bool{}, proxies: map[string]bool{}, removed: map[string]bool{}}
}

func (c *changeSet) empty() bool {
	return !c.all && len(c.services) == 0 && len(c.proxies) == 0 && len(c.removed) == 0
}

func newMeshModel(logger *slog.Logger) *meshModel {
	return &meshModel{logger: logger, workloads: map[string]*workloadEntry{}, configs: map[model.Key]*configEntry{}}
}

// watchedKinds are the kinds the model holds; other store changes (tokens,
// the CA, mesh info) do not touch any proxy.
var watchedKinds = map[string]bool{
	model.KindWorkload:              true,
	model.KindVirtualService:        true,
	model.KindDestinationRule:       true,
	model.KindTrafficSplit:          true,
	model.KindServiceProfile:        true,
	model.KindGatewayHTTPRoute:      true,
	model.KindRateLimit:             true,
	model.KindEnvoyFilter:           true,
	model.KindPeerAuthentication:    true,
	model.KindAuthorizationPolicy:   true,
	model.KindRequestAuthentication: true,
}

// relist replaces the model with the store's contents and marks everything changed.
func (m *meshModel) relist(ctx context.Context, st store.Store, cs *changeSet) error {
	fresh := newMeshModel(m.logger)
	for kind := range watchedKinds {
		recs, err := st.List(ctx, kind)
		if err != nil {
			return fmt.Errorf("list %s: %w", kind, err)
		}
		for _, rec := range recs {
			fresh.apply(store.Event{Type: store.EventPut, Record: rec}, newChangeSet())
		}
	}
	for name := range m.workloads {
		if _, ok := fresh.workloads[name]; !ok {
			cs.removed[name] = true
		}
	}
	m.workloads, m.configs = fresh.workloads, fresh.configs
	cs.all = true
	return nil
}

// apply folds one store event into the model and records what it touched.
// Events older than what the model holds (seen again after a relist) and
// writes that change nothing are ignored.
func (m *meshModel) apply(ev store.Event, cs *changeSet) {
	rec := ev.Record
	if rec.Kind == model.KindWorkload {
		m.applyWorkload(ev, cs)
		return
	}
	if !watchedKinds[rec.Kind] {
		return
	}
	k := model.Key{Kind: rec.Kind, Namespace: rec.Namespace, Name: rec.Name}
	old := m.configs[k]
	if old != nil && rec.Revision <= old.rev {
		return
	}
	if ev.Type == store.EventDelete {
		if old != nil {
			delete(m.configs, k)
			markAll(cs.services, old.hosts)
			m.markServers(old.obj, cs)
		}
		return
	}
	sum := sha256.Sum256(rec.Data)
	if old != nil && old.sum == sum {
		old.rev = rec.Revision
		return
	}
	obj, err := model.DecodeObject(rec.Kind, rec.Data)
	if err != nil {
		m.logger.Error("skipping unreadable stored object", "kind", rec.Kind, "name", rec.Name, "err", err)
		return
	}
	e := &configEntry{rev: rec.Revision, sum: sum, obj: obj, hosts: configHosts(obj)}
	m.configs[k] = e
	markAll(cs.services, e.hosts)
	m.markServers(obj, cs)
	if old != nil {
		markAll(cs.services, old.hosts)
		m.markServers(old.obj, cs)
	}
}

// markServers marks the workloads whose own (inbound) configuration obj
// shapes: a RateLimit's service's workloads, those an EnvoyFilter, an
// AuthorizationPolicy or a RequestAuthentication selects (root-namespace
// policies select across namespaces). Their callers are not affected,
// except by a PeerAuthentication: a DISABLE server is called in plaintext,
// so the services of the workloads it selects are marked too.
func (m *meshModel) markServers(obj model.Object, cs *changeSet) {
	var applies func(w *model.Workload) bool
	callers := false
	switch o := obj.(type) {
	case *model.RateLimit:
		ref := model.ResolveHost(o.Spec.Service, o.NamespaceOrDefault())
		applies = func(w *model.Workload) bool { return serviceOf(w) == ref }
	case *model.EnvoyFilter:
		applies = o.Selects
	case *model.PeerAuthentication:
		applies = func(w *model.Workload) bool { return compile.SecurityPolicySelects(o, w) }
		callers = true
	case *model.AuthorizationPolicy, *model.RequestAuthentication:
		applies = func(w *model.Workload) bool { return compile.SecurityPolicySelects(o, w) }
	default:
		return
	}
	for name, e := range m.workloads {
		if applies(e.w) {
			cs.proxies[name] = true
			if callers {
				cs.services[serviceOf(e.w)] = true
			}
		}
	}
}

func (m *meshModel) applyWorkload(ev store.Event, cs *changeSet) {
	rec := ev.Record
	old := m.workloads[rec.Name]
	if old != nil && rec.Revision <= old.rev {
		return
	}
	if ev.Type == store.EventDelete {
		if old != nil {
			delete(m.workloads, rec.Name)
			cs.removed[rec.Name] = true
			cs.services[serviceOf(old.w)] = true
		}
		return
	}
	sum := sha256.Sum256(rec.Data)
	if old != nil && old.sum == sum {
		old.rev = rec.Revision
		return
	}
	w, err := decodeWorkload(rec)
	if err != nil {
		m.logger.Error("skipping unreadable workload record", "name", rec.Name, "err", err)
		return
	}
	if old != nil {
		w.Status = old.w.Status
		cs.services[serviceOf(old.w)] = true
	}
	m.workloads[rec.Name] = &workloadEntry{rev: rec.Revision, sum: sum, w: w}
	delete(cs.removed, rec.Name)
	cs.services[serviceOf(w)] = true
	cs.proxies[rec.Name] = true
}

// refreshHealth asks status for every workload's health and records the
// services whose endpoints changed.
func (m *meshModel) refreshHealth(status func(namespace, name string) *model.WorkloadStatus, cs *changeSet) {
	for _, e := range m.workloads {
		st := status(e.w.NamespaceOrDefault(), e.w.Name)
		if e.w.Status != nil && e.w.Status.Healthy == st.Healthy && e.w.Status.Ready == st.Ready {
			continue
		}
		w := *e.w
		w.Status = &model.WorkloadStatus{Ready: st.Ready, Healthy: st.Healthy}
		e.w = &w
		cs.services[serviceOf(e.w)] = true
	}
}

// input is the model as compile's Input.
func (m *meshModel) input(trustDomain string) *compile.Input {
	in := &compile.Input{TrustDomain: trustDomain, Workloads: make([]*model.Workload, 0, len(m.workloads))}
	for _, e := range m.workloads {
		in.Workloads = append(in.Workloads, e.w)
	}
	for _, e := range m.configs {
		in.Add(e.obj)
	}
	return in
}

func serviceOf(w *model.Workload) model.ServiceRef {
	return model.ServiceRef{Namespace: w.NamespaceOrDefault(), Name: w.Spec.Service}
}

// configHosts are the services whose callers' configuration obj shapes:
// the hosts a VirtualService routes or a DestinationRule configures, the
// root service of a TrafficSplit, the service of a ServiceProfile, the
// Services an HTTPRoute attaches to. Rate limits shape their servers'
// inbound side only (markServers).
func configHosts(obj model.Object) []model.ServiceRef {
	switch o := obj.(type) {
	case *model.VirtualService:
		out := make([]model.ServiceRef, 0, len(o.Spec.Hosts))
		for _, h := range o.Spec.Hosts {
			out = append(out, model.ResolveHost(h, o.NamespaceOrDefault()))
		}
		return out
	case *model.DestinationRule:
		return []model.ServiceRef{model.ResolveHost(o.Spec.Host, o.NamespaceOrDefault())}
	case *model.TrafficSplit:
		return []model.ServiceRef{model.ResolveHost(o.Spec.Service, o.NamespaceOrDefault())}
	case *model.ServiceProfile:
		return []model.ServiceRef{o.Service()}
	case *model.GatewayHTTPRoute:
		return o.Parents()
	}
	return nil
}

func markAll(set map[model.ServiceRef]bool, refs []model.ServiceRef) {
	for _, r := range refs {
		set[r] = true
	}
}
