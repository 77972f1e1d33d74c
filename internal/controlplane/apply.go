package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store"
)

// applyPlan is what an apply would store, decided before anything is written.
type applyPlan struct {
	records  []store.Record
	results  []string
	warnings []string
}

// planApply decodes and validates documents exactly like `trellis validate`
// (model.Decode + model.Validate), then checks references against what is
// already stored. Any error rejects the whole apply.
func (cp *ControlPlane) planApply(ctx context.Context, body []byte, source string) (*applyPlan, error) {
	objs, warnings, err := model.DecodeAndValidate(body, source)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s: no documents", source)
	}
	plan := &applyPlan{warnings: warnings}
	var errs []error
	incoming := map[model.Key]model.Object{}
	for _, obj := range objs {
		k := obj.Key()
		if !applyableKinds[k.Kind] {
			errs = append(errs, fmt.Errorf("%s: %s: kind %s cannot be applied (workloads are registered by their sidecars; a Mesh file is run with `trellis up`)", source, k, k.Kind))
			continue
		}
		if _, dup := incoming[k]; dup {
			errs = append(errs, fmt.Errorf("%s: %s: appears twice in one apply", source, k))
			continue
		}
		incoming[k] = obj
		data, err := json.Marshal(obj)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: encode: %w", source, k, err))
			continue
		}
		verb := "created"
		if old, err := cp.store.Get(ctx, k.Kind, k.Namespace, k.Name); err == nil {
			verb = "configured"
			if bytes.Equal(old.Data, data) {
				verb = "unchanged"
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		plan.records = append(plan.records, store.Record{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name, Data: data})
		plan.results = append(plan.results, fmt.Sprintf("%s %s", k, verb))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// References are checked over the config as it would be after the apply,
	// so the order in which documents are applied does not matter.
	current, err := cp.loadConfig(ctx)
	if err != nil {
		return nil, err
	}
	merged := make([]model.Object, 0, len(current)+len(incoming))
	for _, obj := range current {
		if _, replaced := incoming[obj.Key()]; !replaced {
			merged = append(merged, obj)
		}
	}
	for _, obj := range objs {
		merged = append(merged, obj)
	}
	plan.warnings = append(plan.warnings, model.CheckReferences(merged)...)
	return plan, nil
}

// loadConfig reads every stored configuration object of the kinds apply accepts.
func (cp *ControlPlane) loadConfig(ctx context.Context) ([]model.Object, error) {
	var out []model.Object
	for kind := range applyableKinds {
		recs, err := cp.store.List(ctx, kind)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", kind, err)
		}
		for _, rec := range recs {
			obj, err := model.DecodeObject(kind, rec.Data)
			if err != nil {
				cp.logger.Error("skipping unreadable stored object", "kind", kind, "name", rec.Name, "err", err)
				continue
			}
			out = append(out, obj)
		}
	}
	return out, nil
}
