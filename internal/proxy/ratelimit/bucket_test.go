package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		p    Params
		want string // "" = valid
	}{
		{Params{MaxTokens: 1, TokensPerFill: 1, FillInterval: time.Second}, ""},
		{Params{MaxTokens: 0, TokensPerFill: 1, FillInterval: time.Second}, "max_tokens: must be > 0"},
		{Params{MaxTokens: 1, TokensPerFill: 0, FillInterval: time.Second}, "tokens_per_fill: must be > 0"},
		{Params{MaxTokens: 1, TokensPerFill: 1, FillInterval: 49 * time.Millisecond}, "fill_interval: 49ms, must be >= 50ms"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%+v: Validate() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestTakeSequence(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		at        time.Duration // since t0
		allowed   bool
		remaining uint32
		reset     uint64
	}
	tests := []struct {
		name  string
		p     Params
		steps []step
	}{
		{
			name: "starts full, empties, refills continuously",
			p:    Params{MaxTokens: 3, TokensPerFill: 3, FillInterval: 3 * time.Second}, // 1 token/s
			steps: []step{
				{0, true, 2, 0},
				{0, true, 1, 0},
				{0, true, 0, 1}, // the last token: none left, one takes 1 s
				{0, false, 0, 1},
				{500 * time.Millisecond, false, 0, 1},
				{time.Second, true, 0, 1},
				{10 * time.Second, true, 2, 0}, // refilled to max, not beyond
				{10 * time.Second, true, 1, 0},
			},
		},
		{
			name: "slow fill: reset in whole seconds",
			p:    Params{MaxTokens: 4, TokensPerFill: 4, FillInterval: time.Minute}, // one token per 15 s
			steps: []step{
				{0, true, 3, 0}, {0, true, 2, 0}, {0, true, 1, 0}, {0, true, 0, 15},
				{0, false, 0, 15},
				{14 * time.Second, false, 0, 15},
				{15 * time.Second, true, 0, 15},
			},
		},
		{
			name: "fast fill: Envoy reports reset 0 below a second",
			p:    Params{MaxTokens: 1, TokensPerFill: 10, FillInterval: time.Second},
			steps: []step{
				{0, true, 0, 0},
				{50 * time.Millisecond, false, 0, 0},
				{100 * time.Millisecond, true, 0, 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Validate(); err != nil {
				t.Fatal(err)
			}
			b := New(tt.p, t0)
			for i, s := range tt.steps {
				d := b.Take(t0.Add(s.at))
				if d.Allowed != s.allowed || d.Remaining != s.remaining || d.ResetSeconds != s.reset || d.Limit != tt.p.MaxTokens {
					t.Errorf("step %d at %s: got %+v, want allowed=%v remaining=%d reset=%d limit=%d",
						i, s.at, d, s.allowed, s.remaining, s.reset, tt.p.MaxTokens)
				}
			}
		})
	}
}

// Concurrent takers never get more tokens than the bucket holds.
func TestTakeConcurrent(t *testing.T) {
	now := time.Unix(1000, 0)
	b := New(Params{MaxTokens: 1000, TokensPerFill: 1, FillInterval: time.Hour}, now)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if b.Take(now).Allowed {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != 1000 {
		t.Errorf("allowed %d of 4000 takes, want exactly 1000", got)
	}
}

func BenchmarkTake(b *testing.B) {
	bucket := New(Params{MaxTokens: 1 << 30, TokensPerFill: 1 << 30, FillInterval: time.Second}, time.Now())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bucket.Take(time.Now())
		}
	})
}
