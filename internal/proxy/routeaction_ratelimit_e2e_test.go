package proxy

import (
	"net/http"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

func TestLocalRateLimit(t *testing.T) {
	for _, path := range []string{"fast", "nethttp"} {
		t.Run(path, func(t *testing.T) {
			c := h1Client(t)
			if path == "nethttp" {
				c = h2cClient(t)
			}
			limited := proxytest.PrefixRoute("/limited", outCluster, 0)
			limited.TypedPerFilterConfig = perFilter(t, rlName, rateLimit(2, 2, time.Minute))
			open := proxytest.PrefixRoute("/open", outCluster, 0)
			open.TypedPerFilterConfig = perFilter(t, rlName, disabledFilter())
			mutate := func(set *resources.Set) {
				set.Routes[outName].VirtualHosts[0].TypedPerFilterConfig = perFilter(t, rlName, rateLimit(3, 3, time.Minute))
				prependRoutes(set, limited, open)
			}
			filters := []*hcmv3.HttpFilter{httpFilterEntry(t, rlName, rateLimitFilterHCM())}
			m := featureMesh(t, featureApp(), filters, mutate)
			for i, want := range []struct {
				code      int
				remaining string
			}{{200, "1"}, {200, "0"}, {429, "0"}} {
				res, body := featDo(t, c, "GET", m.url("/limited"), "")
				if res.StatusCode != want.code || res.Header.Get("X-Ratelimit-Limit") != "2" ||
					res.Header.Get("X-Ratelimit-Remaining") != want.remaining {
					t.Fatalf("request %d: %d %v %q", i, res.StatusCode, res.Header, body)
				}
				if want.code == 429 && (res.Header.Get(headerReason) != reasonRateLimited || body != "local_rate_limited" ||
					res.Header.Get("X-Ratelimit-Reset") != "30") {
					t.Errorf("limited reply: %v %q", res.Header, body)
				}
			}
			// The virtual host's bucket (3) is separate from the route's.
			for i := range 4 {
				res, _ := featDo(t, c, "GET", m.url("/other"), "")
				if want := map[bool]int{true: 200, false: 429}[i < 3]; res.StatusCode != want {
					t.Errorf("vhost limit, request %d: %d, want %d", i, res.StatusCode, want)
				}
			}
			// Disabled for one route.
			for range 5 {
				if res, _ := featDo(t, c, "GET", m.url("/open"), ""); res.StatusCode != 200 || res.Header.Get("X-Ratelimit-Limit") != "" {
					t.Fatalf("route with the filter disabled: %d %v", res.StatusCode, res.Header)
				}
			}
			// A config push with the same limits does not refill the buckets.
			m.setClient(t, filters, mutate)
			if res, _ := featDo(t, c, "GET", m.url("/limited"), ""); res.StatusCode != 429 {
				t.Errorf("after an unchanged config push: %d, want 429 (bucket kept)", res.StatusCode)
			}
			waitStat(t, m.client, "listener."+outName+".rate_limited 3")
		})
	}
}

// The server's inbound sidecar enforces a service-wide limit (the ADR's
// placement): its HCM carries the filter, its inline virtual host the bucket.
func TestLocalRateLimitInbound(t *testing.T) {
	m := newMesh(t, featureApp(), false)
	set := m.serverSet(t)
	rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	rc.VirtualHosts[0].TypedPerFilterConfig = perFilter(t, rlName, rateLimit(2, 2, time.Minute))
	f := proxytest.HCM(t, "", rc, true)
	var h hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	h.HttpFilters = append([]*hcmv3.HttpFilter{httpFilterEntry(t, rlName, rateLimitFilterHCM())}, h.HttpFilters...)
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.Any(t, &h)}
	set.Listeners[inName] = proxytest.Listener(t, inName, m.inAddr, f, proxytest.DownstreamTLS(t, "h2", "http/1.1"))
	if err := m.server.Update(set); err != nil {
		t.Fatalf("server Update: %v", err)
	}
	c := h1Client(t)
	for i, want := range []int{200, 200, 429} {
		res, body := featDo(t, c, "GET", m.url("/x"), "")
		if res.StatusCode != want {
			t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
		}
		if want == 429 && (res.Header.Get(headerReason) != reasonRateLimited || res.Header.Get("X-Ratelimit-Remaining") != "0") {
			t.Errorf("limited reply headers: %v", res.Header)
		}
	}
	waitStat(t, m.server, "listener."+inName+".rate_limited 1")
}

