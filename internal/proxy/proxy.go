// Package proxy is the Trellis sidecar data plane. It translates complete xDS
// resource sets (Envoy v3 protos, see ARCHITECTURE.md "The xDS contract")
// into an immutable runtime config and serves traffic with it.
//
//	        Update(*resources.Set)
//	                 │ build: validate + translate (NACK on error, nothing changes)
//	                 ▼
//	  atomic.Pointer[runtimeConfig] ◄── loaded once per request / connection
//	                 │
//	┌────────────────┼──────────────────────────────┐
//	│ listeners (bound sockets, kept while name+address+mode are unchanged)
//	│   http: dispatcher ─► HTTP/1.1 fast path ─► route table ─► cluster ─► pooled h1 conns
//	│           └─ anything else ─► handoff ─► net/http server ─► ReverseProxy ─► transport
//	│   tcp:  accept ─► cluster ─► load-balanced endpoint ─► copy both ways (half-close)
//	└────────────────┴──────────────────────────────┘
//	  tlsutil: TLS 1.3 mTLS, SPIFFE verification per handshake, secure naming
//
// Behaviour of references that are not (yet) present:
//   - a route to a cluster not in the config answers 503 with
//     x-trellis-reason: cluster_not_found; a cluster without healthy
//     endpoints answers 503 no_healthy_upstream (TCP: the connection is closed);
//   - an HTTP listener whose RDS route configuration has not arrived answers
//     404 with x-trellis-reason: route_not_found, as does a request no route
//     matches;
//   - an EDS cluster whose ClusterLoadAssignment is missing has no endpoints.
//
// Listeners keep their socket across updates while name, address and mode
// (HTTP or TCP, TLS and its ALPN list) are unchanged; otherwise the old one
// stops accepting and drains (up to 30s) and a new one is bound. If binding
// fails the update is refused; a listener that had to give up its address
// for the failed rebind stays closed until a later update binds it.
//
// Route timeouts: an unset or zero route timeout means no timeout (Envoy
// defaults to 15s; the compiler emits a timeout only when one is configured).
// A route timeout covers the whole exchange, including streamed bodies.
//
// HTTP/1.1 fast path (h1*.go, dispatch.go; the default). Each accepted
// connection gets one goroutine, which runs the mTLS handshake (inbound),
// reads request heads in place from a pooled buffer, parses strictly only
// what the proxy interprets (request line, Host, Content-Length,
// Transfer-Encoding, Connection and hop-by-hop headers, Expect, and the
// headers a route matches on; every other line is forwarded as raw bytes),
// routes, and does the upstream exchange inline over a pooled keep-alive
// connection (per cluster and endpoint, TLS sessions resumed). Each message
// is written with one flush when complete, or before the goroutine blocks
// on a read, so streamed bodies flow without being buffered whole. A
// request is sent whole before its response is read (no full duplex on
// HTTP/1.1). A steady-state GET allocates nothing in the proxy. Refused
// heads get 400 (431 headers too large, 414 request line too long, 505
// version) and the connection closes: CL with TE, a Transfer-Encoding other
// than one "chunked", an invalid or conflicting Content-Length, bare LF,
// whitespace before a colon, CTL bytes, obs-fold, no or several Host.
// Expect: 100-continue is answered by the proxy (as Envoy does) and not
// forwarded. An idempotent request (body-less, or with a body read whole for
// a retry policy) whose pooled upstream connection turns out closed, with
// nothing received, is resent on a new connection; that is not a retry.
//
// Upstream resilience (cluster_state.go; decisions in the lb, breaker, retry
// and outlier packages, the same on both paths): each cluster balances with
// its lb_policy over its healthy endpoints minus those outlier detection
// ejected (all of them below healthy_panic_threshold); circuit breakers
// bound requests, retries, connections and requests waiting for one (503
// upstream_overflow); the route's retry_policy retries attempts with
// Envoy's conditions, per-try timeouts and jittered back-off, within the
// route timeout and the cluster's retry budget; request bodies up to 64 KiB
// are kept for retries. A cluster whose settings are unchanged keeps this
// state across updates, endpoints included by address. A caller hanging up
// while the upstream is slow is noticed by a short-lived helper started
// only after 20ms (downstream_cancelled).
//
// Handler path (an http.Handler, httpHandler in http.go, with
// httputil.ReverseProxy behind the forwarder interface, forward.go):
// HTTP/2 connections (ALPN h2 inbound, the h2c preface outbound) are served
// by the sidecar's own HTTP/2 server, h2srv (h2serve.go; docs/adr/003),
// which calls the handler per stream; the dispatcher hands upgrades
// (WebSocket), HTTP/1.0, non-origin-form targets and requests routed to an
// HTTP/2 cluster, with the bytes already read, to the listener's net/http
// server; the connection stays there. HTTP/2 clusters are sent to with
// h2cli's pool (upstream.go). Options.NetHTTP2 (TRELLIS_PROXY_H2=nethttp)
// puts HTTP/2 back on net/http's server and transport; Options.LegacyHTTP1
// (TRELLIS_PROXY_LEGACY_HTTP1=1) sends every HTTP listener to net/http, for
// comparison. All paths read the same runtime config, answer the same local
// replies and count the same stats.
//
// Every HTTP listener removes client-sent x-forwarded-client-cert and
// x-trellis-* headers and, with SANITIZE_SET + uri on an mTLS connection,
// sets x-forwarded-client-cert: By=<own spiffe id>;URI=<peer spiffe id>;
// x-forwarded-for is the connection's address on plaintext connections and
// the peer sidecar's on mTLS ones. Request paths are normalized with the
// HCM's path options (pathnorm) before routing, authorization and
// forwarding. A listener with tls_inspector (PERMISSIVE) picks its TLS or
// plaintext filter chain by the first bytes of each connection
// (downstream.go).
package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/trellis-mesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// Identity supplies the sidecar's current SVID and the trust bundle. Both
// change on rotation; the proxy reads them on every handshake, so rotation
// never drops connections.
type Identity interface {
	Certificate() (*tls.Certificate, error) // leaf first, with private key
	x509bundle.Source
}

