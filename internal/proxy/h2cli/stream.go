package h2cli

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"golang.org/x/net/http2"
)

// stream is one request and its response on a connection.
type stream struct {
	c  *conn
	id uint32
	rq request

	// Under c.mu.
	sendWindow int64
	sendDone   bool  // END_STREAM sent
	recvDone   bool  // END_STREAM received
	stopSend   bool  // the response says the rest of the request body is not wanted
	closed     bool  // removed from the connection: both sides done, or reset
	err        error // why it was reset
	inFlow     bool  // in c.flowWaiters
	sendWake   chan struct{}

	// The read loop's own.
	gotFinal   bool
	firstByte  bool
	num1xx     int
	recvRemain int64 // declared Content-Length still to come; -1: none

	// Under mu: what the caller's goroutine reads.
	mu         sync.Mutex
	recvWake   chan struct{} // capacity 1: response headers, data, end or error arrived
	res        *http.Response
	resErr     error
	buf        dataBuffer
	recvEnded  bool
	readErr    error // after buf drains: io.EOF or the stream's error
	trailer    http.Header
	trailerSet bool // copied into res.Trailer
	inAvail    int64
	unacked    int64 // consumed, not yet returned by WINDOW_UPDATE
	bodyClosed bool
	stopWatch  func() bool // stops the context watch
	watchDone  bool
}

func newStream() *stream {
	return &stream{recvRemain: -1, recvWake: make(chan struct{}, 1)}
}

// again is a fresh stream for sending the same request on another
// connection.
func (s *stream) again() *stream {
	n := newStream()
	n.rq = s.rq
	n.rq.inlineSent = 0 // the whole body goes again
	return n
}

func (s *stream) wakeRecv() {
	select {
	case s.recvWake <- struct{}{}:
	default:
	}
}

func (s *stream) wakeSend() {
	if s.sendWake != nil {
		select {
		case s.sendWake <- struct{}{}:
		default:
		}
	}
}

// roundTrip opens a stream on c (which reserved a slot for it): HEADERS
// and a body already in memory are written on the caller's goroutine, a
// streamed body by writeBody; then it waits for the response headers.
func (c *conn) roundTrip(s *stream) (*http.Response, error) {
	rq := &s.rq
	c.lockWrite()
	c.mu.Lock()
	var err error
	switch {
	case c.closed || c.goAway || c.werr != nil:
		err = errNotSent
	case c.peerMaxList > 0 && rq.headerSize > c.peerMaxList:
		err = fmt.Errorf("h2cli: request header list of %d bytes exceeds the server's limit of %d", rq.headerSize, c.peerMaxList)
	}
	if err != nil {
		c.reserved--
		after := c.afterStreamLocked()
		c.mu.Unlock()
		_ = c.unlockWrite()
		c.afterStream(after)
		return nil, err
	}
	s.c, s.id = c, c.nextID
	c.nextID += 2
	c.reserved--
	c.active++
	c.inflight.Add(1)
	c.streams[s.id] = s
	s.sendWindow = int64(c.peerWindow)
	s.inAvail = int64(c.o.StreamWindow)
	maxFrame := int(c.maxFrame)
	c.mu.Unlock()

	hasTrailers := rq.trailerKeys != ""
	endStream := !rq.hasBody && !hasTrailers
	c.writeHeaderBlockLocked(s.id, endStream, c.encodeHeadersLocked(rq, rq.req), maxFrame)
	sentAll := endStream
	switch {
	case endStream:
	case rq.inline != nil:
		sentAll = c.writeInlineLocked(s, maxFrame)
	case !rq.hasBody: // trailers only
		c.writeTrailersLocked(s, maxFrame)
		sentAll = true
	}
	if werr := c.unlockWrite(); werr != nil {
		c.close(&connError{c.ep.addr, fmt.Errorf("write: %w", werr)})
		return s.awaitResponse()
	}
	rq.wroteHeaders()
	if sentAll {
		c.markSendDone(s)
		rq.wroteRequest(nil)
	} else {
		rq.writerStarted = true
		go s.writeBody(maxFrame)
	}
	return s.awaitResponse()
}

// writeInlineLocked sends as much of the inline body as the flow-control
// windows allow now (under wmu), and the trailers after it; it reports
// whether all of it went.
func (c *conn) writeInlineLocked(s *stream, maxFrame int) bool {
	rq := &s.rq
	p := rq.inline[rq.inlineSent:]
	c.mu.Lock()
	n := min(c.sendWindow, s.sendWindow, int64(len(p)))
	c.sendWindow -= n
	s.sendWindow -= n
	c.mu.Unlock()
	all := int(n) == len(p)
	if n > 0 || all {
		c.writeDataLocked(s.id, p[:n], all && rq.trailerKeys == "", maxFrame)
	}
	rq.inlineSent += int(n)
	if all && rq.trailerKeys != "" {
		c.writeTrailersLocked(s, maxFrame)
	}
	return all
}

// writeTrailersLocked ends the stream with the request's trailers, or with
// an empty DATA frame when none has a value (under wmu).
func (c *conn) writeTrailersLocked(s *stream, maxFrame int) {
	if block := c.encodeTrailersLocked(s.rq.req.Trailer); block != nil {
		c.writeHeaderBlockLocked(s.id, true, block, maxFrame)
		return
	}
	c.setWriteErr(c.fr.WriteData(s.id, true, nil))
}

