package proxy

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

// RouteDetail is what the matched route does besides choosing clusters.
type RouteDetail struct {
	Index int    `json:"index"`
	Name  string `json:"name,omitempty"`
	// Action: cluster, weighted_clusters, direct_response or redirect.
	Action  string         `json:"action"`
	Timeout string         `json:"timeout"` // "none" when unset or 0
	Retry   *RetryDetail   `json:"retry,omitempty"`
	Hash    []HashDetail   `json:"hashPolicy,omitempty"`
	Filters []FilterDetail `json:"filters,omitempty"`
	Mirrors []MirrorDetail `json:"mirrors,omitempty"`
}

// RetryDetail is the route's retry policy and whether it covers the request.
type RetryDetail struct {
	RetryOn                 []string `json:"retryOn"`
	RetriableStatusCodes    []int    `json:"retriableStatusCodes,omitempty"`
	NumRetries              uint32   `json:"numRetries"`
	PerTryTimeout           string   `json:"perTryTimeout"`
	BackOff                 string   `json:"backOff"`
	PreviousHosts           bool     `json:"previousHosts"`
	HostSelectionAttempts   uint32   `json:"hostSelectionAttempts,omitempty"`
	RetriableRequestHeaders []string `json:"retriableRequestHeaders,omitempty"`
	// Applies: failures of this request are retried (subject to the
	// cluster's retry budget and max_retries at the time).
	Applies bool   `json:"applies"`
	Reason  string `json:"reason,omitempty"`
}

// HashDetail is one hash policy of the route and the request's value for it.
type HashDetail struct {
	Kind      string `json:"kind"` // header, cookie, source_ip, query_parameter
	Name      string `json:"name,omitempty"`
	Terminal  bool   `json:"terminal,omitempty"`
	CookieTTL string `json:"cookieTTL,omitempty"`
	Value     string `json:"value"` // quoted, or (absent)
}

// FilterDetail is an HTTP filter of the listener as it acts on this route.
type FilterDetail struct {
	Filter string `json:"filter"`
	Kind   string `json:"kind"`  // fault, local_ratelimit, jwt_authn, rbac or buffer
	Level  string `json:"level"` // where its config comes from: route, virtual host, listener
	// Applies: the filter acts on this request (a fault then still
	// samples its percentages).
	Applies bool           `json:"applies"`
	Reason  string         `json:"reason,omitempty"`
	Fault   *FaultDetail   `json:"fault,omitempty"`
	Limit   *RateLimitInfo `json:"rateLimit,omitempty"`
	JWT     *JWTDetail     `json:"jwt,omitempty"`
	RBAC    *RBACDetail    `json:"rbac,omitempty"`
	// MaxRequestBytes is the buffer filter's limit for the route (413 beyond).
	MaxRequestBytes int64 `json:"maxRequestBytes,omitempty"`
}

