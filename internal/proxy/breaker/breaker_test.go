package breaker

import (
	"strings"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestGaugeLimit(t *testing.T) {
	b := New(Thresholds{MaxRequests: 2, MaxPendingRequests: 0, MaxRetries: 1, MaxConnections: 1})
	if !b.Requests.TryAcquire() || !b.Requests.TryAcquire() {
		t.Fatal("could not take 2 of 2")
	}
	if b.Requests.TryAcquire() {
		t.Fatal("took a third request of 2")
	}
	b.Requests.Release()
	if !b.Requests.TryAcquire() {
		t.Fatal("released unit not available")
	}
	if b.Retries.TryAcquire(); b.Retries.TryAcquire() {
		t.Fatal("took a second retry of 1")
	}
	if got := b.Requests.InUse(); got != 2 {
		t.Errorf("in use = %d, want 2", got)
	}
}

func TestGaugeConcurrent(t *testing.T) {
	b := New(Thresholds{MaxRequests: 10})
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := int64(0)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				if b.Requests.TryAcquire() {
					if n := b.Requests.InUse(); n > 10 {
						mu.Lock()
						peak = max(peak, n)
						mu.Unlock()
					}
					b.Requests.Release()
				}
			}
		}()
	}
	wg.Wait()
	// InUse may briefly read above the limit while a refused Add is undone,
	// but never by more than the number of racing goroutines.
	if peak > 18 {
		t.Errorf("peak in use %d", peak)
	}
	if b.Requests.InUse() != 0 {
		t.Errorf("leaked %d units", b.Requests.InUse())
	}
}

func TestTranslate(t *testing.T) {
	tests := []struct {
		name    string
		in      *clusterv3.CircuitBreakers
		want    Thresholds
		wantErr string
	}{
		{"absent", nil, DefaultThresholds(), ""},
		{"default priority", &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections: wrapperspb.UInt32(1), MaxPendingRequests: wrapperspb.UInt32(1),
			MaxRequests: wrapperspb.UInt32(100), MaxRetries: wrapperspb.UInt32(5),
		}}}, Thresholds{1, 1, 100, 5}, ""},
		{"partial", &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxRetries: wrapperspb.UInt32(0),
		}}}, Thresholds{1024, 1024, 1024, 0}, ""},
		{"high priority ignored", &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority: corev3.RoutingPriority_HIGH, MaxRequests: wrapperspb.UInt32(1),
		}}}, DefaultThresholds(), ""},
		{"per host", &clusterv3.CircuitBreakers{PerHostThresholds: []*clusterv3.CircuitBreakers_Thresholds{{}}}, Thresholds{}, "per_host_thresholds"},
		{"retry budget", &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{},
		}}}, Thresholds{}, "thresholds[0].retry_budget"},
		{"duplicate priority", &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{}, {}}}, Thresholds{}, "thresholds[1].priority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Translate(tt.in)
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
				t.Errorf("thresholds (-want +got):\n%s", diff)
			}
		})
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	br := New(DefaultThresholds())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if br.Requests.TryAcquire() {
				br.Requests.Release()
			}
		}
	})
}
