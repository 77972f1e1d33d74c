package proxy

import (
	"context"
	"errors"
	"log"
	"net/http"
	"net/http/httputil"
	"sync"

	"github.com/trellis-mesh/trellis/internal/proxy/h2srv"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

// forwarder sends a routed request to its upstream endpoint and writes the
// response, on the net/http (slow, or legacy) path. The HTTP/1.1 fast path
// (h1*.go) does not go through it: it takes whole connections at the
// listener (dispatch.go), because owning the connection is what makes it
// allocation-free, and hands connections it does not serve to this path.
type forwarder interface {
	forward(w http.ResponseWriter, r *http.Request, t *forwardTarget)
}

// forwardTarget is the routing decision for one request.
type forwardTarget struct {
	cluster       *cluster
	endpoint      string // host:port of the first attempt
	ep            *endpoint
	listenerStats *endpointStats
	key           lb.Key        // hash policy key
	setCookie     string        // Set-Cookie value of a generated hash cookie
	retry         *retry.Policy // nil: the request is not retried
	body          replayer      // nil: no request body to replay
	xff           []string      // X-Forwarded-For to send (sanitizeInbound)
}

type targetKey struct{}

// reverseProxyForwarder forwards with httputil.ReverseProxy: hop-by-hop
// headers stripped, trailers passed through, streamed bodies flushed
// immediately, upgrades supported. The transport is the cluster's pooled one.
// Requests the sidecar's own HTTP/2 server serves take forwardH2
// (h2forward.go) instead: the same steps without ReverseProxy's copies.
type reverseProxyForwarder struct {
	p    *Proxy
	rp   *httputil.ReverseProxy
	bufs *copyBuffers
}

func newReverseProxyForwarder(p *Proxy) *reverseProxyForwarder {
	f := &reverseProxyForwarder{p: p, bufs: &copyBuffers{}}
	f.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(targetKey{}).(*forwardTarget)
			pr.Out.URL.Scheme = t.cluster.up.scheme
			pr.Out.URL.Host = t.endpoint
			// pr.Out.Host keeps the caller's authority.
			if len(t.xff) > 0 {
				pr.Out.Header[headerXFF] = t.xff // ReverseProxy removed the caller's
			}
		},
		Transport: roundTripFunc(clusterRoundTrip),
		// Without a pool ReverseProxy allocates a 32 KiB copy buffer per
		// request: 82% of the sidecar's allocated bytes under load.
		BufferPool: f.bufs,
		// Bodies of unknown length (streams, gRPC) are flushed on every write
		// by ReverseProxy itself. A non-zero interval would also flush the
		// headers of a body-less response early, which breaks gRPC
		// trailers-only responses (HEADERS must carry END_STREAM).
		FlushInterval: 0,
		ErrorLog:      log.New(&serverLog{log: p.log, stats: &endpointStats{}}, "", 0),
		ModifyResponse: func(res *http.Response) error {
			f.onResponse(res.Request.Context().Value(targetKey{}).(*forwardTarget), res)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f.onError(w, r, r.Context().Value(targetKey{}).(*forwardTarget), err)
		},
	}
	return f
}

// onResponse counts an upstream response and adds a generated hash
// cookie (ReverseProxy's ModifyResponse).
func (f *reverseProxyForwarder) onResponse(t *forwardTarget, res *http.Response) {
	t.listenerStats.response(res.StatusCode)
	t.cluster.stats.response(res.StatusCode)
	if t.setCookie != "" {
		res.Header.Add("Set-Cookie", t.setCookie)
	}
}

// onError answers a request whose upstream exchange failed (ReverseProxy's
// ErrorHandler); r is the outgoing request.
func (f *reverseProxyForwarder) onError(w http.ResponseWriter, r *http.Request, t *forwardTarget, err error) {
	p := f.p
	if errors.Is(context.Cause(r.Context()), context.Canceled) && p.ctx.Err() == nil {
		// The caller hung up (the proxy itself is still running, so
		// it was not a shutdown): nobody reads a reply, and the
		// upstream did nothing wrong.
		t.listenerStats.downstreamGone.Add(1)
		t.cluster.stats.downstreamGone.Add(1)
		return
	}
	code, reason := classifyUpstreamError(r.Context(), err)
	t.listenerStats.response(code)
	t.cluster.stats.response(code)
	p.log.Debug("upstream request failed", "cluster", t.cluster.name, "endpoint", t.endpoint,
		"reason", reason, "error", err, "cause", context.Cause(r.Context()))
	localReply(w, r, code, reason)
}

func (f *reverseProxyForwarder) forward(w http.ResponseWriter, r *http.Request, t *forwardTarget) {
	if hw, ok := ownH2Writer(w); ok && f.forwardH2(w, hw, r, t) {
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), targetKey{}, t))
	f.rp.ServeHTTP(w, r)
}

func clusterRoundTrip(r *http.Request) (*http.Response, error) {
	t := r.Context().Value(targetKey{}).(*forwardTarget)
	return t.roundTrip(r)
}

// copyBuffers recycles body copy buffers across requests. ReverseProxy's
// BufferPool interface passes bare slices: their boxes are recycled too, so
// that Put does not allocate one.
type copyBuffers struct{ bufs, boxes sync.Pool }

const copyBufferSize = 32 << 10

// get returns a buffer of copyBufferSize bytes.
func (b *copyBuffers) get() *[]byte {
	if buf, ok := b.bufs.Get().(*[]byte); ok {
		return buf
	}
	buf := make([]byte, copyBufferSize)
	return &buf
}

func (b *copyBuffers) put(buf *[]byte) { b.bufs.Put(buf) }

func (b *copyBuffers) Get() []byte {
	box := b.get()
	buf := *box
	*box = nil
	b.boxes.Put(box)
	return buf
}

func (b *copyBuffers) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	box, ok := b.boxes.Get().(*[]byte)
	if !ok {
		box = new([]byte)
	}
	*box = buf[:copyBufferSize]
	b.bufs.Put(box)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// classifyUpstreamError maps a failed upstream exchange to a local reply.
func classifyUpstreamError(ctx context.Context, err error) (int, string) {
	if c := context.Cause(ctx); c == errStreamIdle || c == h2srv.ErrStreamIdle {
		return http.StatusRequestTimeout, reasonStreamIdle // streamidle.go
	}
	if context.Cause(ctx) == errRouteTimeout || errors.Is(err, errPerTryTimeout) {
		return http.StatusGatewayTimeout, reasonTimeout
	}
	if errors.Is(err, errNoHealthy) {
		return http.StatusServiceUnavailable, reasonNoHealthy
	}
	var ce *connectError
	if errors.As(err, &ce) {
		return http.StatusServiceUnavailable, reasonConnectFailure
	}
	return http.StatusServiceUnavailable, reasonReset
}
