package retry

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestTranslateBudget(t *testing.T) {
	md := func(fields map[string]any) *corev3.Metadata {
		rb, err := structpb.NewStruct(fields)
		if err != nil {
			t.Fatal(err)
		}
		return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"trellis": {Fields: map[string]*structpb.Value{
			"retry_budget": structpb.NewStructValue(rb),
		}}}}
	}
	tests := []struct {
		name    string
		md      *corev3.Metadata
		want    BudgetConfig
		wantErr string
	}{
		{"absent", nil, DefaultBudget(), ""},
		{"full", md(map[string]any{"retry_ratio": 0.1, "min_retries_per_second": 5.0, "ttl": "30s"}), BudgetConfig{0.1, 5, 30 * time.Second}, ""},
		{"fractional ttl", md(map[string]any{"ttl": "1.5s"}), BudgetConfig{0.2, 10, 1500 * time.Millisecond}, ""},
		{"ttl seconds", md(map[string]any{"ttl": 2.0}), BudgetConfig{0.2, 10, 2 * time.Second}, ""},
		{"partial", md(map[string]any{"retry_ratio": 0.0}), BudgetConfig{0, 10, 10 * time.Second}, ""},
		{"bad ratio", md(map[string]any{"retry_ratio": "lots"}), BudgetConfig{}, "retry_budget.retry_ratio"},
		{"negative min", md(map[string]any{"min_retries_per_second": -1.0}), BudgetConfig{}, "min_retries_per_second"},
		{"zero ttl", md(map[string]any{"ttl": "0s"}), BudgetConfig{}, "retry_budget.ttl"},
		{"unknown field", md(map[string]any{"percent": 20.0}), BudgetConfig{}, "retry_budget.percent: unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TranslateBudget(tt.md)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("budget (-want +got):\n%s", diff)
			}
		})
	}
}
