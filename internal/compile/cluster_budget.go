package compile

import (
	"fmt"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// The Linkerd-style retry budget of ADR 001, in the cluster's
// metadata.filter_metadata["trellis"], for lack of an Envoy field with
// these semantics. Defaults are Linkerd's, the proxy's when no budget is
// configured.
const (
	metadataNamespace         = "trellis"
	retryBudgetKey            = "retry_budget"
	defaultRetryRatio         = 0.2
	defaultMinRetriesPerSec   = 10
	defaultRetryBudgetTTL     = 10 * time.Second
	retryBudgetPercentToRatio = 100
)

// retryBudgetMetadata is the cluster metadata carrying a retryBudget:
// filter_metadata["trellis"].retry_budget = {retry_ratio: percent / 100,
// min_retries_per_second: minRetryConcurrency, ttl: budgetInterval}, each
// defaulted (0.2, 10, "10s") when unset. Istio's minRetryConcurrency is
// read as retries per second and budgetInterval as Linkerd's ttl (ADR 001).
// Nil without a budget: the proxy applies the defaults itself.
func retryBudgetMetadata(rb *model.RetryBudget) (*corev3.Metadata, error) {
	if rb == nil {
		return nil, nil
	}
	ratio := defaultRetryRatio
	if rb.Percent != nil {
		ratio = *rb.Percent / retryBudgetPercentToRatio
	}
	minPerSec := float64(defaultMinRetriesPerSec)
	if rb.MinRetryConcurrency > 0 {
		minPerSec = float64(rb.MinRetryConcurrency)
	}
	ttl := defaultRetryBudgetTTL
	if rb.BudgetInterval != "" {
		d, err := model.ParseDuration(rb.BudgetInterval)
		if err != nil {
			return nil, fmt.Errorf("retryBudget.budgetInterval: %w", err)
		}
		ttl = d
	}
	budget, err := structpb.NewStruct(map[string]any{
		"retry_ratio":            ratio,
		"min_retries_per_second": minPerSec,
		"ttl":                    protoDuration(ttl),
	})
	if err != nil {
		return nil, fmt.Errorf("retryBudget: %w", err)
	}
	md := &structpb.Struct{Fields: map[string]*structpb.Value{retryBudgetKey: structpb.NewStructValue(budget)}}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{metadataNamespace: md}}, nil
}

// protoDuration writes d as protobuf's JSON duration ("10s", "0.25s"),
// which Go's time.ParseDuration also reads.
func protoDuration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}
