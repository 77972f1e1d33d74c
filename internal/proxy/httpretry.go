package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/h2cli"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

// The net/http path's counterpart of h1forward.go's attempt loop: the
// cluster RoundTripper runs the attempts, so ReverseProxy only ever sees the
// final response (retried ones are drained and closed).

var (
	errPerTryTimeout = errors.New("per-try timeout")
	errNoHealthy     = errors.New("no healthy upstream")
)

// prepareRetry decides whether the request may be retried and makes its
// body replayable (up to retry.MaxBufferedBody; a larger declared body
// makes the request not retriable, counted).
func (t *forwardTarget) prepareRetry(rt *route, r *http.Request) {
	pol := rt.retry
	if pol == nil || pol.NumRetries == 0 || r.Header.Get("Upgrade") != "" ||
		!retry.Eligible[string](pol, stdRequestHeaders{r}) {
		return // an upgrade (WebSocket) is not retried: its response is a connection
	}
	// A body the buffer filter read whole (t.body set) is replayed whatever its size.
	if t.body == nil && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		if r.ContentLength > retry.MaxBufferedBody {
			t.cluster.stats.retriesBodyTooLarge.Add(1)
			return
		}
		t.body = newReplayBody(r.Body)
		r.Body, _ = t.body.reader()
		r.GetBody = t.body.getBody
	}
	t.retry = pol
}

// stdRequestHeaders gives retry matchers a net/http request's headers and
// pseudo-headers.
type stdRequestHeaders struct{ r *http.Request }

func (h stdRequestHeaders) HeaderValue(name string) (string, bool) {
	switch name {
	case ":method":
		return h.r.Method, true
	case ":path":
		return h.r.URL.RequestURI(), true
	case ":authority":
		return h.r.Host, true
	case ":scheme":
		if h.r.TLS != nil {
			return "https", true
		}
		return "http", true
	}
	return stdHeader(h.r.Header).headerValue(http.CanonicalHeaderKey(name))
}

// roundTrip runs the request's attempts (see h1forward.go forward for the
// fast path's): per-try timeouts, retry conditions, back-off within the
// route timeout, the budget and max_retries, previous-hosts selection, and
// outlier reporting.
func (t *forwardTarget) roundTrip(r *http.Request) (*http.Response, error) {
	c, pol := t.cluster, t.retry
	st := c.state
	ctx := r.Context()
	held := false
	defer st.releaseRetry(&held)
	var triedBuf [4]*endpoint
	tried := triedBuf[:0]
	ep := t.ep
	for attempt := 0; ; attempt++ {
		tried = append(tried, ep)
		req := r
		if attempt > 0 {
			req = r.Clone(ctx)
			req.URL.Host = ep.addr
			if t.body != nil {
				body, ok := t.body.reader()
				if !ok {
					return nil, errors.New("request body: too large to resend")
				}
				req.Body = body
			}
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if pol != nil && pol.PerTryTimeout > 0 {
			actx, cancel = perTryContext(ctx, pol.PerTryTimeout)
			req = req.WithContext(actx)
		}
		st.begin(ep)
		res, err := c.up.transport.RoundTrip(req)
		o, report := attemptOutcome(res, err, actx, ctx, pol)
		if report {
			st.report(ep, outlierStatus(o))
		}
		if pol == nil || attempt >= int(pol.NumRetries) || ctx.Err() != nil || !pol.ShouldRetry(o) ||
			(t.body != nil && !t.body.replayable()) || !st.tryRetry(c.stats, &held) {
			if err != nil {
				st.end(ep)
				cancel()
				if o.Failure == retry.PerTryTimeout {
					err = errors.Join(errPerTryTimeout, err)
				}
				return nil, err
			}
			if (st.trackActive || pol != nil && pol.PerTryTimeout > 0) && res.StatusCode != http.StatusSwitchingProtocols {
				// (A 101's body is the upgraded connection: ReverseProxy
				// needs it unwrapped.)
				res.Body = &attemptBody{ReadCloser: res.Body, st: st, ep: ep, cancel: cancel}
			} else {
				st.end(ep)
				cancel()
			}
			return res, nil
		}
		if res != nil {
			_, _ = io.CopyN(io.Discard, res.Body, retry.MaxBufferedBody)
			_ = res.Body.Close()
		}
		st.end(ep)
		cancel()
		if err := waitBackoff(ctx, pol.Backoff(attempt+1)); err != nil {
			return nil, err
		}
		var ok bool
		if ep, ok = st.pick(t.key, tried, pol); !ok {
			return nil, errNoHealthy
		}
	}
}

// attemptOutcome classifies an attempt for the retry policy, and reports
// whether outlier detection should count it (not when the caller left).
func attemptOutcome(res *http.Response, err error, actx, ctx context.Context, pol *retry.Policy) (retry.Outcome, bool) {
	o := retry.Outcome{GrpcStatus: -1}
	if err == nil {
		o.Status = res.StatusCode
		if pol != nil {
			if pol.Grpc() {
				if v := res.Header.Get("Grpc-Status"); v != "" {
					o.GrpcStatus = parseGrpcStatus(v)
				}
			}
			if pol.ShouldRetry(o) {
				_, o.RateLimited = res.Header["X-Envoy-Ratelimited"]
			}
		}
		return o, true
	}
	var ce *connectError
	switch {
	case ctx.Err() != nil:
		// The route timeout counts against the endpoint (Envoy reports it
		// as a 504); a caller hanging up does not.
		o.Failure, o.RequestSent = retry.PerTryTimeout, true
		return o, context.Cause(ctx) == errRouteTimeout
	case context.Cause(actx) == errPerTryTimeout:
		o.Failure, o.RequestSent = retry.PerTryTimeout, true
	case errors.As(err, &ce):
		o.Failure = retry.ConnectFailure
	case strings.Contains(err.Error(), "REFUSED_STREAM"):
		o.Failure, o.RequestSent = retry.RefusedStream, true
	default:
		o.Failure, o.RequestSent = retry.Reset, true
	}
	return o, true
}

// perTryContext is an attempt's context: canceled with errPerTryTimeout
// once d has passed since the request was written upstream (Envoy starts
// the per-try timer when the request is complete, so waiting for a
// connection and connecting do not count), or when cancel is called.
func perTryContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	actx, cancelCause := context.WithCancelCause(ctx)
	var mu sync.Mutex
	var timer *time.Timer
	stopped := false
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) {
			mu.Lock()
			defer mu.Unlock()
			if !stopped && timer == nil {
				timer = time.AfterFunc(d, func() { cancelCause(errPerTryTimeout) })
			}
		},
	})
	return actx, func() {
		mu.Lock()
		stopped = true
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancelCause(context.Canceled)
	}
}

