package proxy

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

// reasonOverflow is the x-trellis-reason of a request a circuit breaker
// refused (Envoy's UO response flag).
const reasonOverflow = "upstream_overflow"

// resilience is the fast path's per-exchange state for retries and hash
// policies, kept in the downConn and reused, so a steady-state request
// allocates nothing.
type resilience struct {
	tried     []*endpoint // endpoints of this request's attempts
	body      []byte      // the request body, read whole for a retry policy
	buffered  bool        // body holds the whole request body
	afterBody int         // read position after the body in the read buffer
	setCookie []byte      // "Set-Cookie: ...\r\n" for a generated hash cookie
	scratch   []byte
	vals      [][]byte

	// Per connection: Envoy generates the same hash cookie value for every
	// request of a connection, and the caller's IP does not change.
	genCookie string
	srcHash   uint64
	srcHashOK bool
}

func (r *resilience) reset() {
	clear(r.tried)
	r.tried = r.tried[:0]
	r.buffered = false
	r.setCookie = r.setCookie[:0]
}

// attemptResult is one attempt's end: a response head (uc set, resN bytes
// at uc.rd.r), a failure, or the caller gone.
type attemptResult struct {
	uc      *upConn
	resN    int
	err     error
	outcome retry.Outcome
	gone    bool
}

// attempt sends the request to ep and reads the response head, within the
// route deadline; once the request is sent, the policy's per_try_timeout
// also bounds the rest of the attempt (the response included), as Envoy
// starts its per-try timer then. An idempotent request whose pooled
// connection turns out closed with nothing received is resent on another
// connection, at most 3 times (not a retry of the policy: nothing reached
// the upstream).
func (dc *downConn) attempt(c *cluster, ep *endpoint, headStart, n int, deadline time.Time, hasBody bool, pol *retry.Policy) attemptResult {
	stale := (!hasBody || dc.rs.buffered) && idempotent(dc.req.method)
	for try := 0; ; try++ {
		dc.upDeadline = deadline
		uc, err := dc.upstreamConn(c, ep.addr, deadline, !stale)
		if errors.Is(err, errStreamIdle) {
			return attemptResult{err: err, gone: true}
		}
		if err != nil {
			return attemptResult{err: err, outcome: failureOutcome(err, deadline, false)}
		}
		dc.cur.Store(uc)
		clientErr, err := dc.sendRequest(uc, headStart+n, hasBody)
		tryDeadline := deadline
		if err == nil && pol != nil && pol.PerTryTimeout > 0 {
			if t := time.Now().Add(pol.PerTryTimeout); deadline.IsZero() || t.Before(deadline) {
				tryDeadline = t
				dc.upDeadline = t
				uc.setDeadline(dc.streamDeadline(time.Now(), uc.dl, t))
			}
		}
		var resN int
		if err == nil {
			resN, err = dc.readResponseHead(uc)
		} else if !clientErr && !dc.idleFired(uc) {
			// The upstream stopped taking the request: it may have
			// answered first (a 413 of its buffer filter, say), which
			// goes to the caller, as Envoy's router forwards an early
			// response (copyResponse then closes the caller's connection).
			if rn, rerr := dc.readResponseHead(uc); rerr == nil {
				resN, err = rn, nil
			}
		}
		if err == nil {
			return attemptResult{uc: uc, resN: resN, outcome: dc.responseOutcome(pol)}
		}
		nothingBack := uc.rd.w == 0
		reused := uc.reused
		idle := dc.idleFired(uc)
		dc.closeUp(uc)
		if idle {
			// Not the upstream's failure (the caller may be the slow one),
			// and not retried: the stream is over.
			return attemptResult{err: errStreamIdle, gone: true}
		}
		if dc.gone.Load() || clientErr {
			return attemptResult{err: err, gone: true}
		}
		if stale && reused && nothingBack && try < 3 && !timedOut(deadline) {
			continue // the pooled connection was closed by the upstream; nothing reached it
		}
		return attemptResult{err: err, outcome: failureOutcome(err, tryDeadline, true)}
	}
}

// headLeft is n while the request head is still unconsumed in the read
// buffer, else 0.
func (dc *downConn) headLeft(headStart, n int) int {
	if dc.rd.r != headStart {
		return 0
	}
	return n
}

