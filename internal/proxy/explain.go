package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// Explain answers "where would this request go, and why" for a resource set,
// with the proxy's own code: the set is translated as a sidecar translates
// it, the route is chosen by the same matcher, and the cluster's balancer
// picks from the same endpoints. It has no side effects: no socket, no
// goroutine, no stats, nothing shared with a running proxy.
//
//	set ─► translateSet (a sidecar's NACK reasons are errors here)
//	    ─► outbound listener of the destination (service and port, or address)
//	    ─► route table: every route in order, each match field checked
//	    ─► the winner: filters (fault, local rate limit), then a local reply
//	       (direct response, redirect) or the clusters with their weights
//	    ─► each cluster: endpoints and health, balancer and hash key,
//	       breakers, outlier detection, retry budget
//
// Runtime state is not in a resource set and is not explained: outlier
// ejections, circuit breaker gauges, the retry budget's counts, token
// buckets, and which endpoint a non-hashing balancer picks next.
func Explain(set *resources.Set, req ExplainRequest) (*Explanation, error) {
	ts, err := translateSet(set)
	if err != nil {
		return nil, err
	}
	lc, err := ts.findOutbound(req)
	if err != nil {
		return nil, err
	}
	ex := &Explanation{Listener: ExplainedListener{Name: lc.name, Address: lc.address}}
	if lc.kind == kindTCP {
		ex.Listener.Kind = "tcp"
		ex.Outcome = OutcomeTCP
		ts.explainTCP(ex, lc)
		return ex, nil
	}
	ex.Listener.Kind = "http"
	r, err := req.httpRequest(lc)
	if err != nil {
		return nil, err
	}
	ex.Request = explainedRequest(r)
	if _, ok := normalizeRequest(r, lc.pathOpts); !ok {
		ex.Outcome = OutcomeBadRequest
		ex.Reply = &LocalReply{Status: http.StatusBadRequest, Body: "the path has a NUL, a control character or a malformed %-escape"}
		return ex, nil
	}
	table, raw := lc.inlineRoutes, ts.inlineRaw[lc.name]
	if table == nil {
		ex.Listener.RouteConfig = lc.rdsName
		table, raw = ts.routes[lc.rdsName], set.Routes[lc.rdsName]
		if table == nil {
			ex.Notes = append(ex.Notes, fmt.Sprintf("route configuration %q is not in the config yet: every request gets 404", lc.rdsName))
		}
	}
	view := stdRequest(r)
	var rt *route
	if table != nil {
		rt = matchRoute(table, &view) // the decision, as the request paths make it
		ex.Routes = explainRoutes(table, &view, rt)
	}
	if rt == nil {
		ex.Outcome = OutcomeRouteNotFound
		ex.Reply = &LocalReply{Status: http.StatusNotFound, Reason: reasonRouteNotFound}
		return ex, nil
	}
	ts.explainRoute(ex, lc, rt, raw, table, r, &view)
	return ex, nil
}

// ExplainRequest is the request to explain and where it enters the proxy.
type ExplainRequest struct {
	// Destination names the outbound listener: a service ("httpbin"), a
	// name under it ("httpbin.default.svc.cluster.local"), with an optional
	// ":port", or the listener's own address ("127.0.0.1:15001").
	Destination string
	// Port selects among the service's outbound listeners (0: the port in
	// Destination, else the only one).
	Port uint32
	// Method defaults to GET; Target (path and query) to "/".
	Method string
	Target string
	// Authority is the Host header; empty: Destination as given.
	Authority string
	Headers   http.Header
	// Source is the caller's address, for source-IP hashing (default
	// 127.0.0.1: apps reach their sidecar on loopback).
	Source string
}

// Outcomes of an explained request.
const (
	OutcomeForward        = "forward"
	OutcomeDirectResponse = "direct_response"
	OutcomeRedirect       = "redirect"
	OutcomeRouteNotFound  = "route_not_found"
	OutcomeBadRequest     = "bad_request" // the path cannot be normalized
	OutcomeTCP            = "tcp"
)

// Explanation is what the proxy would do with the request, and why.
type Explanation struct {
	Listener ExplainedListener `json:"listener"`
	Request  ExplainedRequest  `json:"request"`
	// Routes are the routes tried, in order, up to and including the one
	// that matched (all of them when none did).
	Routes  []RouteVerdict `json:"routes,omitempty"`
	Route   *RouteDetail   `json:"route,omitempty"`
	Outcome string         `json:"outcome"`
	// Reply is the proxy's own answer: 404, a direct response, a redirect.
	Reply *LocalReply `json:"localReply,omitempty"`
	// Clusters is the route's cluster, or each weighted cluster.
	Clusters []ClusterDetail `json:"clusters,omitempty"`
	Notes    []string        `json:"notes,omitempty"`
}

