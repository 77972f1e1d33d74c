package proxy

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// featureApp answers with what it saw (URI, Host, sorted headers) and
// sets two response headers the routes mutate.
func featureApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-App", "1")
		w.Header().Set("X-Remove-Me", "yes")
		var names []string
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		fmt.Fprintf(w, "uri=%s\nhost=%s\nbody=%s\n", r.RequestURI, r.Host, body)
		for _, k := range names {
			fmt.Fprintf(w, "%s=%s\n", k, strings.Join(r.Header[k], ","))
		}
	})
}

// featureMesh is a mesh whose client sidecar's outbound listener has the
// given HTTP filters, and whose route configuration mutate changes (it gets
// the default routes: /missing, /timeout, / to the server).
func featureMesh(t *testing.T, app http.Handler, filters []*hcmv3.HttpFilter, mutate func(*resources.Set)) *mesh {
	t.Helper()
	m := newMesh(t, app, false)
	m.setClient(t, filters, mutate)
	return m
}

func (m *mesh) setClient(t *testing.T, filters []*hcmv3.HttpFilter, mutate func(*resources.Set)) {
	t.Helper()
	set := m.buildClientSet(t)
	set.Listeners[outName] = proxytest.Listener(t, outName, m.outAddr, hcmWith(t, outName, filters...), nil)
	if mutate != nil {
		mutate(set)
	}
	if err := m.client.Update(set); err != nil {
		t.Fatalf("client Update: %v", err)
	}
	m.clientSet = set
}

// prependRoutes puts routes before the default ones.
func prependRoutes(set *resources.Set, routes ...*routev3.Route) {
	vh := set.Routes[outName].VirtualHosts[0]
	vh.Routes = append(routes, vh.Routes...)
}

// h2cClient speaks HTTP/2 with prior knowledge: the sidecar hands its
// connections to the net/http path.
func h2cClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func h1Client(t testing.TB) *http.Client {
	c := httpClient(t)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// bothPaths runs fn with an HTTP/1.1 client (the fast path) and an h2c
// client (the net/http path).
func bothPaths(t *testing.T, fn func(t *testing.T, c *http.Client)) {
	t.Run("fast", func(t *testing.T) { fn(t, h1Client(t)) })
	t.Run("nethttp", func(t *testing.T) { fn(t, h2cClient(t)) })
}

func featDo(t *testing.T, c *http.Client, method, url string, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(b)
}

func hasLine(body, line string) bool {
	for _, l := range strings.Split(body, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestDirectResponseAndRedirect(t *testing.T) {
	m := featureMesh(t, featureApp(), nil, func(set *resources.Set) {
		prependRoutes(set,
			&routev3.Route{Match: prefixMatch("/teapot"),
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{hvo("x-route", "teapot", overwriteOrAdd)},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
					Status: 418, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "short and stout"}}}}},
			&routev3.Route{Match: prefixMatch("/created"),
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 201}}},
			&routev3.Route{Match: prefixMatch("/old/"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
				SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
				PortRedirect:           8443,
				PathRewriteSpecifier:   &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/new/"},
				ResponseCode:           routev3.RedirectAction_TEMPORARY_REDIRECT}}},
			&routev3.Route{Match: prefixMatch("/gone"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
				HostRedirect: "elsewhere.example", StripQuery: true}}},
		)
	})
	bothPaths(t, func(t *testing.T, c *http.Client) {
		res, body := featDo(t, c, "GET", m.url("/teapot"), "")
		if res.StatusCode != 418 || body != "short and stout" || res.Header.Get("Content-Type") != "text/plain" || res.Header.Get("X-Route") != "teapot" {
			t.Errorf("direct response: %d %q %v", res.StatusCode, body, res.Header)
		}
		if res.Header.Get(headerReason) != "" {
			t.Errorf("direct response carries %s", headerReason)
		}
		res, body = featDo(t, c, "POST", m.url("/created?id=1"), "payload")
		if res.StatusCode != 201 || body != "" || res.Header.Get("Location") != "http://"+m.outAddr+"/created?id=1" {
			t.Errorf("201 direct response: %d %q Location %q", res.StatusCode, body, res.Header.Get("Location"))
		}
		host := strings.Split(m.outAddr, ":")[0]
		res, _ = featDo(t, c, "GET", m.url("/old/page?x=1"), "")
		if want := "https://" + host + ":8443/new/page?x=1"; res.StatusCode != 307 || res.Header.Get("Location") != want {
			t.Errorf("redirect: %d Location %q, want 307 %q", res.StatusCode, res.Header.Get("Location"), want)
		}
		res, _ = featDo(t, c, "HEAD", m.url("/gone/x?y=2"), "")
		if want := "http://elsewhere.example/gone/x"; res.StatusCode != 301 || res.Header.Get("Location") != want {
			t.Errorf("redirect: %d Location %q, want 301 %q", res.StatusCode, res.Header.Get("Location"), want)
		}
	})
	waitStat(t, m.client, "listener."+outName+".responses_3xx 4")
	waitStat(t, m.client, "listener."+outName+".responses_4xx 2")
}

