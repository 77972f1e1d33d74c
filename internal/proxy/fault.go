package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// faultPolicy is an HTTPFault (envoy.filters.http.fault): a fixed delay
// and/or an abort, each injected into its percentage of requests, decided
// independently per request; the abort is decided after the delay. As in
// Envoy the delay happens before the router, so a route timeout starts
// after it; a caller that leaves ends it.
type faultPolicy struct {
	delay    time.Duration // 0: no delay
	delayPct fraction
	abort    bool
	abortPct fraction
	// abortCode is the HTTP status of the abort; with grpc_status it is 200
	// and abortGRPC >= 0 is sent as grpc-status.
	abortCode int
	abortGRPC int
	abortBody string
	cluster   string          // upstream_cluster: only requests routed there
	headers   []headerMatcher // headers: only requests matching all
	maxActive uint32          // max_active_faults, 0: unlimited
	active    atomic.Int64    // faults in progress under this policy
}

// fraction is a FractionalPercent: num out of den.
type fraction struct{ num, den uint32 }

// sample reports whether this request falls in the fraction.
func (f fraction) sample() bool {
	switch {
	case f.num == 0:
		return false
	case f.num >= f.den:
		return true
	}
	return rand.Uint32N(f.den) < f.num
}

// faultApplies checks the policy's request conditions.
func faultApplies[T text](fp *faultPolicy, r *request[T], cluster string) bool {
	if fp.cluster != "" && fp.cluster != cluster {
		return false
	}
	for i := range fp.headers {
		if !headerMatches(&fp.headers[i], r) {
			return false
		}
	}
	return true
}

// acquire counts an injected fault against max_active_faults (a fuzzy
// limit, as Envoy's); false: over the limit, inject nothing.
func (fp *faultPolicy) acquire() bool {
	if n := fp.active.Add(1); fp.maxActive > 0 && n > int64(fp.maxActive) {
		fp.active.Add(-1)
		return false
	}
	return true
}

func (fp *faultPolicy) release() { fp.active.Add(-1) }

// sampleDelay returns the delay to inject into this request, or 0.
func (fp *faultPolicy) sampleDelay() time.Duration {
	if fp.delay <= 0 || !fp.delayPct.sample() {
		return 0
	}
	return fp.delay
}

// sampleAbort reports whether to abort this request.
func (fp *faultPolicy) sampleAbort() bool { return fp.abort && fp.abortPct.sample() }

// abortReply is the local reply of an injected abort.
func (fp *faultPolicy) abortReply(grpc bool) proxyReply {
	lr := proxyReply{code: fp.abortCode, reason: reasonFaultAbort, body: fp.abortBody, grpc: grpc, grpcStatus: fp.abortGRPC}
	if fp.abortBody != "" {
		lr.contentType = "text/plain"
	}
	return lr
}

// waitDelay waits d on the net/http path, or less if ctx ends (the caller
// left). It reports whether the whole delay passed.
func waitDelay(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// faultDelay waits d on the fast path without blocking anything but this
// connection (HTTP/1.1 serves one request at a time), reading from the
// caller meanwhile so that a caller hanging up ends the wait: bytes read
// (pipelined requests, the body) are kept in the read buffer. It reports
// whether the caller is still there.
func (dc *downConn) faultDelay(d time.Duration) bool {
	end := time.Now().Add(d)
	defer func() {
		// The next exchange sets its own deadline; bound a local reply.
		dl := time.Now().Add(readHeaderTimeout)
		dc.dl = dl
		_ = dc.nc.SetDeadline(dl)
	}()
	rd := &dc.rd
	for {
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		if rd.w == len(rd.buf) {
			time.Sleep(left) // nowhere to read into: the caller is still sending
			return true
		}
		_ = dc.nc.SetReadDeadline(end)
		n, err := rd.rd.Read(rd.buf[rd.w:])
		rd.w += n
		if err == nil || n > 0 {
			continue
		}
		var ne net.Error
		if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			continue
		}
		return false
	}
}