// ExplainedListener is the listener the request enters.
type ExplainedListener struct {
	Name        string `json:"name"`
	Address     string `json:"address"`
	Kind        string `json:"kind"`                  // http or tcp
	RouteConfig string `json:"routeConfig,omitempty"` // RDS name
}

// ExplainedRequest is the request as the matcher sees it.
type ExplainedRequest struct {
	Method    string      `json:"method"`
	Authority string      `json:"authority"`
	Target    string      `json:"target"`
	Path      string      `json:"path"` // percent-decoded, what path matchers read
	Headers   http.Header `json:"headers,omitempty"`
}

// LocalReply is an answer the proxy gives itself.
type LocalReply struct {
	Status   int    `json:"status"`
	Reason   string `json:"reason,omitempty"` // x-trellis-reason
	Body     string `json:"body,omitempty"`
	Location string `json:"location,omitempty"`
	// ResponseHeaders are the route's response header mutations.
	ResponseHeaders []HeaderOp `json:"responseHeaders,omitempty"`
}

// translatedSet is a resource set translated as a sidecar does (build.go),
// without the parts that have effects: transports, cluster states, buckets.
type translatedSet struct {
	set       *resources.Set
	listeners map[string]*listenerConfig
	routes    map[string]*routeTable
	clusters  map[string]*cluster
	inlineRaw map[string]*routev3.RouteConfiguration // listener name → its inline route_config
}

// translateSet validates and translates every resource of set in build's
// order and with build's checks (build.go; kept in step by hand), so a set
// a sidecar would NACK is an error with the same reason.
func translateSet(set *resources.Set) (*translatedSet, error) {
	if set == nil {
		return nil, fmt.Errorf("nil resource set")
	}
	ts := &translatedSet{set: set, listeners: map[string]*listenerConfig{}, routes: map[string]*routeTable{},
		clusters: map[string]*cluster{}, inlineRaw: map[string]*routev3.RouteConfiguration{}}
	for _, name := range resources.SortedKeys(set.Endpoints) {
		if set.Endpoints[name] == nil {
			return nil, fmt.Errorf("the proxy rejects this config: cluster load assignment %q: nil resource", name)
		}
		if err := validateCLA(set.Endpoints[name]); err != nil {
			return nil, fmt.Errorf("the proxy rejects this config: cluster load assignment %q: %w", name, err)
		}
	}
	for _, name := range resources.SortedKeys(set.Clusters) {
		if got := set.Clusters[name].GetName(); got != name {
			return nil, fmt.Errorf("the proxy rejects this config: cluster %q: name: resource name %q does not match its key", name, got)
		}
		c, err := translateCluster(set.Clusters[name], set.Endpoints)
		if err != nil {
			return nil, fmt.Errorf("the proxy rejects this config: cluster %q: %w", name, err)
		}
		ts.clusters[name] = c
	}
	for _, name := range resources.SortedKeys(set.Routes) {
		if got := set.Routes[name].GetName(); got != name {
			return nil, fmt.Errorf("the proxy rejects this config: route configuration %q: name: resource name %q does not match its key", name, got)
		}
		rt, err := translateRouteConfig(set.Routes[name])
		if err != nil {
			return nil, fmt.Errorf("the proxy rejects this config: route configuration %q: %w", name, err)
		}
		ts.routes[name] = rt
	}
	stats := newStatsRegistry() // translateListener wants one; this one is thrown away
	addrs := map[string]string{}
	for _, name := range resources.SortedKeys(set.Listeners) {
		l := set.Listeners[name]
		if l.GetName() != name {
			return nil, fmt.Errorf("the proxy rejects this config: listener %q: name: resource name %q does not match its key", name, l.GetName())
		}
		lc, err := translateListener(l, stats)
		if err != nil {
			return nil, fmt.Errorf("the proxy rejects this config: listener %q: %w", name, err)
		}
		if other, dup := addrs[lc.address]; dup {
			return nil, fmt.Errorf("the proxy rejects this config: listener %q: address: %s already used by listener %q", name, lc.address, other)
		}
		addrs[lc.address] = name
		ts.listeners[name] = lc
		if lc.inlineRoutes != nil {
			ts.inlineRaw[name] = inlineRouteConfig(l)
		}
	}
	return ts, nil
}

