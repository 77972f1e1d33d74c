package retry

import (
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestShouldRetry(t *testing.T) {
	resp := func(s int) Outcome { return Outcome{Status: s, GrpcStatus: -1} }
	grpc := func(code int) Outcome { return Outcome{Status: 200, GrpcStatus: code} }
	fail := func(f Failure, sent bool) Outcome { return Outcome{Failure: f, RequestSent: sent, GrpcStatus: -1} }
	tests := []struct {
		on    On
		codes []int
		o     Outcome
		want  bool
	}{
		{On5xx, nil, resp(500), true},
		{On5xx, nil, resp(503), true},
		{On5xx, nil, resp(404), false},
		{On5xx, nil, resp(200), false},
		{On5xx, nil, fail(Reset, true), true},
		{On5xx, nil, fail(ConnectFailure, false), true},
		{On5xx, nil, fail(PerTryTimeout, true), true},
		{On5xx, nil, fail(Overflow, false), false},
		{OnGatewayError, nil, resp(500), false},
		{OnGatewayError, nil, resp(502), true},
		{OnGatewayError, nil, resp(504), true},
		{OnGatewayError, nil, fail(PerTryTimeout, true), true},
		{OnReset, nil, resp(503), false},
		{OnReset, nil, fail(Reset, true), true},
		{OnReset, nil, fail(PerTryTimeout, true), true},
		{OnConnectFailure, nil, fail(ConnectFailure, false), true},
		{OnConnectFailure, nil, fail(Reset, true), false},
		{OnConnectFailure, nil, fail(PerTryTimeout, true), false},
		{OnConnectFailure, nil, resp(503), false},
		{OnRefusedStream, nil, fail(RefusedStream, true), true},
		{OnRefusedStream, nil, fail(Reset, true), false},
		{OnResetBeforeRequest, nil, fail(Reset, false), true},
		{OnResetBeforeRequest, nil, fail(Reset, true), false},
		{OnRetriable4xx, nil, resp(409), true},
		{OnRetriable4xx, nil, resp(429), false},
		{OnRetriableStatusCodes, []int{503, 429}, resp(429), true},
		{OnRetriableStatusCodes, []int{503}, resp(500), false},
		{On5xx, []int{429}, resp(429), false}, // codes need retriable-status-codes
		{OnGrpcUnavailable, nil, grpc(14), true},
		{OnGrpcUnavailable, nil, grpc(13), false},
		{OnGrpcCancelled | OnGrpcDeadlineExceeded | OnGrpcInternal | OnGrpcResourceExhausted, nil, grpc(1), true},
		{OnGrpcDeadlineExceeded, nil, grpc(4), true},
		{OnGrpcInternal, nil, grpc(13), true},
		{OnGrpcResourceExhausted, nil, grpc(8), true},
		{OnGrpcUnavailable, nil, resp(200), false},
		{OnEnvoyRateLimited, nil, Outcome{Status: 429, RateLimited: true, GrpcStatus: -1}, true},
		{On5xx, nil, Outcome{Status: 503, RateLimited: true, GrpcStatus: -1}, false},
	}
	for i, tt := range tests {
		p := &Policy{On: tt.on, StatusCodes: tt.codes}
		if got := p.ShouldRetry(tt.o); got != tt.want {
			t.Errorf("%d: on=%b %+v: ShouldRetry = %t, want %t", i, tt.on, tt.o, got, tt.want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	base, maxI := 25*time.Millisecond, 250*time.Millisecond
	top := func(bound int64) int64 { return bound - 1 } // the largest draw
	want := []time.Duration{25, 50, 100, 200, 250, 250}
	for i, w := range want {
		got := jittered(base, maxI, i+1, top)
		if got != w*time.Millisecond-1 {
			t.Errorf("retry %d: max back-off %v, want just under %v", i+1, got, w*time.Millisecond)
		}
	}
	p := &Policy{BaseInterval: base, MaxInterval: maxI}
	for range 100 {
		if d := p.Backoff(3); d < 0 || d >= 100*time.Millisecond {
			t.Fatalf("Backoff(3) = %v, want in [0, 100ms)", d)
		}
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestBudget(t *testing.T) {
	tests := []struct {
		name      string
		cfg       BudgetConfig
		requests  int
		wantRetry int
	}{
		{"ratio only", BudgetConfig{RetryRatio: 0.2, TTL: 10 * time.Second}, 100, 20},
		{"min per second only", BudgetConfig{MinRetriesPerSecond: 2, TTL: 5 * time.Second}, 0, 10},
		{"both", BudgetConfig{RetryRatio: 0.5, MinRetriesPerSecond: 1, TTL: 10 * time.Second}, 40, 30},
		{"defaults", DefaultBudget(), 1000, 300},
		{"nothing", BudgetConfig{TTL: time.Second}, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1000, 0)}
			b := NewBudget(tt.cfg, clk.now)
			for range tt.requests {
				b.Request()
			}
			got := 0
			for range tt.wantRetry + 50 {
				if b.TryRetry() {
					got++
				}
			}
			if got != tt.wantRetry {
				t.Errorf("allowed %d retries, want %d", got, tt.wantRetry)
			}
		})
	}
}

func TestBudgetWindowSlides(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b := NewBudget(BudgetConfig{RetryRatio: 1, TTL: 3 * time.Second}, clk.now)
	for range 10 {
		b.Request()
	}
	clk.advance(time.Second)
	for range 5 {
		b.Request()
	}
	if r, _ := b.Counts(); r != 15 {
		t.Fatalf("requests in window = %d, want 15", r)
	}
	for range 15 {
		if !b.TryRetry() {
			t.Fatal("retry refused within budget")
		}
	}
	if b.TryRetry() {
		t.Fatal("16th retry allowed with 15 requests and ratio 1")
	}
	// 2 s later the first second's 10 requests have left the window, and
	// so have its retries: none were in that second.
	clk.advance(2 * time.Second)
	if r, q := b.Counts(); r != 5 || q != 15 {
		t.Fatalf("counts = %d requests %d retries, want 5 and 15", r, q)
	}
	if b.TryRetry() {
		t.Fatal("retry allowed with 15 retries for 5 requests")
	}
	clk.advance(time.Second)
	if r, q := b.Counts(); r != 0 || q != 0 {
		t.Fatalf("counts after the TTL = %d %d, want 0 0", r, q)
	}
}

type hdrs map[string]string

func (h hdrs) HeaderValue(name string) (string, bool) { v, ok := h[name]; return v, ok }

func TestEligibleMethodRegex(t *testing.T) {
	p, err := Translate(&routev3.RetryPolicy{
		RetryOn: "5xx",
		RetriableRequestHeaders: []*routev3.HeaderMatcher{{
			Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "GET|HEAD|OPTIONS|TRACE|PUT|DELETE"}},
			}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for method, want := range map[string]bool{"GET": true, "PUT": true, "POST": false, "PATCH": false, "GETX": false} {
		if got := Eligible[string](p, hdrs{":method": method}); got != want {
			t.Errorf("%s eligible = %t, want %t", method, got, want)
		}
		if got := Eligible[[]byte](p, byteHdrs{":method": []byte(method)}); got != want {
			t.Errorf("%s eligible (bytes) = %t, want %t", method, got, want)
		}
	}
	if !Eligible[string](&Policy{}, hdrs{}) {
		t.Error("a policy without retriable_request_headers refused a request")
	}
	// Literal alternatives match by comparison: Istio's default policy,
	// on every route, compiles no regexp (each costs ~6 KiB of heap).
	if m := p.RequestHeaders[0]; m.re != nil || len(m.literals) != 6 {
		t.Errorf("literal alternatives: regexp %v, literals %q", m.re, m.literals)
	}
}

type byteHdrs map[string][]byte

func (h byteHdrs) HeaderValue(name string) ([]byte, bool) { v, ok := h[name]; return v, ok }

func TestHeaderMatchers(t *testing.T) {
	sm := func(p *matcherv3.StringMatcher) *routev3.HeaderMatcher_StringMatch {
		return &routev3.HeaderMatcher_StringMatch{StringMatch: p}
	}
	tests := []struct {
		m    *routev3.HeaderMatcher
		h    hdrs
		want bool
	}{
		{&routev3.HeaderMatcher{Name: "X-Retry", HeaderMatchSpecifier: sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "yes"}})}, hdrs{"x-retry": "yes"}, true},
		{&routev3.HeaderMatcher{Name: "x-retry", HeaderMatchSpecifier: sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "YES"}, IgnoreCase: true})}, hdrs{"x-retry": "yes"}, true},
		{&routev3.HeaderMatcher{Name: "x-retry", HeaderMatchSpecifier: sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "es"}})}, hdrs{"x-retry": "yes"}, true},
		{&routev3.HeaderMatcher{Name: "x-retry", HeaderMatchSpecifier: sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "e"}})}, hdrs{"x-retry": "yes"}, true},
		{&routev3.HeaderMatcher{Name: "x-retry", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}, hdrs{}, false},
		{&routev3.HeaderMatcher{Name: "x-retry", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true}, hdrs{}, true},
		{&routev3.HeaderMatcher{Name: "x-retry", HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "n"}, InvertMatch: true}, hdrs{"x-retry": "yes"}, true},
	}
	for i, tt := range tests {
		p, err := Translate(&routev3.RetryPolicy{RetriableRequestHeaders: []*routev3.HeaderMatcher{tt.m}})
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if got := Eligible[string](p, tt.h); got != tt.want {
			t.Errorf("%d: eligible = %t, want %t", i, got, tt.want)
		}
	}
}

