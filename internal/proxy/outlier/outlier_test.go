package outlier

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

type fixture struct {
	d       *Detector
	clk     *clock
	hosts   []*Host
	changes int
	c       *Counters
}

func newFixture(cfg Config, n int) *fixture {
	f := &fixture{clk: &clock{t: time.Unix(1000, 0)}, c: &Counters{}}
	f.d = New(cfg, Options{
		Now:      f.clk.now,
		Rand:     func(n uint64) uint64 { return 0 },
		Counters: f.c,
		OnChange: func() { f.changes++ },
	})
	for range n {
		f.hosts = append(f.hosts, &Host{})
	}
	f.d.SetHosts(f.hosts)
	return f
}

func (f *fixture) report(h int, status, times int) {
	for range times {
		f.d.Report(f.hosts[h], status)
	}
}

func testConfig() Config {
	c := DefaultConfig()
	c.Consecutive5xx = 3
	c.ConsecutiveGateway = 2
	c.EnforcingGateway = 100
	c.EnforcingSuccessRate = 0
	c.Interval = time.Second
	c.BaseEjectionTime = 10 * time.Second
	c.MaxEjectionPercent = 100
	return c
}

func TestConsecutive(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(*Config)
		statuses []int
		want     bool
	}{
		{"three 500s", nil, []int{500, 500, 500}, true},
		{"two 500s", nil, []int{500, 500}, false},
		{"success resets", nil, []int{500, 500, 200, 500}, false},
		{"4xx resets", nil, []int{500, 500, 404, 500, 500}, false},
		{"two gateway errors", nil, []int{503, 502}, true},
		{"500 breaks a gateway run", func(c *Config) { c.Consecutive5xx = 10 }, []int{503, 500, 504}, false},
		{"gateway not enforced", func(c *Config) { c.EnforcingGateway = 0 }, []int{503, 503}, false},
		{"gateway not enforced, 5xx is", func(c *Config) { c.EnforcingGateway = 0 }, []int{503, 503, 503}, true},
		{"5xx disabled", func(c *Config) { c.Consecutive5xx = 0; c.ConsecutiveGateway = 0 }, []int{500, 500, 500, 500}, false},
		{"5xx not enforced", func(c *Config) { c.Enforcing5xx = 0 }, []int{500, 500, 500}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			f := newFixture(cfg, 4)
			for _, s := range tt.statuses {
				f.d.Report(f.hosts[0], s)
			}
			if got := f.hosts[0].Ejected(); got != tt.want {
				t.Errorf("ejected = %t, want %t", got, tt.want)
			}
			if tt.want && (f.changes != 1 || f.c.EjectionsActive.Load() != 1 || f.c.EjectionsTotal.Load() != 1) {
				t.Errorf("changes %d, active %d, total %d; want 1 each", f.changes, f.c.EjectionsActive.Load(), f.c.EjectionsTotal.Load())
			}
		})
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		name      string
		hosts     int
		pct       uint32
		alwaysOne bool
		want      int
	}{
		{"10% of 10", 10, 10, false, 1},
		{"10% of 2", 2, 10, false, 0},
		{"10% of 2, always one", 2, 10, true, 1},
		{"50% of 4", 4, 50, false, 2},
		{"100% of 3", 3, 100, false, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxEjectionPercent = tt.pct
			cfg.AlwaysEjectOneHost = tt.alwaysOne
			f := newFixture(cfg, tt.hosts)
			for i := range tt.hosts {
				f.report(i, 500, 3)
			}
			got := 0
			for _, h := range f.hosts {
				if h.Ejected() {
					got++
				}
			}
			if got != tt.want || f.c.EjectionsActive.Load() != int64(tt.want) {
				t.Errorf("ejected %d (active %d), want %d", got, f.c.EjectionsActive.Load(), tt.want)
			}
			if over := f.c.EjectionsOverflow.Load(); over != uint64(tt.hosts-tt.want) {
				t.Errorf("overflow %d, want %d", over, tt.hosts-tt.want)
			}
		})
	}
}

