package resetguard

import (
	"sync"
	"testing"
	"time"
)

func TestGuard(t *testing.T) {
	tests := []struct {
		name      string
		streams   int           // opened
		resets    int           // of which reset by the client
		age       time.Duration // of each reset stream
		wantAbuse bool
	}{
		{"below the stream count", 499, 499, 0, false},
		{"all reset at once", 500, 500, 0, true},
		{"exactly half", 1000, 500, time.Millisecond, false},
		{"just over half", 1000, 501, time.Millisecond, true},
		{"old streams are not premature", 1000, 1000, 2 * time.Second, false},
		{"normal cancellations", 10000, 100, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(0, 0)
			for range tt.streams {
				g.Opened()
			}
			trips := 0
			for range tt.resets {
				if g.Reset(tt.age) {
					trips++
				}
			}
			if got := trips == 1; got != tt.wantAbuse || trips > 1 {
				t.Fatalf("tripped %d times, want abusive=%v", trips, tt.wantAbuse)
			}
			if g.Tripped() != tt.wantAbuse {
				t.Fatalf("Tripped() = %v", g.Tripped())
			}
		})
	}
}

func TestGuardInterleaved(t *testing.T) {
	// Streams opened and reset one after another, as an attacker does: the
	// guard trips as soon as 500 streams were seen.
	g := New(0, 0)
	for i := 1; i <= 1000; i++ {
		g.Opened()
		if g.Reset(0) {
			if i != DefaultMinStreams {
				t.Fatalf("tripped at stream %d, want %d", i, DefaultMinStreams)
			}
			return
		}
	}
	t.Fatal("never tripped")
}

func TestGuardConcurrent(t *testing.T) {
	g := New(100, time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	trips := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				g.Opened()
				if g.Reset(0) {
					mu.Lock()
					trips++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if trips != 1 {
		t.Fatalf("tripped %d times, want exactly once", trips)
	}
}