// awaitResponse waits for the response headers (delivered by the read
// loop), the stream's failure, or the request's context.
func (s *stream) awaitResponse() (*http.Response, error) {
	ctx := s.rq.ctx
	for {
		s.mu.Lock()
		res, err := s.res, s.resErr
		s.mu.Unlock()
		if res != nil {
			if _, reading := res.Body.(responseBody); !reading {
				// Nobody will read this body: the context's end must
				// reset a stream that is still open (a HEAD's, or one
				// whose request body is still being sent). A body that is
				// read notices in Read, and Close resets it.
				s.watchContext()
			}
			return res, nil
		}
		if err != nil {
			return nil, err
		}
		select {
		case <-s.recvWake:
		case <-ctx.Done():
			err := ctx.Err()
			s.cancel(err)
			return nil, err
		}
	}
}

// watchContext resets the stream when the request's context ends before
// the stream does (context.AfterFunc: allocations, so only where needed).
func (s *stream) watchContext() {
	ctx := s.rq.ctx
	if ctx.Done() == nil {
		return
	}
	s.mu.Lock()
	done := s.watchDone
	s.mu.Unlock()
	if done {
		return
	}
	stop := context.AfterFunc(ctx, func() { s.cancel(ctx.Err()) })
	s.mu.Lock()
	if s.watchDone {
		s.mu.Unlock()
		stop()
		return
	}
	s.stopWatch = stop
	s.mu.Unlock()
}

// finishWatch stops the context watch: the stream is over.
func (s *stream) finishWatch() {
	s.mu.Lock()
	s.watchDone = true
	stop := s.stopWatch
	s.stopWatch = nil
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// cancel resets the stream (RST_STREAM CANCEL) with err.
func (s *stream) cancel(err error) { s.abort(err, http2.ErrCodeCancel, true) }

// abort ends the stream with err: RST_STREAM(code) when sendRST and it is
// still open, then its waiters wake. The RST is queued before the slot is
// released, so it reaches the server ahead of the stream that takes it.
func (s *stream) abort(err error, code http2.ErrCode, sendRST bool) {
	c := s.c
	c.mu.Lock()
	open := !s.closed
	var after streamDone
	if open {
		if sendRST && !c.closed {
			c.ctlMu.Lock()
			c.ctlQ.rsts = append(c.ctlQ.rsts, rstStream{s.id, code})
			c.ctlPending.Store(true)
			c.ctlMu.Unlock()
		}
		s.err = err
		c.removeStreamLocked(s)
		after = c.afterStreamLocked()
	}
	c.mu.Unlock()
	if open && sendRST {
		c.kickControl()
	}
	s.mu.Lock()
	if s.res == nil && s.resErr == nil {
		s.resErr = err
	}
	if s.readErr == nil {
		s.readErr = err
	}
	s.mu.Unlock()
	s.wakeRecv()
	if open {
		c.afterStream(after)
		s.finishWatch()
	}
}

// removeStreamLocked takes s off the connection (under c.mu).
func (c *conn) removeStreamLocked(s *stream) {
	s.closed = true
	delete(c.streams, s.id)
	c.active--
	c.inflight.Add(-1)
	s.wakeSend()
}

// markSendDone records END_STREAM sent; the stream closes if the response
// has ended too.
func (c *conn) markSendDone(s *stream) {
	c.mu.Lock()
	s.sendDone = true
	if s.closed || !s.recvDone {
		c.mu.Unlock()
		return
	}
	c.removeStreamLocked(s)
	after := c.afterStreamLocked()
	c.mu.Unlock()
	c.afterStream(after)
	s.finishWatch()
}

// endRecv records END_STREAM received. A stream whose request is complete
// closes; one whose request body is no longer wanted is reset with
// NO_ERROR (RFC 9113 8.1); otherwise the request body keeps flowing.
func (c *conn) endRecv(s *stream) {
	c.mu.Lock()
	s.recvDone = true
	if s.closed || (!s.sendDone && !s.stopSend) {
		c.mu.Unlock()
		return
	}
	rst := !s.sendDone
	if rst {
		c.queueRSTLocked(s.id, http2.ErrCodeNo)
	}
	c.removeStreamLocked(s)
	after := c.afterStreamLocked()
	c.mu.Unlock()
	if rst {
		c.kickControl()
	}
	c.afterStream(after)
	s.finishWatch()
}

// abandonSend: the writer stopped because the response does not want the
// rest of the body. Once the response has ended, the stream closes.
func (c *conn) abandonSend(s *stream) {
	c.mu.Lock()
	s.stopSend = true
	if s.closed || !s.recvDone {
		c.mu.Unlock()
		return
	}
	c.queueRSTLocked(s.id, http2.ErrCodeNo)
	c.removeStreamLocked(s)
	after := c.afterStreamLocked()
	c.mu.Unlock()
	c.kickControl()
	c.afterStream(after)
	s.finishWatch()
}

func (c *conn) queueRSTLocked(id uint32, code http2.ErrCode) {
	c.ctlMu.Lock()
	c.ctlQ.rsts = append(c.ctlQ.rsts, rstStream{id, code})
	c.ctlPending.Store(true)
	c.ctlMu.Unlock()
}

// closedErr is what a writer on a closed stream returns.
func (s *stream) closedErr() error {
	if s.err != nil {
		return s.err
	}
	return errStopBody
}