// TestEjectionTimeGrows: ejected for base × times ejected, returned at the
// first interval tick after that; the multiplier drops again while healthy.
func TestEjectionTimeGrows(t *testing.T) {
	cfg := testConfig()
	cfg.MaxEjectionTime = 25 * time.Second
	f := newFixture(cfg, 4)
	h := f.hosts[0]
	ejectFor := func() time.Duration {
		f.report(0, 500, 3)
		if !h.Ejected() {
			t.Fatal("not ejected")
		}
		var d time.Duration
		for !f.d.Tick() || h.Ejected() {
			f.clk.advance(time.Second)
			d += time.Second
			if d > time.Minute {
				t.Fatal("never returned")
			}
		}
		return d
	}
	for i, want := range []time.Duration{10, 20, 25, 25} { // capped by max_ejection_time
		if got := ejectFor(); got != want*time.Second {
			t.Errorf("ejection %d lasted %v, want %v", i+1, got, want*time.Second)
		}
	}
	// The multiplier is 4 now (it stops growing once base × multiplier
	// exceeds max + base); four healthy intervals bring it back to 0.
	for range 4 {
		f.clk.advance(time.Second)
		f.d.Tick()
	}
	if got := ejectFor(); got != 10*time.Second {
		t.Errorf("after healthy intervals the ejection lasted %v, want the base 10s", got)
	}
	if f.c.EjectionsTotal.Load() != 5 || f.c.EjectionsActive.Load() != 0 {
		t.Errorf("total %d active %d, want 5 and 0", f.c.EjectionsTotal.Load(), f.c.EjectionsActive.Load())
	}
}

func TestReturnResetsCounters(t *testing.T) {
	f := newFixture(testConfig(), 4)
	f.report(0, 500, 2)
	f.report(1, 500, 3)
	f.clk.advance(10 * time.Second)
	f.d.Tick()
	if f.hosts[1].Ejected() {
		t.Fatal("host 1 not returned")
	}
	f.report(1, 500, 2)
	if f.hosts[1].Ejected() {
		t.Error("returned host ejected again after 2 errors: counters not reset")
	}
	f.report(0, 500, 1)
	if !f.hosts[0].Ejected() {
		t.Error("host 0 not ejected after its 3rd consecutive error")
	}
}

func TestSuccessRate(t *testing.T) {
	cfg := testConfig()
	cfg.Consecutive5xx, cfg.ConsecutiveGateway = 0, 0
	cfg.EnforcingSuccessRate = 100
	cfg.SuccessRateMinHosts = 5
	cfg.SuccessRateRequestVolume = 10
	f := newFixture(cfg, 6)
	for i := range 5 {
		f.report(i, 200, 20)
	}
	f.report(5, 200, 10)
	f.report(5, 500, 10) // 50% success against 100% for the others
	if !f.d.Tick() || !f.hosts[5].Ejected() {
		t.Fatal("low success rate host not ejected")
	}
	for i := range 5 {
		if f.hosts[i].Ejected() {
			t.Errorf("healthy host %d ejected", i)
		}
	}
	// Too few hosts with volume: no success-rate ejection.
	g := newFixture(cfg, 6)
	for i := range 3 {
		g.report(i, 200, 20)
	}
	g.report(5, 500, 20)
	if g.d.Tick() || g.hosts[5].Ejected() {
		t.Error("ejected with fewer than success_rate_minimum_hosts hosts")
	}
}

func TestFailurePercentage(t *testing.T) {
	cfg := testConfig()
	cfg.Consecutive5xx, cfg.ConsecutiveGateway = 0, 0
	cfg.EnforcingSuccessRate = 0
	cfg.EnforcingFailurePercentage = 100
	cfg.FailurePercentageMinHosts = 2
	cfg.FailurePercentageRequestVolume = 10
	cfg.FailurePercentageThreshold = 50
	f := newFixture(cfg, 2)
	f.report(0, 200, 10)
	f.report(1, 500, 6)
	f.report(1, 200, 4)
	if !f.d.Tick() || !f.hosts[1].Ejected() || f.hosts[0].Ejected() {
		t.Errorf("ejected = %t %t, want false true", f.hosts[0].Ejected(), f.hosts[1].Ejected())
	}
}

