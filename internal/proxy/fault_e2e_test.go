package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

func TestFaultInjection(t *testing.T) {
	route := func(prefix string, f *faultv3.HTTPFault) *routev3.Route {
		r := proxytest.PrefixRoute(prefix, outCluster, 0)
		r.TypedPerFilterConfig = perFilter(t, faultName, f)
		return r
	}
	fault := []*hcmv3.HttpFilter{httpFilterEntry(t, faultName, faultEmpty())}
	m := featureMesh(t, featureApp(), fault, func(set *resources.Set) {
		timeoutRoute := route("/delay-timeout", faultConfig(300*time.Millisecond, 100, 0, -1, 0))
		timeoutRoute.GetRoute().Timeout = durationpb.New(100 * time.Millisecond)
		prependRoutes(set,
			route("/abort", faultConfig(0, 0, 503, -1, 100)),
			route("/delay", faultConfig(300*time.Millisecond, 100, 0, -1, 0)),
			route("/long-delay", faultConfig(5*time.Second, 100, 0, -1, 0)),
			route("/both", faultConfig(200*time.Millisecond, 100, 429, -1, 100)),
			route("/half", faultConfig(0, 0, 500, -1, 50)),
			timeoutRoute,
		)
	})
	bothPaths(t, func(t *testing.T, c *http.Client) {
		res, body := featDo(t, c, "GET", m.url("/abort"), "")
		if res.StatusCode != 503 || res.Header.Get(headerReason) != reasonFaultAbort || body != "fault filter abort" {
			t.Errorf("abort: %d %q %q", res.StatusCode, res.Header.Get(headerReason), body)
		}
		start := time.Now()
		res, body = featDo(t, c, "GET", m.url("/delay"), "")
		if d := time.Since(start); res.StatusCode != 200 || d < 300*time.Millisecond || !hasLine(body, "uri=/delay") {
			t.Errorf("delay: %d after %s (want >= 300ms): %q", res.StatusCode, d, body)
		}
		// Envoy's route timeout starts after the fault filter's delay.
		res, _ = featDo(t, c, "GET", m.url("/delay-timeout"), "")
		if res.StatusCode != 200 {
			t.Errorf("delay longer than the route timeout: %d, want 200", res.StatusCode)
		}
		start = time.Now()
		res, _ = featDo(t, c, "GET", m.url("/both"), "")
		if d := time.Since(start); res.StatusCode != 429 || d < 200*time.Millisecond {
			t.Errorf("delay then abort: %d after %s", res.StatusCode, d)
		}
		// A delayed request does not hold up another.
		done := make(chan time.Duration, 1)
		go func() {
			start := time.Now()
			req, _ := http.NewRequest("GET", m.url("/delay"), nil)
			if res, err := c.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			done <- time.Since(start)
		}()
		time.Sleep(50 * time.Millisecond)
		start = time.Now()
		featDo(t, c, "GET", m.url("/plain"), "")
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("a request concurrent with a delayed one took %s", d)
		}
		<-done
		// Percentages: 50% over 200 requests (binomial sd 7; allow 5 sd).
		aborted := 0
		for range 200 {
			if res, _ := featDo(t, c, "GET", m.url("/half"), ""); res.StatusCode == 500 {
				aborted++
			}
		}
		if aborted < 65 || aborted > 135 {
			t.Errorf("50%% abort: %d of 200 aborted", aborted)
		}
	})
	stats := statsOf(m.client)
	for _, want := range []string{"fault_delays_injected 8", "fault_aborts_injected"} {
		if !strings.Contains(stats, "listener."+outName+"."+want) {
			t.Errorf("stats lack %q:\n%s", want, stats)
		}
	}
}

// A caller that leaves during a fault delay ends it at once.
func TestFaultDelayEndsWhenCallerLeaves(t *testing.T) {
	r := proxytest.PrefixRoute("/long", outCluster, 0)
	m := featureMesh(t, featureApp(), []*hcmv3.HttpFilter{httpFilterEntry(t, faultName, faultEmpty())}, func(set *resources.Set) {
		r.TypedPerFilterConfig = perFilter(t, faultName, faultConfig(10*time.Second, 100, 0, -1, 0))
		prependRoutes(set, r)
	})
	for _, c := range []*http.Client{h1Client(t), h2cClient(t)} {
		c.Timeout = 100 * time.Millisecond
		if _, err := c.Get(m.url("/long")); err == nil {
			t.Fatal("request during a 10s delay succeeded")
		}
		c.Transport.(*http.Transport).CloseIdleConnections()
	}
	waitStat(t, m.client, "listener."+outName+".downstream_cancelled 2")
}