// JWTDetail is what a jwt_authn filter decides for the request.
type JWTDetail struct {
	// Result: "no token" (left to authorization), "verified" or "invalid"
	// (the request gets 401), or "not evaluated" with the reason.
	Result    string   `json:"result"`
	Principal string   `json:"principal,omitempty"` // iss/sub of a verified token
	Audiences []string `json:"audiences,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// RBACDetail is what an rbac filter decides for the request.
type RBACDetail struct {
	Action   string `json:"action"`   // ALLOW, DENY or LOG
	Policies int    `json:"policies"` // how many policies the filter holds
	Allowed  bool   `json:"allowed"`
	// Policy is the policy that matched ("": none did).
	Policy string `json:"policy,omitempty"`
}

// FaultDetail is a fault injection policy.
type FaultDetail struct {
	Delay           string   `json:"delay,omitempty"`
	DelayPercent    float64  `json:"delayPercent,omitempty"`
	AbortStatus     int      `json:"abortStatus,omitempty"`
	AbortGRPCStatus *int     `json:"abortGrpcStatus,omitempty"`
	AbortPercent    float64  `json:"abortPercent,omitempty"`
	UpstreamCluster string   `json:"upstreamCluster,omitempty"` // only requests routed there
	Headers         []string `json:"headers,omitempty"`         // only requests matching all
	MaxActive       uint32   `json:"maxActiveFaults,omitempty"`
}

// RateLimitInfo is a local rate limit's token bucket.
type RateLimitInfo struct {
	MaxTokens     uint32 `json:"maxTokens"`
	TokensPerFill uint32 `json:"tokensPerFill"`
	FillInterval  string `json:"fillInterval"`
	Enabled       bool   `json:"enabled"`
	Enforced      bool   `json:"enforced"`
	Status        int    `json:"status"`
}

// MirrorDetail is a request mirror policy.
type MirrorDetail struct {
	Cluster   string  `json:"cluster"`
	Percent   float64 `json:"percent"`
	Authority string  `json:"authority"` // the copy's
	Missing   bool    `json:"missing,omitempty"`
}

// explainRoute fills in what the matched route rt does with the request.
func (ts *translatedSet) explainRoute(ex *Explanation, lc *listenerConfig, rt *route, rc *routev3.RouteConfiguration,
	table *routeTable, r *http.Request, view *request[string]) {
	raw := rawRoute(rc, rt, table)
	idx := 0
	for i, x := range table.routes {
		if x == rt {
			idx = i
		}
	}
	d := &RouteDetail{Index: idx, Name: rt.name, Timeout: durationOrNone(rt.timeout), Hash: hashDetails(rt.hash, r)}
	ex.Route = d
	if rt.retry != nil {
		d.Retry = retryDetail(rt.retry, raw.GetRoute().GetRetryPolicy(), r)
	}
	var clusters []string
	var wcs []int
	var weights []uint32
	switch {
	case rt.local != nil && rt.local.redirect != nil:
		d.Action, ex.Outcome = "redirect", OutcomeRedirect
	case rt.local != nil:
		d.Action, ex.Outcome = "direct_response", OutcomeDirectResponse
	case rt.weighted != nil:
		d.Action, ex.Outcome = "weighted_clusters", OutcomeForward
		prev := uint32(0)
		for i, name := range rt.weighted.names {
			clusters, wcs = append(clusters, name), append(wcs, i)
			weights = append(weights, rt.weighted.cumulative[i]-prev)
			prev = rt.weighted.cumulative[i]
		}
	default:
		d.Action, ex.Outcome = "cluster", OutcomeForward
		clusters, wcs, weights = []string{rt.cluster}, []int{-1}, []uint32{0}
	}
	d.Filters = filterDetails(lc, rt, rc, raw, view, clusters)
	if rt.local != nil {
		l := rt.local
		ex.Reply = &LocalReply{Status: l.code, Body: l.body, ResponseHeaders: mutationOps(rt.responseMutation(-1))}
		if l.addsLocation() {
			ex.Reply.Location = string(location(l, &rt.match, view, nil))
		}
		return
	}
	for _, mp := range rt.mirrors {
		host := r.Host
		if hl := rt.requestHost(-1); hl != nil {
			host = hl.value
		}
		if !mp.noSuffix {
			host = shadowHost(host)
		}
		_, ok := ts.clusters[mp.cluster]
		d.Mirrors = append(d.Mirrors, MirrorDetail{Cluster: mp.cluster, Percent: mp.fraction.percent(), Authority: host, Missing: !ok})
	}
	var total uint32
	if rt.weighted != nil {
		total = rt.weighted.total
	}
	for i, name := range clusters {
		cd := ts.explainCluster(name, rt, r)
		cd.Weight, cd.Probability = weights[i], 1
		if total > 0 {
			cd.Probability = float64(weights[i]) / float64(total)
		}
		cd.Upstream = upstreamRequest(rt, wcs[i], r, view)
		ex.Clusters = append(ex.Clusters, cd)
	}
}

func durationOrNone(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	return d.String()
}

// percent is the fraction in percent.
func (f fraction) percent() float64 {
	if f.den == 0 {
		return 0
	}
	return 100 * float64(f.num) / float64(f.den)
}

func retryDetail(p *retry.Policy, raw *routev3.RetryPolicy, r *http.Request) *RetryDetail {
	d := &RetryDetail{RetriableStatusCodes: p.StatusCodes, NumRetries: p.NumRetries,
		PerTryTimeout: durationOrNone(p.PerTryTimeout), PreviousHosts: p.PreviousHosts,
		BackOff: fmt.Sprintf("jittered exponential, %s base, %s max", p.BaseInterval, p.MaxInterval)}
	if p.PreviousHosts {
		d.HostSelectionAttempts = p.HostSelectionAttempts
	}
	// The condition names as configured (retry.Translate accepted each).
	for _, tok := range strings.Split(raw.GetRetryOn(), ",") {
		if tok = strings.TrimSpace(tok); tok != "" {
			d.RetryOn = append(d.RetryOn, tok)
		}
	}
	for _, h := range raw.GetRetriableRequestHeaders() {
		if hm, err := translateHeaderMatcher(h); err == nil {
			d.RetriableRequestHeaders = append(d.RetriableRequestHeaders, headerField(&hm)+" "+describeHeader(&hm))
		}
	}
	switch {
	case p.NumRetries == 0:
		d.Reason = "num_retries is 0"
	case p.On == 0:
		d.Reason = "retry_on lists no condition"
	case !retry.Eligible[string](p, stdRequestHeaders{r}):
		d.Reason = "the request matches none of retriable_request_headers"
	default:
		d.Applies = true
	}
	return d
}

func hashDetails(ps []lb.HashPolicy, r *http.Request) []HashDetail {
	var out []HashDetail
	for _, p := range ps {
		d := HashDetail{Name: p.Name, Terminal: p.Terminal, Value: absent}
		switch p.Kind {
		case lb.HashHeader:
			d.Kind = "header"
			switch p.Name {
			case ":authority":
				d.Value = quote(r.Host)
			case ":path":
				d.Value = quote(r.URL.RequestURI())
			case ":method":
				d.Value = quote(r.Method)
			default:
				if vals := r.Header.Values(p.Name); len(vals) > 0 {
					d.Value = quote(strings.Join(vals, ","))
				}
			}
		case lb.HashCookie:
			d.Kind = "cookie"
			if p.HasTTL {
				d.CookieTTL = p.TTL.String()
			}
			if v, ok := stdCookie(r, p.Name); ok {
				d.Value = quote(v)
			}
		case lb.HashSourceIP:
			d.Kind = "source_ip"
			if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				d.Value = quote(host)
			}
		case lb.HashQuery:
			d.Kind = "query_parameter"
			if v, ok := lb.QueryValue(r.URL.RawQuery, p.Name); ok {
				d.Value = quote(v)
			}
		}
		out = append(out, d)
	}
	return out
}

// filterDetails resolves each HTTP filter of the listener for the route,
// as the request paths do (httpFilter.resolve), in the listener's order.
func filterDetails(lc *listenerConfig, rt *route, rc *routev3.RouteConfiguration, raw *routev3.Route,
	view *request[string], clusters []string) []FilterDetail {
	var out []FilterDetail
	for i := range lc.filters.chain {
		f := &lc.filters.chain[i]
		d := FilterDetail{Filter: f.name, Kind: f.kind.String(), Level: filterLevel(f.name, rc, raw)}
		if f.kind == filterJWT || f.kind == filterRBAC {
			d.Reason = "acts on the destination's inbound listener only"
			out = append(out, d) // explainAuthz (explain_inbound.go) evaluates them there
			continue
		}
		if f.kind == filterBuffer {
			if bp := f.resolveBuffer(rt); bp != nil {
				d.Applies, d.MaxRequestBytes = true, bp.max
			} else {
				d.Reason = "disabled for this route"
			}
			out = append(out, d)
			continue
		}
		fp, lp := f.resolve(rt)
		switch {
		case fp != nil:
			d.Fault = faultDetail(fp)
			if len(clusters) == 0 {
				clusters = []string{""} // a local reply: no upstream cluster
			}
			for _, c := range clusters {
				if faultApplies(fp, view, c) {
					d.Applies = true
				}
			}
			if !d.Applies {
				d.Reason = "the request does not meet the fault's header or upstream_cluster conditions"
			}
		case lp != nil:
			d.Limit = &RateLimitInfo{MaxTokens: lp.params.MaxTokens, TokensPerFill: lp.params.TokensPerFill,
				FillInterval: lp.params.FillInterval.String(), Enabled: lp.enabled, Enforced: lp.enforced, Status: lp.status}
			d.Applies = lp.enabled
			if !lp.enabled {
				d.Reason = "filter_enabled is not 100%"
			}
		default:
			d.Reason = "not configured for this route"
			for _, fc := range rt.filters {
				if fc.name == f.name && fc.disabled {
					d.Reason = "disabled for this route"
				}
			}
		}
		out = append(out, d)
	}
	return out
}

// filterLevel names where a filter's config for the route comes from: the
// most specific typed_per_filter_config naming it, else the listener.
func filterLevel(name string, rc *routev3.RouteConfiguration, raw *routev3.Route) string {
	if _, ok := raw.GetTypedPerFilterConfig()[name]; ok {
		return "route"
	}
	if vhs := rc.GetVirtualHosts(); len(vhs) == 1 {
		if _, ok := vhs[0].GetTypedPerFilterConfig()[name]; ok {
			return "virtual host"
		}
	}
	return "listener"
}

func faultDetail(fp *faultPolicy) *FaultDetail {
	d := &FaultDetail{UpstreamCluster: fp.cluster, MaxActive: fp.maxActive}
	if fp.delay > 0 {
		d.Delay, d.DelayPercent = fp.delay.String(), fp.delayPct.percent()
	}
	if fp.abort {
		d.AbortPercent = fp.abortPct.percent()
		if fp.abortGRPC >= 0 {
			g := fp.abortGRPC
			d.AbortGRPCStatus = &g
		} else {
			d.AbortStatus = fp.abortCode
		}
	}
	for i := range fp.headers {
		h := &fp.headers[i]
		d.Headers = append(d.Headers, headerField(h)+" "+describeHeader(h))
	}
	return d
}
