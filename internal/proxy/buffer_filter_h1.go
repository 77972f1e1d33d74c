package proxy

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// bufferedRequest is the fast path's buffer filter state of the current
// request: its whole body, read from the caller into a pooled buffer, and
// the Content-Length line the upstream gets when the caller sent the body
// chunked. It lives in the connection's routeState.
type bufferedRequest struct {
	active bool
	body   []byte
	pool   *bodyPool
	clLine headerAdd
}

// release returns the body's buffer to the pool.
func (b *bufferedRequest) release() {
	if b.body != nil {
		b.pool.put(b.body)
	}
	b.body, b.active = nil, false
}

// runBuffer runs the buffer filter f for the current request (head of n
// bytes): a body over the limit is answered 413 and the connection closes
// (its rest is not read); otherwise the whole body is read now, and the
// request goes on as one with a Content-Length and no body left on the
// connection. done: it answered (or the caller failed); keep is then the
// connection's fate.
func (dc *downConn) runBuffer(lc *listenerConfig, f *httpFilter, rt *route, n int) (done, keep bool) {
	req := &dc.req
	bp := f.resolveBuffer(rt)
	if bp == nil || (!req.chunked && req.contentLength <= 0) || dc.ra.buf.active {
		return false, false
	}
	if !req.chunked && req.contentLength > bp.max {
		return true, dc.answerTooLarge(lc, n)
	}
	body, err := dc.readWholeBody(n, bp.max)
	switch {
	case errors.Is(err, errBodyTooLarge):
		return true, dc.answerTooLarge(lc, n)
	case errors.Is(err, errChunk):
		lc.stats.response(http.StatusBadRequest)
		return true, dc.localReply(n, http.StatusBadRequest, "", true)
	case err != nil:
		dc.s.p.log.Debug("request body failed", "listener", dc.s.name, "error", err)
		lc.stats.downstreamGone.Add(1)
		return true, false
	}
	b := &dc.ra.buf
	b.active, b.body, b.pool = true, body, &dc.s.p.bodies
	if req.chunked {
		// The upstream gets the body's length instead of its chunks (and
		// not its trailers, which only chunked framing carries).
		b.clLine.name = "Content-Length"
		b.clLine.line = strconv.AppendInt(append(b.clLine.line[:0], "Content-Length: "...), int64(len(body)), 10)
		b.clLine.line = append(b.clLine.line, "\r\n"...)
		dc.ra.reqAdd = append(dc.ra.reqAdd, &b.clLine)
		for i := range req.fields {
			if equalFold(req.fields[i].name, "Trailer") {
				req.fields[i].drop = true
			}
		}
	}
	req.chunked, req.contentLength, req.expect100 = false, int64(len(body)), false
	return false, false
}

// answerTooLarge answers 413 and closes the connection: the body (or its
// rest) is not read.
func (dc *downConn) answerTooLarge(lc *listenerConfig, n int) bool {
	lc.stats.rqTooLarge.Add(1)
	lr := tooLargeReply(dc.grpcRequest())
	return dc.answer(lc, n, &lr, true)
}

// readWholeBody reads the current request's body (after the head of n
// bytes), at most limit bytes, into a pooled buffer. The body's bytes are
// then gone from the read buffer, which keeps the head and, after it, what
// the caller sent next.
func (dc *downConn) readWholeBody(n int, limit int64) ([]byte, error) {
	req, rd := &dc.req, &dc.rd
	if req.expect100 {
		// The caller waits for this before sending the body.
		_, _ = dc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := dc.bw.Flush(); err != nil {
			return nil, err
		}
		req.expect100 = false
	}
	bodyStart := rd.r + n
	if req.chunked {
		return dc.readChunkedBody(bodyStart, limit)
	}
	pool := &dc.s.p.bodies
	cl := int(req.contentLength)
	body := pool.get(cl)[:cl]
	have := copy(body, rd.buf[bodyStart:rd.w])
	if have < cl {
		// The rest comes straight from the connection: the read buffer
		// keeps the head, which every attempt sends.
		if _, err := io.ReadFull(bodyConn{dc}, body[have:]); err != nil {
			pool.put(body)
			return nil, eofIsUnexpected(err)
		}
	}
	rd.w = bodyStart + copy(rd.buf[bodyStart:], rd.buf[bodyStart+have:rd.w])
	return body, nil
}

