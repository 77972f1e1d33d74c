package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mirroring (request_mirror_policies) sends a copy of a request to an
// endpoint of another cluster, fire and forget: the copy's authority gets
// "-shadow" (before any port), its response is discarded, and it never
// delays or fails the caller's request. Limits: at most maxMirrorsInFlight
// copies per proxy (beyond that copies are dropped and counted); a request
// body is mirrored only when it is known to be at most maxMirrorBody bytes
// (the fast path reads a Content-Length body of that size before
// forwarding, and does not mirror chunked bodies; the net/http path copies
// the body as the upstream reads it and sends the copies once it ended
// within the limit).
const (
	maxMirrorsInFlight = 64
	maxMirrorBody      = 64 << 10
	// defaultMirrorTimeout bounds a copy whose route has no timeout
	// (Envoy's default route timeout).
	defaultMirrorTimeout = 15 * time.Second
)

// mirrorPolicy is one RequestMirrorPolicy.
type mirrorPolicy struct {
	cluster  string
	fraction fraction // runtime_fraction.default_value; unset: 100%
	noSuffix bool     // disable_shadow_host_suffix_append
}

// mirrorSender runs the proxy's in-flight mirror copies.
type mirrorSender struct {
	inflight atomic.Int64
	mu       sync.Mutex // guards closed with wg.Add
	closed   bool
	wg       sync.WaitGroup
}

// start runs send on its own goroutine unless maxMirrorsInFlight copies
// are in flight or the proxy shut down.
func (m *mirrorSender) start(send func()) bool {
	if m.inflight.Add(1) > maxMirrorsInFlight {
		m.inflight.Add(-1)
		return false
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.inflight.Add(-1)
		return false
	}
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer m.inflight.Add(-1)
		send()
	}()
	return true
}

// close refuses new copies and waits for those in flight (their context,
// the proxy's, is cancelled first by Shutdown).
func (m *mirrorSender) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.wg.Wait()
}

// shadowHost inserts "-shadow" before the port of an authority, as Envoy.
func shadowHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		return host[:i] + "-shadow" + host[i:]
	}
	return host + "-shadow"
}

// mirrorEndpoint picks the endpoint of the mirror cluster for a copy.
func mirrorEndpoint(c *cluster) (string, bool) { return c.pick() }

// sendMirror sends req (URL host and scheme still to set) to an endpoint
// of cluster name of cfg, counting on the listener.
func (p *Proxy) sendMirror(cfg *runtimeConfig, lc *listenerConfig, mp *mirrorPolicy, req *http.Request, timeout time.Duration) {
	c := cfg.clusters[mp.cluster]
	if c == nil {
		lc.stats.mirrorsDropped.Add(1)
		return
	}
	ep, ok := mirrorEndpoint(c)
	if !ok {
		lc.stats.mirrorsDropped.Add(1)
		return
	}
	if timeout <= 0 {
		timeout = defaultMirrorTimeout
	}
	req.URL.Scheme, req.URL.Host = c.up.scheme, ep
	if !mp.noSuffix {
		req.Host = shadowHost(req.Host)
	}
	started := p.mirrors.start(func() {
		ctx, cancel := context.WithTimeout(p.ctx, timeout)
		defer cancel()
		c.stats.requests.Add(1)
		res, err := c.up.transport.RoundTrip(req.WithContext(ctx))
		if err != nil {
			lc.stats.mirrorsDropped.Add(1)
			p.log.Debug("mirror request failed", "cluster", c.name, "endpoint", ep, "error", err)
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
		_ = res.Body.Close()
		c.stats.response(res.StatusCode)
		lc.stats.mirrorsSent.Add(1)
	})
	if !started {
		lc.stats.mirrorsDropped.Add(1)
	}
}

// sampleMirrors returns whether any mirror policy of rt samples this
// request (each is decided independently; the result says which in bits).
func sampleMirrors(mirrors []*mirrorPolicy) uint64 {
	var bits uint64
	for i, mp := range mirrors {
		if i < 64 && mp.fraction.sample() {
			bits |= 1 << i
		}
	}
	return bits
}

// newMirrorRequest builds a copy (URL scheme and host still to set); false
// when target is not a valid origin-form target.
func newMirrorRequest(method, target, host string, h http.Header, body []byte) (*http.Request, bool) {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	r := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       host,
	}
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	} else {
		r.Body = http.NoBody
	}
	return r, true
}
