package proxy

import (
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func outlierDetection(consecutive uint32, base time.Duration, maxPct uint32) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		c.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx:      wrapperspb.UInt32(consecutive),
			EnforcingSuccessRate: wrapperspb.UInt32(0),
			Interval:             durationpb.New(50 * time.Millisecond),
			BaseEjectionTime:     durationpb.New(base),
			MaxEjectionPercent:   wrapperspb.UInt32(maxPct),
		}
	}
}

// TestOutlierEjection: an endpoint answering 5xx is ejected after
// consecutive_5xx errors, gets no traffic while ejected, and returns after
// base_ejection_time.
func TestOutlierEjection(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		bad := newApp(t, "bad", failing(500))
		good1, good2 := newApp(t, "good1", nil), newApp(t, "good2", nil)
		m := newRMesh(t, legacy, false, []*app{bad, good1, good2},
			outlierDetection(2, 400*time.Millisecond, 100), rroute("/", 0, nil))
		c := httpClient(t)
		for bad.count.Load() < 2 {
			do(t, c, "GET", m.url("/x"), "", nil)
		}
		ejectedAt := time.Now()
		if got := m.stat("outlier_ejections_active"); got != "1" {
			t.Fatalf("outlier_ejections_active = %s, want 1", got)
		}
		for i := range 20 {
			if res, body := do(t, c, "GET", m.url("/x"), "", nil); res.StatusCode != 200 {
				t.Fatalf("request %d while ejected: %d %q", i, res.StatusCode, body)
			}
		}
		if got := bad.count.Load(); got != 2 {
			t.Errorf("ejected endpoint got %d requests, want none after its 2 errors", got-2)
		}
		if d := time.Since(ejectedAt); d > 350*time.Millisecond {
			t.Skipf("machine too slow to check the ejection window (%v)", d)
		}
		deadline := time.Now().Add(3 * time.Second)
		for bad.count.Load() == 2 && time.Now().Before(deadline) {
			do(t, c, "GET", m.url("/x"), "", nil)
			time.Sleep(10 * time.Millisecond)
		}
		back := time.Since(ejectedAt)
		if bad.count.Load() == 2 || back < 400*time.Millisecond {
			t.Errorf("endpoint back after %v, want after base_ejection_time 400ms", back)
		}
		if got := m.stat("outlier_ejections_total"); got != "1" {
			t.Errorf("outlier_ejections_total = %s, want 1", got)
		}
	})
}

// TestOutlierMaxEjectionPercent: of two failing endpoints in three, only
// one may be ejected with max_ejection_percent 34.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	bad1, bad2, good := newApp(t, "bad1", failing(503)), newApp(t, "bad2", failing(503)), newApp(t, "good", nil)
	m := newRMesh(t, false, false, []*app{bad1, bad2, good},
		outlierDetection(2, time.Minute, 34), rroute("/", 0, nil))
	c := httpClient(t)
	for range 30 {
		do(t, c, "GET", m.url("/x"), "", nil)
	}
	if got := m.stat("outlier_ejections_active"); got != "1" {
		t.Errorf("outlier_ejections_active = %s, want 1", got)
	}
	if got := m.stat("outlier_ejections_overflow"); got == "0" {
		t.Error("outlier_ejections_overflow not counted")
	}
	if bad1.count.Load() != 2 && bad2.count.Load() != 2 {
		t.Errorf("neither failing endpoint stopped at 2 requests: %d %d", bad1.count.Load(), bad2.count.Load())
	}
}

// TestLeastRequestPrefersFastEndpoint: under concurrent load with one slow
// endpoint of three, LEAST_REQUEST (two random choices) sends it little more
// than the 1/9 of picks where both choices are it; round robin would send it
// a third.
func TestLeastRequestPrefersFastEndpoint(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		slow, fast, fast2 := newApp(t, "slow", sleeping(80*time.Millisecond)), newApp(t, "fast", nil), newApp(t, "fast2", nil)
		m := newRMesh(t, legacy, false, []*app{slow, fast, fast2},
			func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST }, rroute("/", 0, nil))
		c := keepAliveClient(t, 8)
		var left atomic.Int64
		left.Store(240)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for left.Add(-1) >= 0 {
					res, err := c.Get(m.url("/x"))
					if err != nil {
						t.Errorf("GET: %v", err)
						return
					}
					_ = res.Body.Close()
				}
			}()
		}
		wg.Wait()
		total := slow.count.Load() + fast.count.Load() + fast2.count.Load()
		t.Logf("slow endpoint: %d of %d requests", slow.count.Load(), total)
		if share := float64(slow.count.Load()) / float64(total); share > 0.2 {
			t.Errorf("slow endpoint got %.2f of %d requests, want about 1/9", share, total)
		}
	})
}

var setCookieRE = regexp.MustCompile(`^sticky="([0-9a-f]{16})"; Max-Age=60; Path=/; HttpOnly$`)