// Options configure a Proxy.
type Options struct {
	Identity Identity
	Logger   *slog.Logger
	// LegacyHTTP1 serves HTTP/1.1 with net/http and httputil.ReverseProxy
	// instead of the fast path (for comparison). The environment variable
	// TRELLIS_PROXY_LEGACY_HTTP1=1 sets it too.
	LegacyHTTP1 bool
	// NetHTTP2 serves and sends HTTP/2 with net/http's server and transport
	// instead of the sidecar's own (h2srv, h2cli; docs/adr/003). The
	// environment variable TRELLIS_PROXY_H2=nethttp sets it too. Legacy
	// mode implies it for the server side.
	NetHTTP2 bool
	// MaxDownstreamConns bounds the open connections of each listener
	// (0: DefaultMaxDownstreamConns).
	MaxDownstreamConns int64
}

// Proxy is the sidecar data plane. Create it with New, feed it with Update,
// stop it with Shutdown.
type Proxy struct {
	id    tlsutil.Identity
	log   *slog.Logger
	stats *statsRegistry
	cfg   atomic.Pointer[runtimeConfig]
	fwd   forwarder
	ownID ownIDCache
	bufs  bufferPools
	// bodies recycles the request bodies the buffer filter reads (buffer_filter.go).
	bodies bodyPool

	mirrors mirrorSender // request mirror copies in flight (mirror.go)
	// jwtKeys fetches and keeps the remote JWKS of jwt_authn filters across
	// config updates (authz.go); its goroutines end with ctx.
	jwtKeys *jwtauthn.KeyCache

	legacyHTTP1 bool
	netHTTP2    bool  // Options.NetHTTP2
	maxConns    int64 // per listener

	ctx    context.Context // owns every goroutine of the proxy
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // serializes Update and Shutdown; guards bound, closed
	bound    map[string]*boundListener
	closed   bool
	draining sync.WaitGroup
}