func TestRewritesAndHeaderMutation(t *testing.T) {
	m := featureMesh(t, featureApp(), nil, func(set *resources.Set) {
		rc := set.Routes[outName]
		rc.RequestHeadersToAdd = []*corev3.HeaderValueOption{hvo("x-config", "config", overwriteOrAdd), hvo("x-level", "config", overwriteOrAdd)}
		rc.ResponseHeadersToRemove = []string{"x-remove-me"}
		vh := rc.VirtualHosts[0]
		vh.RequestHeadersToAdd = []*corev3.HeaderValueOption{hvo("x-level", "vhost", overwriteOrAdd)}
		vh.RequestHeadersToRemove = []string{"x-secret"}
		prependRoutes(set,
			&routev3.Route{Match: prefixMatch("/api/"),
				RequestHeadersToAdd: []*corev3.HeaderValueOption{
					hvo("x-level", "route", overwriteOrAdd), hvo("x-multi", "added", appendOrAdd),
					hvo("x-default", "route-default", addIfAbsentAction()), hvo("x-only-if", "replaced", overwriteIf)},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{hvo("x-app", "route", overwriteOrAdd), hvo("x-extra", "1", appendOrAdd)},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier:     &routev3.RouteAction_Cluster{Cluster: outCluster},
					PrefixRewrite:        "/v2/",
					HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "backend.internal:9080"},
				}}},
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: regexPath("/svc/[a-z]+/.*")},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: outCluster},
					RegexRewrite:     regexSubst(`^/svc/([a-z]+)/(.*)$`, `/\2/instance/\1`),
				}}},
		)
	})
	bothPaths(t, func(t *testing.T, c *http.Client) {
		res, body := featDo(t, c, "GET", m.url("/api/items%2F1?q=a%20b"), "",
			"X-Multi", "orig", "X-Default", "caller", "X-Secret", "s", "X-Only-If", "orig")
		if res.StatusCode != 200 {
			t.Fatalf("status %d: %s", res.StatusCode, body)
		}
		for _, want := range []string{
			"uri=/v2/items%2F1?q=a%20b", "host=backend.internal:9080",
			"X-Config=config", "X-Level=config", // the route configuration's level is applied last and wins
			"X-Multi=orig,added", "X-Default=caller", "X-Only-If=replaced",
		} {
			if !hasLine(body, want) {
				t.Errorf("app lacks %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, "X-Secret") {
			t.Errorf("removed header reached the app:\n%s", body)
		}
		if got := res.Header.Values("X-App"); len(got) != 1 || got[0] != "route" {
			t.Errorf("response X-App = %v, want [route]", got)
		}
		if res.Header.Get("X-Extra") != "1" || res.Header.Get("X-Remove-Me") != "" {
			t.Errorf("response headers = %v", res.Header)
		}
		_, body = featDo(t, c, "GET", m.url("/svc/foo/v1/api?x=1"), "")
		if !hasLine(body, "uri=/v1/api/instance/foo?x=1") {
			t.Errorf("regex rewrite: app saw\n%s", body)
		}
		// The matched route is the original path's: /v2/ has no route of its own.
		_, body = featDo(t, c, "GET", m.url("/other"), "")
		if !hasLine(body, "uri=/other") || !hasLine(body, "X-Level=config") {
			t.Errorf("default route: app saw\n%s", body)
		}
	})
}

func addIfAbsentAction() corev3.HeaderValueOption_HeaderAppendAction { return addAbsent }

func TestQueryParameterRouting(t *testing.T) {
	direct := func(body string) *routev3.Route_DirectResponse {
		return &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200,
			Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}}}}
	}
	m := featureMesh(t, featureApp(), nil, func(set *resources.Set) {
		prependRoutes(set,
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/q"},
				QueryParameters: []*routev3.QueryParameterMatcher{queryStr("user", strMatch("exact", "jason", false))},
				Headers:         []*routev3.HeaderMatcher{hdrStr(":method", strMatch("exact", "GET", false))}}, Action: direct("jason")},
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/q"},
				Headers: []*routev3.HeaderMatcher{hdrStr(":authority", strMatch("prefix", "127.0.0.1", false)),
					hdrStr(":scheme", strMatch("exact", "http", false))}}, Action: direct("other")},
		)
	})
	bothPaths(t, func(t *testing.T, c *http.Client) {
		for _, tc := range []struct{ method, path, want string }{
			{"GET", "/q?user=jason", "jason"},
			{"GET", "/q?x=1&user=jason", "jason"},
			{"POST", "/q?user=jason", "other"},
			{"GET", "/q?user=jas%6Fn", "other"},
		} {
			if _, body := featDo(t, c, tc.method, m.url(tc.path), ""); body != tc.want {
				t.Errorf("%s %s answered %q, want %q", tc.method, tc.path, body, tc.want)
			}
		}
	})
}

func disabledFilter() *routev3.FilterConfig { return &routev3.FilterConfig{Disabled: true} }

func faultEmpty() *faultv3.HTTPFault { return &faultv3.HTTPFault{} }

// rateLimitFilterHCM is the HCM's local_ratelimit filter without a bucket:
// limits come from virtual hosts and routes.
func rateLimitFilterHCM() *localratelimitv3.LocalRateLimit {
	return &localratelimitv3.LocalRateLimit{StatPrefix: "http_local_rate_limiter"}
}