func TestTranslate(t *testing.T) {
	full := &routev3.RetryPolicy{
		RetryOn:                       "5xx, connect-failure,unavailable,retriable-status-codes",
		NumRetries:                    wrapperspb.UInt32(3),
		PerTryTimeout:                 durationpb.New(200 * time.Millisecond),
		RetriableStatusCodes:          []uint32{503, 429},
		RetryBackOff:                  &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(10 * time.Millisecond)},
		RetryHostPredicate:            []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}},
		HostSelectionRetryMaxAttempts: 5,
	}
	p, err := Translate(full)
	if err != nil {
		t.Fatal(err)
	}
	if p.On != On5xx|OnConnectFailure|OnGrpcUnavailable|OnRetriableStatusCodes || p.NumRetries != 3 ||
		p.PerTryTimeout != 200*time.Millisecond || len(p.StatusCodes) != 2 || p.BaseInterval != 10*time.Millisecond ||
		p.MaxInterval != 100*time.Millisecond || !p.PreviousHosts || p.HostSelectionAttempts != 5 {
		t.Errorf("policy = %+v", p)
	}
	if d, _ := Translate(&routev3.RetryPolicy{RetryOn: "5xx"}); d.NumRetries != 1 || d.BaseInterval != 25*time.Millisecond || d.MaxInterval != 250*time.Millisecond {
		t.Errorf("defaults = %+v", d)
	}
	bad := []struct {
		rp   *routev3.RetryPolicy
		want string
	}{
		{&routev3.RetryPolicy{RetryOn: "5xx,sometimes"}, `retry_on: "sometimes"`},
		{&routev3.RetryPolicy{RetryOn: "retriable-headers"}, `retry_on: "retriable-headers"`},
		{&routev3.RetryPolicy{PerTryTimeout: &durationpb.Duration{Seconds: -1}}, "per_try_timeout"},
		{&routev3.RetryPolicy{RetriableStatusCodes: []uint32{42}}, "retriable_status_codes"},
		{&routev3.RetryPolicy{RetryBackOff: &routev3.RetryPolicy_RetryBackOff{}}, "retry_back_off.base_interval"},
		{&routev3.RetryPolicy{RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Second), MaxInterval: durationpb.New(time.Millisecond)}}, "retry_back_off.max_interval"},
		{&routev3.RetryPolicy{RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.omit_canary_hosts"}}}, "retry_host_predicate[0]"},
		{&routev3.RetryPolicy{RetryPriority: &routev3.RetryPolicy_RetryPriority{}}, "retry_priority"},
		{&routev3.RetryPolicy{HostSelectionRetryMaxAttempts: -1}, "host_selection_retry_max_attempts"},
		{&routev3.RetryPolicy{RetriableRequestHeaders: []*routev3.HeaderMatcher{{Name: ":status"}}}, "retriable_request_headers[0].name"},
		{&routev3.RetryPolicy{RetriableRequestHeaders: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "("}}}}}, "retriable_request_headers[0].safe_regex_match.safe_regex.regex"},
	}
	for _, tt := range bad {
		_, err := Translate(tt.rp)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Translate(%v) error %v, want one containing %q", tt.rp, err, tt.want)
		}
	}
}

func BenchmarkBudget(b *testing.B) {
	bud := NewBudget(DefaultBudget(), nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bud.Request()
		}
	})
}

func BenchmarkBudgetTryRetry(b *testing.B) {
	bud := NewBudget(BudgetConfig{RetryRatio: 1e3, TTL: 10 * time.Second}, nil)
	bud.Request()
	b.ReportAllocs()
	for b.Loop() {
		bud.TryRetry()
	}
}

func BenchmarkEligible(b *testing.B) {
	p, _ := Translate(&routev3.RetryPolicy{RetriableRequestHeaders: []*routev3.HeaderMatcher{{
		Name: ":method",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "GET|HEAD|OPTIONS|TRACE|PUT|DELETE"}},
		}},
	}}})
	h := byteHdrs{":method": []byte("GET")}
	b.ReportAllocs()
	for b.Loop() {
		Eligible[[]byte](p, h)
	}
}
