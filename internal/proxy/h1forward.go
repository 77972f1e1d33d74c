package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

// forward runs the exchange of a routed request (head of n bytes buffered,
// body still on the connection): admission by the cluster's circuit
// breaker, endpoint choice (hash policy, previous hosts), attempts over
// pooled connections with the route's retry policy, per-try timeout, back-off
// and the retry budget, outlier reporting, and the response copy. It
// reports whether the downstream connection can be kept.
func (dc *downConn) forward(lc *listenerConfig, c *cluster, rt *route, n int) bool {
	req := &dc.req
	st := c.state
	deadline := dc.beginStream(lc, rt) // route and stream idle timeouts (streamidle.go)
	defer dc.endStream()
	headStart := dc.rd.r
	hasBody := req.chunked || req.contentLength > 0
	dc.bodyDone = !hasBody
	isHead := string(req.method) == http.MethodHead
	dc.gone.Store(false)
	dc.rs.reset()
	dc.useBufferedBody(headStart + n) // read whole by the buffer filter (buffer_filter_h1.go)
	if !st.br.Requests.TryAcquire() {
		return dc.upstreamFailed(lc, c, "", n, errOverflow, retry.Overflow, deadline)
	}
	defer st.br.Requests.Release()
	st.budget.Request()
	key := dc.hashKey(rt, c)
	pol, ok := dc.retryPolicy(rt, c, headStart+n, hasBody)
	if !ok {
		if dc.idleFired(nil) {
			return dc.streamIdleReply(lc, c, dc.headLeft(headStart, n))
		}
		lc.stats.downstreamGone.Add(1)
		c.stats.downstreamGone.Add(1)
		return false
	}
	held := false
	defer st.releaseRetry(&held)
	for attempt := 0; ; attempt++ {
		ep, ok := st.pick(key, dc.rs.tried, pol)
		if !ok {
			lc.stats.response(http.StatusServiceUnavailable)
			c.stats.response(http.StatusServiceUnavailable)
			return dc.localReply(dc.headLeft(headStart, n), http.StatusServiceUnavailable, reasonNoHealthy, !dc.bodyDone)
		}
		dc.rs.tried = append(dc.rs.tried, ep)
		st.begin(ep)
		a := dc.attempt(c, ep, headStart, n, deadline, hasBody, pol)
		if a.gone {
			st.end(ep)
			if errors.Is(a.err, errChunk) {
				// The caller's chunked body is malformed (the head was
				// valid and forwarded): nothing of the response was
				// written yet, so it gets a 400, as Envoy answers a codec
				// error, and the connection closes.
				lc.stats.response(http.StatusBadRequest)
				return dc.localReply(0, http.StatusBadRequest, "", true)
			}
			if errors.Is(a.err, errStreamIdle) {
				return dc.streamIdleReply(lc, c, dc.headLeft(headStart, n))
			}
			lc.stats.downstreamGone.Add(1)
			c.stats.downstreamGone.Add(1)
			return false
		}
		st.report(ep, outlierStatus(a.outcome))
		if pol != nil && attempt < int(pol.NumRetries) && !timedOut(deadline) && pol.ShouldRetry(a.outcome) &&
			st.tryRetry(c.stats, &held) {
			if a.uc != nil {
				dc.discardResponse(a.uc, a.resN, isHead)
			}
			st.end(ep)
			if !backoff(pol, attempt+1, deadline) {
				return dc.upstreamFailed(lc, c, ep.addr, dc.headLeft(headStart, n), errRouteTimeout, retry.PerTryTimeout, deadline)
			}
			continue
		}
		if a.uc != nil {
			keep := dc.copyResponse(lc, c, a.uc, a.resN, isHead)
			st.end(ep)
			return keep
		}
		st.end(ep)
		return dc.upstreamFailed(lc, c, ep.addr, dc.headLeft(headStart, n), a.err, a.outcome.Failure, deadline)
	}
}