// New returns a Proxy with no config; it serves nothing until Update.
func New(opts Options) (*Proxy, error) {
	if opts.Identity == nil {
		return nil, errors.New("proxy: Options.Identity is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		id:     opts.Identity,
		log:    log,
		stats:  newStatsRegistry(),
		ctx:    ctx,
		cancel: cancel,
		bound:  map[string]*boundListener{},

		legacyHTTP1: opts.LegacyHTTP1 || os.Getenv("TRELLIS_PROXY_LEGACY_HTTP1") == "1",
		netHTTP2:    opts.NetHTTP2 || os.Getenv("TRELLIS_PROXY_H2") == "nethttp",
		maxConns:    cmp.Or(opts.MaxDownstreamConns, DefaultMaxDownstreamConns),
	}
	p.fwd = newReverseProxyForwarder(p)
	p.jwtKeys = jwtauthn.NewKeyCache(ctx, jwksClient(), log) // jwksdial.go
	return p, nil
}

// Update validates a complete resource set and, if valid, swaps it in
// atomically, binding new listeners and draining removed ones. On an invalid
// resource it returns an error naming the resource and field and changes
// nothing. A listener that cannot be bound is also an error; listeners bound
// by the failed update are closed again and the previous config stays.
func (p *Proxy) Update(set *resources.Set) error { return p.update(set, nil) }

// UpdateEncoded is Update for a caller that keeps the set's wire form (the
// xDS client: client.EncodedHandler): enc is type URL → resource name →
// encoding of every resource of set. The proxy keeps enc for /config_dump
// instead of encoding the set again; enc must not be modified afterwards.
func (p *Proxy) UpdateEncoded(set *resources.Set, enc map[string]map[string][]byte) error {
	return p.update(set, enc)
}

func (p *Proxy) update(set *resources.Set, enc map[string]map[string][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy: shut down")
	}
	prev := p.cfg.Load()
	cfg, err := p.build(set, prev)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	// The set is kept in its wire form only, for /config_dump (dump.go).
	if cfg.applied, err = appliedFrom(set, enc); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	started, closing, err := p.applyListeners(cfg)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	p.cfg.Store(cfg)
	p.commitListeners(started, closing)
	cfg.commitClusters(prev)
	p.log.Info("config applied", "listeners", len(cfg.listeners), "routes", len(cfg.routes),
		"clusters", len(cfg.clusters), "endpoints", len(set.Endpoints))
	return nil
}

// Ready reports whether a first Update succeeded.
func (p *Proxy) Ready() bool { return p.cfg.Load() != nil }

// Shutdown stops accepting connections, lets in-flight requests and
// connections finish until ctx ends, then closes everything.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	bound := p.bound
	p.bound = map[string]*boundListener{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	for _, b := range bound {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.shutdown(ctx)
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() {
		p.draining.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("proxy shutdown: drain: %w", ctx.Err())
	}
	p.cancel() // force-closes whatever still drains
	p.wg.Wait()
	p.mirrors.close()
	<-done
	if cfg := p.cfg.Load(); cfg != nil {
		cfg.stopClusters()
	}
	return err
}

// ownIDCache caches the SPIFFE ID of the current SVID, re-parsed only when
// the Identity returns a different certificate (rotation).
type ownIDCache struct {
	v atomic.Pointer[ownIDEntry]
}

type ownIDEntry struct {
	cert *tls.Certificate
	id   string
}

func (c *ownIDCache) get(id Identity) (string, error) {
	cert, err := id.Certificate()
	if err != nil {
		return "", fmt.Errorf("local svid: %w", err)
	}
	if e := c.v.Load(); e != nil && e.cert == cert {
		return e.id, nil
	}
	sid, err := tlsutil.OwnID(cert)
	if err != nil {
		return "", err
	}
	c.v.Store(&ownIDEntry{cert: cert, id: sid.String()})
	return sid.String(), nil
}