// retryPolicy returns the route's retry policy if this request may be
// retried: retriable_request_headers match, and a request body is read whole
// first (up to retry.MaxBufferedBody; a larger or chunked body makes the
// request not retriable, counted). ok is false when reading the body from
// the caller failed.
func (dc *downConn) retryPolicy(rt *route, c *cluster, bodyStart int, hasBody bool) (pol *retry.Policy, ok bool) {
	pol = rt.retry
	if pol == nil || pol.NumRetries == 0 || !retry.Eligible[[]byte](pol, h1Headers{dc}) {
		return nil, true
	}
	if !hasBody || dc.rs.buffered { // read whole by the buffer filter: any size is replayed
		return pol, true
	}
	req := &dc.req
	if req.chunked || req.contentLength > retry.MaxBufferedBody {
		c.stats.retriesBodyTooLarge.Add(1)
		return nil, true
	}
	if req.expect100 {
		_, _ = dc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := dc.bw.Flush(); err != nil {
			return nil, false
		}
	}
	cl := int(req.contentLength)
	rd := &dc.rd
	have := min(cl, rd.w-bodyStart)
	b := append(dc.rs.body[:0], rd.buf[bodyStart:bodyStart+have]...)
	dc.rs.afterBody = bodyStart + have
	if len(b) < cl {
		// The rest comes straight from the connection: the read buffer
		// keeps the request head, which every attempt sends again.
		b = slices.Grow(b, cl-len(b))[:cl]
		for got := have; got < cl; {
			dc.touch() // each read is progress of the stream (streamidle.go)
			m, err := rd.rd.Read(b[got:])
			got += m
			if err != nil && got < cl {
				dc.rs.body = b[:0]
				return nil, false
			}
		}
	}
	dc.rs.body, dc.rs.buffered, dc.bodyDone = b, true, true
	return pol, true
}

// h1Headers gives retry matchers the request's headers and pseudo-headers.
type h1Headers struct{ dc *downConn }

var (
	schemeHTTP  = []byte("http")
	schemeHTTPS = []byte("https")
)

func (h h1Headers) HeaderValue(name string) ([]byte, bool) {
	req := &h.dc.req
	switch name {
	case ":method":
		return req.method, true
	case ":path":
		return req.target, true
	case ":authority":
		return req.headerValue("Host")
	case ":scheme":
		if h.dc.state != nil {
			return schemeHTTPS, true
		}
		return schemeHTTP, true
	}
	return req.headerValue(name)
}

// responseOutcome describes a response head for the retry policy.
func (dc *downConn) responseOutcome(pol *retry.Policy) retry.Outcome {
	o := retry.Outcome{Status: dc.res.status, GrpcStatus: -1}
	if pol == nil {
		return o
	}
	if pol.Grpc() {
		if v, ok := dc.res.headerValue("Grpc-Status"); ok {
			o.GrpcStatus = parseGrpcStatus(v)
		}
	}
	if pol.ShouldRetry(o) {
		// Only a response that would be retried needs the rate-limit
		// check, which may veto it.
		_, o.RateLimited = dc.res.headerValue("X-Envoy-Ratelimited")
	}
	return o
}

func parseGrpcStatus[T text](v T) int {
	if len(v) == 0 || len(v) > 2 {
		return -1
	}
	n := 0
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return -1
		}
		n = n*10 + int(v[i]-'0')
	}
	return n
}

// failureOutcome classifies an attempt that got no response head.
func failureOutcome(err error, tryDeadline time.Time, sent bool) retry.Outcome {
	o := retry.Outcome{GrpcStatus: -1, RequestSent: sent}
	var ce *connectError
	switch {
	case errors.Is(err, errOverflow):
		o.Failure = retry.Overflow
	case timedOut(tryDeadline):
		o.Failure = retry.PerTryTimeout
	case errors.As(err, &ce):
		o.Failure = retry.ConnectFailure
	default:
		o.Failure = retry.Reset
	}
	return o
}

// discardResponse drops a response that is being retried: a small body is
// read and dropped so the connection can be pooled again, anything else
// closes the connection. Nothing of it reaches the caller.
func (dc *downConn) discardResponse(uc *upConn, n int, isHead bool) {
	res := &dc.res
	uc.rd.r += n
	noBody := isHead || res.status == http.StatusNoContent || res.status == http.StatusNotModified
	if res.close || (!noBody && (res.chunked || res.contentLength < 0 || res.contentLength > retry.MaxBufferedBody)) {
		dc.closeUp(uc)
		return
	}
	if !noBody {
		if err := skipFixed(&uc.rd, res.contentLength); err != nil {
			dc.closeUp(uc)
			return
		}
	}
	if uc.rd.r != uc.rd.w {
		dc.closeUp(uc)
		return
	}
	dc.releaseUp(uc)
}

// skipFixed drops n body bytes from src.
func skipFixed(src *connReader, n int64) error {
	for n > 0 {
		if src.r == src.w {
			if err := src.fill(); err != nil {
				return err
			}
		}
		k := min(int64(src.w-src.r), n)
		src.r += int(k)
		n -= k
	}
	return nil
}

// backoff waits before retry n, within the route deadline. It reports false
// when the deadline passed first.
func backoff(pol *retry.Policy, n int, deadline time.Time) bool {
	d := pol.Backoff(n)
	if !deadline.IsZero() {
		if left := time.Until(deadline); left <= d {
			time.Sleep(max(left, 0))
			return false
		}
	}
	time.Sleep(d)
	return true
}