// readChunkedBody decodes a chunked body starting at bodyStart in the read
// buffer, through a scratch reader so that the head stays in place, and
// puts back what follows the body.
func (dc *downConn) readChunkedBody(bodyStart int, limit int64) ([]byte, error) {
	rd, pool := &dc.rd, &dc.s.p.bodies
	src := connReader{rd: bodyConn{dc}, buf: dc.s.p.bufs.getRead()}
	if pre := rd.w - bodyStart; pre > len(src.buf) {
		src.buf = make([]byte, pre) // after a large head
	}
	src.w = copy(src.buf, rd.buf[bodyStart:rd.w])
	rd.w = bodyStart
	defer func() { dc.s.p.bufs.putRead(src.buf) }()
	body, err := decodeChunked(&src, pool.get(int(min(limit, firstChunk))), limit, pool)
	if err != nil {
		return nil, err
	}
	left := src.buffered()
	if rd.w+len(left) > len(rd.buf) {
		// Offsets are kept: the head's slices stay valid in the old array.
		grown := make([]byte, rd.w+len(left))
		copy(grown, rd.buf[:rd.w])
		rd.buf = grown
	}
	rd.w += copy(rd.buf[rd.w:], left)
	return body, nil
}

// decodeChunked appends the data of the chunked body in src to body (a
// pooled buffer, grown from pool): at most limit bytes, errBodyTooLarge as
// soon as a chunk would go beyond (its data is not read). The framing is
// checked as copyChunked checks it; trailers are checked and dropped.
func decodeChunked(src *connReader, body []byte, limit int64, pool *bodyPool) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		pool.put(body)
		if errors.Is(err, errBufferFull) {
			err = errChunk // a line longer than the read buffer
		}
		return nil, err
	}
	for {
		line, err := src.readLine(maxChunkLine)
		if err != nil {
			return fail(eofIsUnexpected(err))
		}
		size, ok := parseChunkSize(line)
		switch {
		case !ok:
			return fail(errChunk)
		case size == 0:
			if err := copyTrailers(nil, src); err != nil {
				return fail(err)
			}
			return body, nil
		case size > limit-int64(len(body)):
			return fail(errBodyTooLarge)
		}
		start := len(body)
		body = pool.grow(body, int(min(max(2*int64(cap(body)), int64(start)+size), limit)))
		body = body[:start+int(size)]
		for dst := body[start:]; len(dst) > 0; {
			if src.r == src.w {
				if err := src.fill(); err != nil {
					return fail(eofIsUnexpected(err))
				}
			}
			k := copy(dst, src.buf[src.r:src.w])
			src.r += k
			dst = dst[k:]
		}
		if line, err = src.readLine(maxChunkLine); err != nil {
			return fail(eofIsUnexpected(err))
		}
		if len(line) != 0 {
			return fail(errChunk)
		}
	}
}

// bodyConn reads a body being buffered from the caller's connection, each
// read within bufferIdleTimeout.
type bodyConn struct{ dc *downConn }

func (c bodyConn) Read(p []byte) (int, error) {
	c.dc.setDeadline(time.Now().Add(bufferIdleTimeout))
	return c.dc.rd.rd.Read(p)
}

// useBufferedBody makes the exchange send the body the buffer filter read
// (forward calls it): the request's body is then whole and replayable, and
// the read buffer continues after the head.
func (dc *downConn) useBufferedBody(bodyStart int) {
	if !dc.ra.buf.active {
		return
	}
	dc.rs.buffered, dc.rs.afterBody, dc.bodyDone = true, bodyStart, true
}

// bufferedBody is the body a buffered request sends on every attempt: the
// buffer filter's, else the one retryPolicy read.
func (dc *downConn) bufferedBody() []byte {
	if dc.ra.buf.active {
		return dc.ra.buf.body
	}
	return dc.rs.body
}
