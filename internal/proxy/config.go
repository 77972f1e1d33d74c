package proxy

import (
	"crypto/tls"
	"net/http"
	"regexp"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/pathnorm"
	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

// runtimeConfig is the immutable translation of one resources.Set. Requests
// load it once through Proxy.cfg and never see a half-applied update.
type runtimeConfig struct {
	applied   *appliedSet // what it was built from, for /config_dump (dump.go)
	listeners map[string]*listenerConfig
	routes    map[string]*routeTable // RDS resources by name
	clusters  map[string]*cluster
	limiters  limiterSet // local rate limit buckets, kept across updates (routeaction_ratelimit.go)
}

type listenerKind int

const (
	kindHTTP listenerKind = iota + 1
	kindTCP
)

// listenerConfig is one translated Listener.
type listenerConfig struct {
	name    string
	address string // host:port
	kind    listenerKind
	tls     *downstreamTLS // nil: plaintext

	// Filter chains (ADR 002): this config is the listener's first chain.
	// With tls_inspector the first bytes of a connection pick the chain
	// (dispatch.go); other is PERMISSIVE's second chain (same name,
	// address, kind and stats; the opposite transport). chain() picks.
	inspect      bool
	sniffTimeout time.Duration // listener_filters_timeout (0: the server's own bound)
	other        *listenerConfig

	// HTTP
	inlineRoutes *routeTable // set when the HCM carries route_config
	rdsName      string      // set when the HCM uses rds
	setXFCC      bool        // SANITIZE_SET with uri: set XFCC to By/URI
	maxHeaderKB  uint32
	pathOpts     pathnorm.Options // normalize_path, merge_slashes, path_with_escaped_slashes_action
	filters      httpFilters      // fault and local rate limit filters (translate_listener.go)
	// streamIdleTimeout is the HCM's stream_idle_timeout (Envoy's default
	// 5 min when absent; 0: off): a request whose body, upstream response
	// head or response body makes no progress for this long ends
	// (streamidle.go; h2srv's streams through the handler, h2serve.go).
	streamIdleTimeout time.Duration

	// TCP
	tcpCluster  string
	tcpWeighted *weightedClusters // tcp_proxy.weighted_clusters, else tcpCluster
	idleTimeout time.Duration
	netRBAC     []*rbacFilter // envoy.filters.network.rbac before tcp_proxy, in order (authz_tcp.go)

	stats *endpointStats
}

// bindKey identifies the socket and serving mode of a listener. A listener
// whose key is unchanged by an update keeps its socket. The transport is
// not part of it: each connection takes the chains of the config current
// when it arrives, so a change of mTLS mode (PERMISSIVE to STRICT) keeps
// the socket, and the requests of a connection whose chain went away are
// refused (dispatch.go).
func (l *listenerConfig) bindKey() string {
	if l.kind == kindTCP {
		return l.name + " " + l.address + " tcp"
	}
	return l.name + " " + l.address + " http"
}

// chain returns the filter chain serving a connection that is TLS (or
// plaintext), nil when the listener has none for it.
func (l *listenerConfig) chain(tls bool) *listenerConfig {
	if (l.tls != nil) == tls {
		return l
	}
	if o := l.other; o != nil && (o.tls != nil) == tls {
		return o
	}
	return nil
}

type downstreamTLS struct {
	alpn []string
}

// routeTable is one RouteConfiguration: the routes of its single virtual host
// (domains "*"), in order.
type routeTable struct {
	name   string
	routes []*route
}

type route struct {
	match   routeMatch
	timeout time.Duration // 0: none
	retry   *retry.Policy // nil: no retries
	hash    []lb.HashPolicy
	// Exactly one of cluster or weighted is set.
	cluster  string
	weighted *weightedClusters

	routeFeatures // rewrites, local replies, headers, fault, rate limit, mirrors (routeaction.go)
}

type pathKind int

const (
	pathPrefix pathKind = iota + 1
	pathExact
	pathRegex
)

type routeMatch struct {
	kind          pathKind
	value         string // prefix or exact path, lower-cased when !caseSensitive
	regex         *regexp.Regexp
	caseSensitive bool
	headers       []headerMatcher
	query         []queryMatcher
}

type headerMatcher struct {
	name           string       // canonical MIME header key, unless pseudo
	pseudo         pseudoHeader // :method, :authority, :scheme, :path
	present        bool         // present_match, else str
	str            stringMatcher
	invert         bool
	missingAsEmpty bool // treat_missing_header_as_empty
}

type weightedClusters struct {
	names []string
	// cumulative[i] is the sum of weights 0..i; total is the last element.
	cumulative []uint32
	total      uint32
}

// cluster is one translated Cluster with its current endpoints.
type cluster struct {
	name           string
	connectTimeout time.Duration
	http2          bool
	tls            *upstreamTLS // nil: plaintext
	pool           poolOptions
	policy         clusterPolicy
	endpoints      []string // healthy (or unknown) endpoints, host:port
	// state balances, breaks circuits, budgets retries and detects outliers;
	// shared with earlier configs while policy is unchanged (build.go).
	state *clusterState
	up    *upstream // shared HTTP transport, reused across updates when unchanged
	stats *endpointStats
}

type upstreamTLS struct {
	allowed []spiffeid.ID
	alpn    []string
}

// upstream holds what an HTTP request needs to reach a cluster: a pooled
// transport and the URL scheme it speaks.
type upstream struct {
	fingerprint string
	scheme      string
	transport   http.RoundTripper // legacy path and HTTP/2
	h1          *h1Pool           // fast path: pooled HTTP/1.1 connections
	sessions    tls.ClientSessionCache
	closeIdle   func()
	retire      func() // no config uses it any more
}

// pick returns an endpoint address chosen by the cluster's load balancer
// without a hash key (a hashing policy then picks at random), lock-free.
func (c *cluster) pick() (string, bool) {
	e, ok := c.state.pick(lb.Key{}, nil, nil)
	if !ok {
		return "", false
	}
	return e.addr, true
}