// findOutbound returns the outbound listener of the request's destination.
// Listener names follow Istio's scheme: outbound|<port>|<service>.
func (ts *translatedSet) findOutbound(req ExplainRequest) (*listenerConfig, error) {
	dest := strings.TrimSpace(req.Destination)
	if dest == "" {
		return nil, fmt.Errorf("destination: empty, want a service name or a listener address")
	}
	for _, name := range resources.SortedKeys(ts.listeners) {
		if lc := ts.listeners[name]; lc.address == dest {
			return lc, nil
		}
	}
	host, port := dest, req.Port
	if h, p, err := net.SplitHostPort(dest); err == nil {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("destination %q: port %q is not a number", dest, p)
		}
		if port != 0 && uint32(n) != port {
			return nil, fmt.Errorf("destination %q: port %d given twice, differently (%d)", dest, n, port)
		}
		host, port = h, uint32(n)
	}
	var matches []*listenerConfig
	var services []string
	for _, name := range resources.SortedKeys(ts.listeners) {
		svc, p, ok := outboundName(name)
		if !ok {
			continue
		}
		services = append(services, fmt.Sprintf("%s:%d", svc, p))
		if host == svc || strings.HasPrefix(host, svc+".") {
			if port == 0 || port == p {
				matches = append(matches, ts.listeners[name])
			}
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		if len(services) == 0 {
			return nil, fmt.Errorf("no upstream for %q: this proxy has no outbound listener", dest)
		}
		want := host
		if port != 0 {
			want = fmt.Sprintf("%s:%d", host, port)
		}
		return nil, fmt.Errorf("no upstream for %q: this proxy's upstreams are %s", want, strings.Join(services, ", "))
	}
	var ports []string
	for _, lc := range matches {
		_, p, _ := outboundName(lc.name)
		ports = append(ports, strconv.Itoa(int(p)))
	}
	return nil, fmt.Errorf("%q has outbound listeners on ports %s: give the port", host, strings.Join(ports, ", "))
}

// outboundName splits "outbound|<port>|<service>".
func outboundName(name string) (svc string, port uint32, ok bool) {
	parts := strings.Split(name, "|")
	if len(parts) != 3 || parts[0] != "outbound" || parts[2] == "" {
		return "", 0, false
	}
	p, err := strconv.ParseUint(parts[1], 10, 16)
	if err != nil {
		return "", 0, false
	}
	return parts[2], uint32(p), true
}

// httpRequest builds the request as the outbound listener's server would
// read it off the wire, so the path and headers are what the matcher gets.
func (req ExplainRequest) httpRequest(lc *listenerConfig) (*http.Request, error) {
	if lc.tls != nil {
		return nil, fmt.Errorf("listener %q is an inbound (TLS) listener: explain requests an app sends to its outbound listeners", lc.name)
	}
	authority := req.Authority
	if authority == "" {
		authority = req.Headers.Get("Host")
	}
	if authority == "" {
		authority = req.Destination
		if req.Port != 0 && !strings.Contains(authority, ":") {
			authority += ":" + strconv.Itoa(int(req.Port))
		}
	}
	return readRequest(req.Method, req.Target, authority, req.Headers, valueOr(req.Source, "127.0.0.1"))
}

// readRequest parses a request head made of the parts with net/http's
// server-side parser.
func readRequest(method, target, authority string, headers http.Header, source string) (*http.Request, error) {
	method, target = valueOr(method, http.MethodGet), valueOr(target, "/")
	if target[0] != '/' {
		return nil, fmt.Errorf("request target %q: want a path starting with /", target)
	}
	if strings.ContainsAny(method+target+authority, " \t\r\n") {
		return nil, fmt.Errorf("request %q %q (Host %q): no spaces or line breaks allowed", method, target, authority)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, authority)
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if strings.EqualFold(name, "Host") {
			continue // the authority
		}
		for _, v := range headers[name] {
			if strings.ContainsAny(name, " \t\r\n:") || strings.ContainsAny(v, "\r\n") {
				return nil, fmt.Errorf("header %q: %q: invalid name or value", name, v)
			}
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	b.WriteString("\r\n")
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(b.String())))
	if err != nil {
		return nil, fmt.Errorf("request %s %s: %w", method, target, err)
	}
	r.RemoteAddr = net.JoinHostPort(source, "0")
	return r, nil
}

func valueOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func explainedRequest(r *http.Request) ExplainedRequest {
	er := ExplainedRequest{Method: r.Method, Authority: r.Host, Target: r.RequestURI, Path: r.URL.Path}
	if len(r.Header) > 0 {
		er.Headers = r.Header.Clone()
	}
	return er
}