// TestHashPolicyStickiness: with RING_HASH or MAGLEV, the same header or
// cookie value always reaches the same endpoint; a cookie policy with a ttl
// sets the cookie when the request has none.
func TestHashPolicyStickiness(t *testing.T) {
	for _, policy := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV} {
		t.Run(policy.String(), func(t *testing.T) {
			paths(t, func(t *testing.T, legacy bool) {
				apps := []*app{newApp(t, "a", nil), newApp(t, "b", nil), newApp(t, "c", nil)}
				hash := func(ps ...*routev3.RouteAction_HashPolicy) func(*routev3.RouteAction) {
					return func(a *routev3.RouteAction) { a.HashPolicy = ps }
				}
				m := newRMesh(t, legacy, false, apps, func(c *clusterv3.Cluster) { c.LbPolicy = policy },
					rroute("/user", 0, hash(&routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
						Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"},
					}})),
					rroute("/", 0, hash(&routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
						Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "sticky", Ttl: durationpb.New(time.Minute), Path: "/"},
					}})))
				c := httpClient(t)
				seen := map[string]bool{}
				for u := range 12 {
					user := fmt.Sprintf("user-%d", u)
					first := ""
					for range 4 {
						_, body := do(t, c, "GET", m.url("/user"), "", map[string]string{"X-User": user})
						if first == "" {
							first = body
						} else if body != first {
							t.Fatalf("%s went to %s then %s", user, first, body)
						}
					}
					seen[first] = true
				}
				if len(seen) < 2 {
					t.Errorf("12 users all went to %v", seen)
				}
				res, first := do(t, c, "GET", m.url("/cart"), "", nil)
				match := setCookieRE.FindStringSubmatch(res.Header.Get("Set-Cookie"))
				if match == nil {
					t.Fatalf("Set-Cookie = %q, want sticky=\"<hash>\"; Max-Age=60; Path=/; HttpOnly", res.Header.Get("Set-Cookie"))
				}
				for range 5 {
					res, body := do(t, c, "GET", m.url("/cart"), "", map[string]string{"Cookie": "other=1; sticky=" + match[1]})
					if body != first {
						t.Fatalf("cookie %s went to %s, then %s", match[1], first, body)
					}
					if res.Header.Get("Set-Cookie") != "" {
						t.Errorf("cookie set again on a request that had it")
					}
				}
			})
		})
	}
}

// TestPanicThreshold: when ejections leave fewer usable endpoints than
// healthy_panic_threshold percent, the cluster balances over all of them.
func TestPanicThreshold(t *testing.T) {
	bad, good := newApp(t, "bad", failing(503)), newApp(t, "good", nil)
	m := newRMesh(t, false, false, []*app{bad, good}, func(c *clusterv3.Cluster) {
		outlierDetection(1, time.Minute, 100)(c)
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 60}}
	}, rroute("/", 0, nil))
	c := httpClient(t)
	for range 10 {
		do(t, c, "GET", m.url("/x"), "", nil)
	}
	// 1 of 2 usable is 50% < 60%: panic mode keeps sending to the bad one.
	if m.stat("outlier_ejections_active") != "1" || bad.count.Load() < 3 {
		t.Errorf("ejections %s, bad endpoint got %d of 10: want ejected yet still used", m.stat("outlier_ejections_active"), bad.count.Load())
	}
}

// TestHashPolicyQueryAndSourceIP: a query parameter (decoded) and the
// caller's IP are hash keys too; several policies combine.
func TestHashPolicyQueryAndSourceIP(t *testing.T) {
	paths(t, func(t *testing.T, legacy bool) {
		apps := []*app{newApp(t, "a", nil), newApp(t, "b", nil), newApp(t, "c", nil), newApp(t, "d", nil)}
		query := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "user"},
		}}
		source := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
		}}
		m := newRMesh(t, legacy, false, apps, func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_MAGLEV },
			rroute("/q", 0, func(a *routev3.RouteAction) { a.HashPolicy = []*routev3.RouteAction_HashPolicy{query, source} }),
			rroute("/ip", 0, func(a *routev3.RouteAction) { a.HashPolicy = []*routev3.RouteAction_HashPolicy{source} }))
		seen := map[string]bool{}
		for u := range 12 {
			first := ""
			for i := range 3 {
				c := httpClient(t) // a new connection (and source port) each time
				target := fmt.Sprintf("/q?x=%d&user=u%%20%d", i, u)
				if i == 2 {
					target = fmt.Sprintf("/q?user=u+%d", u) // '+' decodes to the same space
				}
				_, body := do(t, c, "GET", m.url(target), "", nil)
				if first == "" {
					first = body
				} else if body != first {
					t.Fatalf("user %d went to %s then %s", u, first, body)
				}
			}
			seen[first] = true
		}
		if len(seen) < 2 {
			t.Errorf("12 query values all went to %v", seen)
		}
		first := ""
		for range 5 {
			_, body := do(t, httpClient(t), "GET", m.url("/ip"), "", nil)
			if first == "" {
				first = body
			} else if body != first {
				t.Fatalf("same source IP went to %s then %s", first, body)
			}
		}
	})
}
