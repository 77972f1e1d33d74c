package controlplane

import (
	"encoding/json"
	"fmt"

	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store"
)

// dependencies remembers, for every compiled proxy, the services its
// configuration depends on (compile.Index.Compile says which), and the
// reverse: for a service, the proxies that call it. Owned by the reconcile
// loop: not safe for concurrent use.
type dependencies struct {
	byProxy   map[string][]model.ServiceRef
	byService map[model.ServiceRef]map[string]struct{}
}

func newDependencies() *dependencies {
	return &dependencies{byProxy: map[string][]model.ServiceRef{}, byService: map[model.ServiceRef]map[string]struct{}{}}
}

// set records what proxy depends on, replacing what it depended on before.
func (d *dependencies) set(proxy string, deps []model.ServiceRef) {
	d.forget(proxy)
	d.byProxy[proxy] = deps
	for _, svc := range deps {
		m := d.byService[svc]
		if m == nil {
			m = map[string]struct{}{}
			d.byService[svc] = m
		}
		m[proxy] = struct{}{}
	}
}

// forget drops a proxy.
func (d *dependencies) forget(proxy string) {
	for _, svc := range d.byProxy[proxy] {
		if m := d.byService[svc]; m != nil {
			delete(m, proxy)
			if len(m) == 0 {
				delete(d.byService, svc)
			}
		}
	}
	delete(d.byProxy, proxy)
}

// addDependents adds to out every proxy that depends on svc.
func (d *dependencies) addDependents(svc model.ServiceRef, out map[string]bool) {
	for p := range d.byService[svc] {
		out[p] = true
	}
}

func decodeWorkload(rec store.Record) (*model.Workload, error) {
	var w model.Workload
	if err := json.Unmarshal(rec.Data, &w); err != nil {
		return nil, fmt.Errorf("decode workload %s/%s: %w", rec.Namespace, rec.Name, err)
	}
	return &w, nil
}
