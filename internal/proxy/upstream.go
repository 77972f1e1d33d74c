package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/h2cli"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

// connectError marks a failure to establish an upstream connection (TCP
// connect or mTLS handshake, including a secure-naming refusal).
type connectError struct{ err error }

func (e *connectError) Error() string { return "upstream connect: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// dialUpstream connects to addr for cluster c: plain TCP, or mTLS with the
// cluster's ALPN and allowed SPIFFE IDs. Failures are counted on the cluster
// and returned as *connectError. The returned conn decrements the cluster's
// active connection gauge when closed.
func dialUpstream(ctx context.Context, c *cluster, id tlsutil.Identity, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		c.stats.connectFailures.Add(1)
		return nil, &connectError{fmt.Errorf("cluster %s: dial %s: %w", c.name, addr, err)}
	}
	c.stats.active.Add(1)
	// Count below TLS, so *tls.Conn stays the concrete type net/http
	// inspects to negotiate h2.
	var conn net.Conn = &countedConn{Conn: raw, gauge: &c.stats.active}
	if c.tls != nil {
		cfg := tlsutil.ClientConfig(id, c.tls.allowed, c.tls.alpn)
		if c.up != nil {
			// Resume sessions with the cluster's servers: a resumed TLS 1.3
			// handshake skips the certificate exchange and signatures.
			// VerifyConnection still runs on resumption.
			cfg.ClientSessionCache = c.up.sessions
		}
		ec := &expiringConn{Conn: conn}
		tc := tls.Client(ec, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			if cfg.ClientSessionCache != nil {
				// A ticket the server (or our verification) refuses must
				// not fail every later dial: forget it (key as crypto/tls
				// derives it without ServerName).
				cfg.ClientSessionCache.Put(raw.RemoteAddr().String(), nil)
			}
			_ = conn.Close()
			c.stats.connectFailures.Add(1)
			c.stats.tlsFailures.Add(1)
			return nil, &connectError{fmt.Errorf("cluster %s: tls handshake with %s: %w", c.name, addr, err)}
		}
		cs := tc.ConnectionState()
		ec.closeAt(certExpiry(&cs, id)) // expiry.go
		conn = tc
	}
	return conn, nil
}

// newUpstream builds the pooled HTTP transport of a cluster. It is built only
// when a cluster first appears or its fingerprint changes, and is otherwise
// carried over to the next config, keeping its idle connections. HTTP/2
// clusters use the sidecar's own client (h2cli, docs/adr/003) unless
// netHTTP2 (Options.NetHTTP2, TRELLIS_PROXY_H2=nethttp) keeps net/http's.
func newUpstream(c *cluster, id tlsutil.Identity, netHTTP2 bool) *upstream {
	// The transport is shared by every config that keeps the same
	// fingerprint, so it must not capture c (its endpoints are per config).
	dialCluster := &cluster{name: c.name, connectTimeout: c.connectTimeout, tls: c.tls, stats: c.stats}
	idle := upstreamIdleTime
	if c.pool.idleTimeoutSet {
		idle = c.pool.idleTimeout // 0: no limit, as in Envoy
	}
	t := &http.Transport{
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       idle,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: 1000,
			SendPingTimeout:      30 * time.Second,
		},
		Protocols: new(http.Protocols),
	}
	up := &upstream{fingerprint: c.fingerprint(), transport: t, sessions: tls.NewLRUClientSessionCache(64)}
	dialCluster.up = up
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		return dialUpstream(ctx, dialCluster, id, addr)
	}
	up.h1 = newH1Pool(func(ctx context.Context, addr string) (net.Conn, error) {
		return dialUpstream(ctx, dialCluster, id, addr)
	}, c.pool, c.policy.limits.MaxConnections, c.policy.limits.MaxPendingRequests)
	up.closeIdle = func() {
		t.CloseIdleConnections()
		up.h1.closeIdle()
	}
	up.retire = func() {
		t.CloseIdleConnections()
		up.h1.retire()
	}
	switch {
	case c.tls == nil && c.http2:
		up.scheme = "http"
		t.DialContext = dial
		t.Protocols.SetUnencryptedHTTP2(true)
	case c.tls == nil:
		up.scheme = "http"
		t.DialContext = dial
		t.Protocols.SetHTTP1(true)
		t.MaxConnsPerHost = maxConnsPerHost(c)
	case c.http2:
		up.scheme = "https"
		t.DialTLSContext = dial
		t.ForceAttemptHTTP2 = true
		t.Protocols.SetHTTP2(true)
	default:
		up.scheme = "https"
		t.DialTLSContext = dial
		t.Protocols.SetHTTP1(true)
		t.MaxConnsPerHost = maxConnsPerHost(c)
	}
	if c.http2 && !netHTTP2 {
		// Connections, the server's stream limit, max_requests_per_connection,
		// max_connection_duration and the idle timeout are the pool's.
		pool := h2cli.New(h2cli.Options{
			Dial: func(ctx context.Context, addr string) (net.Conn, error) {
				return dialUpstream(ctx, dialCluster, id, addr)
			},
			MaxRequestsPerConn: c.pool.maxRequestsPerConn,
			MaxConnDuration:    c.pool.maxConnDuration,
			IdleTimeout:        idle,
			PingInterval:       30 * time.Second,
		})
		up.transport = pool
		up.closeIdle = func() {
			pool.CloseIdle()
			up.h1.closeIdle()
		}
		up.retire = func() {
			pool.Retire()
			up.h1.retire()
		}
		return up
	}
	if c.http2 && (c.pool.maxRequestsPerConn > 0 || c.pool.maxConnDuration > 0) {
		// net/http's pool cannot retire a connection after N requests or
		// an age: this cluster's connections are kept by h2LimitPool.
		pool := newH2LimitPool(t, up.scheme, c.pool.maxRequestsPerConn, c.pool.maxConnDuration, idle)
		up.transport = pool
		up.closeIdle = func() {
			pool.closeIdle()
			up.h1.closeIdle()
		}
		up.retire = func() {
			pool.retire()
			up.h1.retire()
		}
	}
	return up
}

// maxConnsPerHost applies max_connections to the net/http transport of an
// HTTP/1.1 cluster (the legacy path). net/http limits per endpoint, not per
// cluster, and queues without a max_pending_requests bound.
func maxConnsPerHost(c *cluster) int {
	if n := c.policy.limits.MaxConnections; n > 0 && n < 1<<30 {
		return int(n)
	}
	return 0
}

// countedConn decrements a gauge once when closed.
type countedConn struct {
	net.Conn
	gauge interface{ Add(int64) int64 }
	once  sync.Once
}

// CloseWrite half-closes the underlying TCP connection.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.gauge.Add(-1) })
	return err
}