func waitBackoff(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attemptBody ends the attempt when the response body is closed: the
// active request count, the per-try context.
type attemptBody struct {
	io.ReadCloser
	once   sync.Once
	st     *clusterState
	ep     *endpoint
	cancel context.CancelFunc
}

// Buffered passes the response body's h2cli.BufferedBody on (forwardH2
// flushes by it).
func (b *attemptBody) Buffered() (int, bool) {
	if bb, ok := b.ReadCloser.(h2cli.BufferedBody); ok {
		return bb.Buffered()
	}
	return 0, false
}

func (b *attemptBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.finish)
	return err
}

func (b *attemptBody) finish() {
	b.st.end(b.ep)
	b.cancel()
}

// stdHashKey evaluates the route's hash policies for a net/http request
// (see downConn.hashKey), returning the Set-Cookie value of a generated
// cookie.
func stdHashKey(rt *route, c *cluster, r *http.Request) (lb.Key, string) {
	if len(rt.hash) == 0 || !c.policy.lb.Hashing() {
		return lb.Key{}, ""
	}
	var h lb.Hasher
	setCookie := ""
	for i := range rt.hash {
		p := &rt.hash[i]
		switch p.Kind {
		case lb.HashHeader:
			if v, ok := stdHeaderHash(r, p.Name); ok {
				h.Add(v)
			}
		case lb.HashCookie:
			if v, ok := stdCookie(r, p.Name); ok && v != "" {
				h.Add(lb.Sum64(v))
			} else if p.HasTTL {
				local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
				v := lb.GeneratedCookieValue(r.RemoteAddr, addrString(local))
				h.Add(lb.Sum64(v))
				setCookie = string(p.AppendSetCookie(nil, v))
			}
		case lb.HashSourceIP:
			if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				h.Add(lb.Sum64(host))
			}
		case lb.HashQuery:
			if v, ok := lb.QueryValue(r.URL.RawQuery, p.Name); ok {
				var scratch []byte
				h.Add(lb.SumQueryValue(v, &scratch))
			}
		}
		if p.Terminal && h.Has() {
			break
		}
	}
	return h.Key(), setCookie
}

func stdHeaderHash(r *http.Request, name string) (uint64, bool) {
	switch name {
	case ":authority":
		return lb.Sum64(r.Host), true
	case ":path":
		return lb.Sum64(r.URL.RequestURI()), true
	case ":method":
		return lb.Sum64(r.Method), true
	}
	vals := r.Header.Values(name)
	switch len(vals) {
	case 0:
		return 0, false
	case 1:
		return lb.Sum64(vals[0]), true
	}
	sorted := slices.Sorted(slices.Values(vals))
	return lb.Sum64(strings.Join(sorted, "")), true
}

func stdCookie(r *http.Request, name string) (string, bool) {
	for _, line := range r.Header.Values("Cookie") {
		if v, ok := lb.CookieValue(line, name); ok {
			return v, true
		}
	}
	return "", false
}