// copyResponse writes the response head (hop-by-hop headers removed) and
// streams the body, flushing once when the message is complete or before
// blocking on the upstream.
func (dc *downConn) copyResponse(lc *listenerConfig, c *cluster, uc *upConn, n int, isHead bool) bool {
	res := &dc.res
	noBody := isHead || res.status == http.StatusNoContent || res.status == http.StatusNotModified
	untilClose := !noBody && !res.chunked && res.contentLength < 0
	keepUp := !res.close && !untilClose
	// After an early response (attempt) the rest of the caller's body is
	// unread: the connection closes, lingering so the caller reads this.
	keepDown := !dc.req.close && !dc.s.draining.Load() && dc.bodyDone
	dc.linger = dc.linger || !dc.bodyDone

	bw := dc.bw
	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.Write(res.statusRest)
	_, _ = bw.WriteString("\r\n")
	dc.mutateResponse()
	for i := range res.fields {
		if f := &res.fields[i]; !f.drop {
			_, _ = bw.Write(f.line)
		}
	}
	dc.writeResponseExtras(bw)
	_, _ = bw.Write(dc.rs.setCookie) // a generated hash policy cookie, if any
	if !noBody && (res.chunked || untilClose) {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if !keepDown {
		_, _ = bw.WriteString("Connection: close\r\n")
	}
	_, _ = bw.WriteString("\r\n")
	lc.stats.response(res.status)
	c.stats.response(res.status)
	uc.rd.r += n

	var err error
	uc.rd.flushFirst = bw
	switch {
	case noBody:
	case res.chunked:
		err = copyChunked(bw, &uc.rd)
	case untilClose:
		err = copyUntilEOF(bw, &uc.rd, true)
	default:
		err = copyFixed(bw, &uc.rd, res.contentLength)
	}
	uc.rd.flushFirst = nil
	if err != nil {
		dc.closeUp(uc)
		var pw *peerWriteError
		if !errors.As(err, &pw) {
			dc.s.p.log.Debug("upstream response body failed", "cluster", c.name, "endpoint", uc.ep, "error", err)
		}
		return false
	}
	dc.cur.Store(nil)
	if keepUp && uc.rd.r == uc.rd.w {
		dc.releaseUp(uc)
	} else {
		dc.closeUp(uc)
	}
	if err := bw.Flush(); err != nil {
		return false
	}
	return keepDown
}

// sendRequest writes the request head (rewritten) and body upstream; the
// body starts at bodyStart in the read buffer. clientErr: reading the body
// from the caller failed.
func (dc *downConn) sendRequest(uc *upConn, bodyStart int, hasBody bool) (clientErr bool, err error) {
	req := &dc.req
	bw := uc.bw
	_, _ = bw.Write(req.method)
	_, _ = bw.WriteString(" ")
	_, _ = bw.Write(req.target)
	_, _ = bw.WriteString(" HTTP/1.1\r\n")
	for i := range req.fields {
		f := &req.fields[i]
		if f.drop || isForwardedHeader(f.name) {
			continue
		}
		_, _ = bw.Write(f.line)
	}
	writeAdded(bw, dc.ra.reqAdd)
	_, _ = bw.Write(dc.xff) // sanitizeInbound
	if dc.xfcc != nil && dc.state != nil {
		_, _ = bw.Write(dc.xfcc)
	}
	if req.chunked {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	_, _ = bw.WriteString("\r\n")
	dc.rd.r = bodyStart
	if !hasBody {
		return false, bw.Flush()
	}
	if dc.rs.buffered {
		// Read whole for the retry policy (h1resilience.go): sent from
		// the copy, again on each attempt.
		dc.rd.r = dc.rs.afterBody
		_, _ = bw.Write(dc.bufferedBody())
		return false, bw.Flush()
	}
	if req.expect100 {
		_, _ = dc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := dc.bw.Flush(); err != nil {
			return true, err
		}
	}
	dc.rd.flushFirst = bw
	if req.chunked {
		err = copyChunked(bw, &dc.rd)
	} else {
		err = copyFixed(bw, &dc.rd, req.contentLength)
	}
	dc.rd.flushFirst = nil
	if err != nil {
		var pw *peerWriteError
		return !errors.As(err, &pw), err
	}
	dc.bodyDone = true
	return false, bw.Flush()
}

// readResponseHead reads the final response head from uc, passing 1xx
// interim responses (other than 100, answered by the proxy itself) through.
// While it waits, a caller hanging up is noticed by the client watch.
func (dc *downConn) readResponseHead(uc *upConn) (int, error) {
	dc.armWatch()
	defer dc.stopWatch()
	for {
		n, err := uc.rd.readHead(maxUpstreamHead, maxUpstreamHead)
		if err != nil {
			var he *h1Error
			if errors.As(err, &he) {
				return 0, errUpstreamHeadLarge
			}
			return 0, err
		}
		if err := parseResponseHead(uc.rd.buf[uc.rd.r:uc.rd.r+n], &dc.res); err != nil {
			return 0, err
		}
		st := dc.res.status
		switch {
		case st == http.StatusSwitchingProtocols:
			return 0, errUpstreamFraming // upgrades take the slow path
		case st >= 100 && st < 200:
			if st != http.StatusContinue {
				dc.stopWatch()
				_, _ = dc.bw.Write(uc.rd.buf[uc.rd.r : uc.rd.r+n])
				_ = dc.bw.Flush()
				dc.armWatch()
			}
			uc.rd.r += n
			continue
		}
		return n, nil
	}
}

// upstreamConn returns a pooled connection to ep or dials one, waiting
// (until deadline) for one when the cluster is at max_connections; beyond
// max_pending_requests it fails with errOverflow.
// probe: check a pooled connection before use (for requests that cannot be
// retried if it turns out closed).
func (dc *downConn) upstreamConn(c *cluster, ep string, deadline time.Time, probe bool) (*upConn, error) {
	pool := c.up.h1
	ctx := dc.s.p.ctx
	for {
		// Waiting for a connection is idle time of the stream too.
		wait := dc.streamDeadline(time.Now(), time.Time{}, deadline)
		uc, err := pool.acquire(ctx, ep, wait, &dc.waiter)
		if err != nil {
			if errors.Is(err, errRouteTimeout) && ctx.Err() == nil && idlePassed(time.Now(), wait, deadline) {
				return nil, errStreamIdle
			}
			return nil, err
		}
		if uc == nil {
			break // a slot to dial
		}
		dc.useUp(uc, deadline) // first: a deadline passed while idle fails the probe
		if !probe || uc.probeIdle() {
			return uc, nil
		}
		dc.closeUp(uc) // closed by the upstream while idle
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, deadline, errRouteTimeout)
		defer cancel()
	}
	uc, err := pool.dialConn(ctx, ep, &dc.s.p.bufs)
	if err != nil {
		return nil, err
	}
	dc.useUp(uc, deadline)
	return uc, nil
}

// useUp readies uc for this exchange: its deadline (route and stream idle
// timeouts), and its reads push the exchange's idle deadlines.
func (dc *downConn) useUp(uc *upConn, deadline time.Time) {
	uc.setDeadline(dc.streamDeadline(time.Now(), uc.dl, deadline))
	uc.rd.beforeRead = dc.touchFn
}

// releaseUp returns a connection whose exchange completed cleanly to its pool.
func (dc *downConn) releaseUp(uc *upConn) {
	dc.cur.Store(nil)
	uc.rd.beforeRead = nil
	uc.pool.put(uc, time.Now(), true)
}

// closeUp closes an upstream connection and releases its pool slot.
func (dc *downConn) closeUp(uc *upConn) {
	dc.cur.Store(nil)
	if uc.pool != nil {
		uc.pool.discard(uc)
	} else {
		_ = uc.nc.Close()
	}
	dc.s.p.bufs.putRead(uc.rd.buf)
	dc.s.p.bufs.putWriter(uc.bw)
	uc.rd.buf, uc.bw = nil, nil
}

// upstreamFailed answers a failed exchange with 503 or 504 when nothing of
// the response was written yet. n > 0: the request head is still buffered.
func (dc *downConn) upstreamFailed(lc *listenerConfig, c *cluster, ep string, n int, err error, f retry.Failure, deadline time.Time) bool {
	code, reason := http.StatusServiceUnavailable, reasonReset
	var ce *connectError
	switch {
	case f == retry.Overflow:
		reason = reasonOverflow
		c.stats.upstreamOverflow.Add(1)
	case timedOut(deadline) || f == retry.PerTryTimeout:
		code, reason = http.StatusGatewayTimeout, reasonTimeout
	case errors.As(err, &ce):
		reason = reasonConnectFailure
	}
	lc.stats.response(code)
	c.stats.response(code)
	dc.s.p.log.Debug("upstream request failed", "cluster", c.name, "endpoint", ep, "reason", reason, "error", err)
	if n < 0 {
		n = 0
	}
	dc.setDeadline(time.Now().Add(time.Second)) // the route deadline may have passed
	// A request body not read to its end leaves the connection unusable.
	return dc.localReply(n, code, reason, !dc.bodyDone)
}

func timedOut(deadline time.Time) bool {
	return !deadline.IsZero() && !time.Now().Before(deadline)
}

func idempotent(method []byte) bool {
	switch string(method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// isForwardedHeader: X-Forwarded-For/Host/Proto and Forwarded, which the
// legacy path (httputil.ReverseProxy with Rewrite) removes as well.
func isForwardedHeader(name []byte) bool {
	switch len(name) {
	case 9:
		return equalFold(name, "Forwarded")
	case 15:
		return equalFold(name, "X-Forwarded-For")
	case 16:
		return equalFold(name, "X-Forwarded-Host")
	case 17:
		return equalFold(name, "X-Forwarded-Proto")
	}
	return false
}

// armWatch starts the client watch timer for a blocking upstream wait.
func (dc *downConn) armWatch() {
	dc.armed = true
	dc.watch.Reset(clientWatchDelay)
}

// stopWatch stops the client watch; if it runs, it is interrupted and
// waited for, so the connection's read buffer is the owner's again.
func (dc *downConn) stopWatch() {
	if !dc.armed {
		return
	}
	dc.armed = false
	if dc.watch.Stop() {
		return
	}
	_ = dc.nc.SetReadDeadline(aLongTimeAgo)
	<-dc.done
	_ = dc.nc.SetReadDeadline(dc.dl)
}

// watchClient runs (at most once per exchange, after clientWatchDelay) on
// its own goroutine while the owner waits for the upstream: a read from the
// caller either buffers pipelined bytes, is interrupted by stopWatch, or
// sees the caller leave, which aborts the upstream wait.
func (dc *downConn) watchClient() {
	defer func() { dc.done <- struct{}{} }()
	// Append only: the request head may still be needed for a retry.
	rd := &dc.rd
	if rd.w == len(rd.buf) {
		return
	}
	n, err := rd.rd.Read(rd.buf[rd.w:])
	rd.w += n
	if n > 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return
	}
	dc.gone.Store(true)
	if uc := dc.cur.Load(); uc != nil {
		_ = uc.nc.SetReadDeadline(aLongTimeAgo)
	}
}