// A refused request's reply carries the bucket's response_headers_to_add
// (Envoy: "added to each response for requests that have been rate
// limited"), after the route's response headers; an allowed request's
// response does not. Each bucket has its own.
func TestLocalRateLimitResponseHeaders(t *testing.T) {
	bothPaths(t, func(t *testing.T, c *http.Client) {
		keepEmpty := hvo("x-empty", "", appendOrAdd)
		keepEmpty.KeepEmptyValue = true
		routeRL := rateLimit(1, 1, time.Minute)
		routeRL.ResponseHeadersToAdd = []*corev3.HeaderValueOption{
			hvo("x-local-rate-limit", "true", appendOrAdd),
			hvo("x-share", "100%% used", overwriteOrAdd),
			hvo("x-route", "limit", addAbsent),     // the route's value is there already
			hvo("x-route-2", "limit", appendOrAdd), // appended to the route's
			hvo("x-absent", "x", overwriteIf),      // only overwrites
			hvo("x-dropped", "", appendOrAdd),      // empty, keep_empty_value unset
			keepEmpty,
		}
		limited := proxytest.PrefixRoute("/limited", outCluster, 0)
		limited.TypedPerFilterConfig = perFilter(t, rlName, routeRL)
		limited.ResponseHeadersToAdd = []*corev3.HeaderValueOption{hvo("x-route", "route", overwriteOrAdd), hvo("x-route-2", "route", overwriteOrAdd)}
		vhostRL := rateLimit(1, 1, time.Minute)
		vhostRL.ResponseHeadersToAdd = []*corev3.HeaderValueOption{hvo("x-vhost-limit", "1", overwriteOrAdd)}
		mutate := func(set *resources.Set) {
			set.Routes[outName].VirtualHosts[0].TypedPerFilterConfig = perFilter(t, rlName, vhostRL)
			prependRoutes(set, limited)
		}
		m := featureMesh(t, featureApp(), []*hcmv3.HttpFilter{httpFilterEntry(t, rlName, rateLimitFilterHCM())}, mutate)

		allowed := []string{"X-Local-Rate-Limit", "X-Share", "X-Absent", "X-Empty", "X-Vhost-Limit"}
		res, body := featDo(t, c, "GET", m.url("/limited"), "")
		if res.StatusCode != 200 {
			t.Fatalf("first request: %d %q", res.StatusCode, body)
		}
		for _, h := range allowed {
			if v, ok := res.Header[h]; ok {
				t.Errorf("allowed request's response has %s: %q", h, v)
			}
		}
		if got := res.Header.Values("X-Route"); !slices.Equal(got, []string{"route"}) {
			t.Errorf("allowed request's x-route = %q, want the route's only", got)
		}

		res, body = featDo(t, c, "GET", m.url("/limited"), "")
		if res.StatusCode != 429 || body != "local_rate_limited" {
			t.Fatalf("second request: %d %q, want 429", res.StatusCode, body)
		}
		for name, want := range map[string][]string{
			"X-Local-Rate-Limit": {"true"},
			"X-Share":            {"100% used"},
			"X-Route":            {"route"},
			"X-Route-2":          {"route", "limit"},
			"X-Absent":           nil,
			"X-Dropped":          nil,
			"X-Empty":            {""},
			"X-Vhost-Limit":      nil,
			headerReason:         {reasonRateLimited},
			"X-Ratelimit-Limit":  {"1"},
		} {
			if got := res.Header.Values(name); !slices.Equal(got, want) {
				t.Errorf("limited reply %s = %q, want %q", name, got, want)
			}
		}

		// The virtual host's bucket answers with its own headers.
		for i, want := range []int{200, 429} {
			res, _ := featDo(t, c, "GET", m.url("/other"), "")
			if res.StatusCode != want {
				t.Fatalf("vhost request %d: %d, want %d", i, res.StatusCode, want)
			}
			if got, wantV := res.Header.Get("X-Vhost-Limit"), map[int]string{200: "", 429: "1"}[want]; got != wantV || res.Header.Get("X-Local-Rate-Limit") != "" {
				t.Errorf("vhost request %d: x-vhost-limit %q (want %q), x-local-rate-limit %q", i, got, wantV, res.Header.Get("X-Local-Rate-Limit"))
			}
		}
	})
}