func TestSetHostsAndStop(t *testing.T) {
	f := newFixture(testConfig(), 3)
	f.report(0, 500, 3)
	f.d.SetHosts(f.hosts[1:])
	if got := f.c.EjectionsActive.Load(); got != 0 {
		t.Errorf("active after removing the ejected host = %d", got)
	}
	f.d.SetHosts(f.hosts)
	if got := f.c.EjectionsActive.Load(); got != 1 {
		t.Errorf("active after re-adding it = %d", got)
	}
	f.d.Stop()
	if got := f.c.EjectionsActive.Load(); got != 0 {
		t.Errorf("active after Stop = %d", got)
	}
	f.report(1, 500, 3)
	if f.hosts[1].Ejected() {
		t.Error("a stopped detector ejected")
	}
}

func TestTimerReturnsHost(t *testing.T) {
	cfg := testConfig()
	cfg.Interval = 10 * time.Millisecond
	cfg.BaseEjectionTime = 30 * time.Millisecond
	changed := make(chan struct{}, 4)
	d := New(cfg, Options{OnChange: func() { changed <- struct{}{} }})
	h := &Host{}
	d.SetHosts([]*Host{h, {}})
	d.Start()
	defer d.Stop()
	for range 3 {
		d.Report(h, 500)
	}
	<-changed
	if !h.Ejected() {
		t.Fatal("not ejected")
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("not returned by the interval timer")
	}
	if h.Ejected() {
		t.Error("still ejected")
	}
}

func TestTranslate(t *testing.T) {
	got, err := Translate(&clusterv3.OutlierDetection{
		Consecutive_5Xx:                    wrapperspb.UInt32(7),
		ConsecutiveGatewayFailure:          wrapperspb.UInt32(3),
		EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		EnforcingSuccessRate:               wrapperspb.UInt32(0),
		Interval:                           durationpb.New(time.Second),
		BaseEjectionTime:                   durationpb.New(5 * time.Second),
		MaxEjectionPercent:                 wrapperspb.UInt32(50),
		AlwaysEjectOneHost:                 wrapperspb.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Consecutive5xx != 7 || got.Enforcing5xx != 100 || got.ConsecutiveGateway != 3 || got.EnforcingGateway != 100 ||
		got.EnforcingSuccessRate != 0 || got.Interval != time.Second || got.BaseEjectionTime != 5*time.Second ||
		got.MaxEjectionTime != 300*time.Second || got.MaxEjectionPercent != 50 || !got.AlwaysEjectOneHost {
		t.Errorf("config = %+v", got)
	}
	if c, _ := Translate(nil); c != nil {
		t.Error("nil outlier_detection translated to a config")
	}
	if d, _ := Translate(&clusterv3.OutlierDetection{}); *d != DefaultConfig() {
		t.Errorf("empty outlier_detection = %+v, want the defaults", d)
	}
	bad := []struct {
		od   *clusterv3.OutlierDetection
		want string
	}{
		{&clusterv3.OutlierDetection{SplitExternalLocalOriginErrors: true}, "split_external_local_origin_errors"},
		{&clusterv3.OutlierDetection{MaxEjectionPercent: wrapperspb.UInt32(101)}, "max_ejection_percent: 101"},
		{&clusterv3.OutlierDetection{EnforcingConsecutive_5Xx: wrapperspb.UInt32(200)}, "enforcing_consecutive_5xx"},
		{&clusterv3.OutlierDetection{Interval: durationpb.New(0)}, "interval: invalid duration"},
		{&clusterv3.OutlierDetection{BaseEjectionTime: durationpb.New(time.Minute), MaxEjectionTime: durationpb.New(time.Second)}, "max_ejection_time"},
		{&clusterv3.OutlierDetection{DetectDegradedHosts: wrapperspb.Bool(true)}, "detect_degraded_hosts"},
	}
	for _, tt := range bad {
		_, err := Translate(tt.od)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Translate(%v) error %v, want one containing %q", tt.od, err, tt.want)
		}
	}
}

func BenchmarkReportSuccess(b *testing.B) {
	cfg := testConfig()
	d := New(cfg, Options{})
	h := &Host{}
	d.SetHosts([]*Host{h})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Report(h, 200)
		}
	})
}
