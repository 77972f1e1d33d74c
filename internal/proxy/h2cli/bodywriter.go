package h2cli

import (
	"errors"
	"fmt"
	"io"
)

// copyBufSize is the copy buffer of a streamed request body: each read is
// written (as DATA frames of the server's maximum size) and flushed at
// once, which full-duplex streams (gRPC) need.
const copyBufSize = 16 << 10

// writeBody sends the rest of the request body, then its trailers, on its
// own goroutine: the body is a stream that may not have arrived yet, or
// did not fit the flow-control windows when the headers went. It ends
// when the body does, the stream is reset, or the request's context ends.
func (s *stream) writeBody(maxFrame int) {
	rq := &s.rq
	err := s.copyBody(maxFrame)
	switch {
	case err == nil:
		rq.wroteRequest(nil)
	case errors.Is(err, errStopBody):
		s.c.abandonSend(s)
		rq.wroteRequest(nil)
	default:
		s.cancel(err)
		rq.wroteRequest(err)
	}
	if rq.body != nil {
		_ = rq.body.Close()
	}
	rq.release()
}

func (s *stream) copyBody(maxFrame int) error {
	rq := &s.rq
	end := rq.trailerKeys == ""
	if rq.inline != nil {
		if err := s.sendData(rq.inline[rq.inlineSent:], end, maxFrame); err != nil {
			return err
		}
		return s.sendTrailers(maxFrame)
	}
	bufp := getBuf(copyBufSize)
	defer putBuf(bufp)
	buf := (*bufp)[:copyBufSize]
	remain := rq.contentLength
	for {
		n, err := rq.body.Read(buf)
		if remain >= 0 {
			remain -= int64(n)
			if remain < 0 {
				return errReqBodyTooLong
			}
		}
		eof := err == io.EOF || remain == 0
		switch {
		case err == io.EOF && remain > 0:
			return errReqBodyTooShort
		case err != nil && err != io.EOF:
			return fmt.Errorf("h2cli: reading the request body: %w", err)
		}
		if n > 0 || (eof && end) {
			if err := s.sendData(buf[:n], eof && end, maxFrame); err != nil {
				return err
			}
		}
		if eof {
			return s.sendTrailers(maxFrame)
		}
	}
}

// sendTrailers ends a stream that has trailers.
func (s *stream) sendTrailers(maxFrame int) error {
	if s.rq.trailerKeys == "" {
		return nil
	}
	c := s.c
	c.lockWrite()
	if err := s.writable(); err != nil {
		_ = c.unlockWrite()
		return err
	}
	c.writeTrailersLocked(s, maxFrame)
	if err := c.unlockWrite(); err != nil {
		c.close(&connError{c.ep.addr, fmt.Errorf("write: %w", err)})
		return err
	}
	c.markSendDone(s)
	return nil
}

// sendData writes p as DATA frames as the flow-control windows allow, the
// last with END_STREAM when end.
func (s *stream) sendData(p []byte, end bool, maxFrame int) error {
	c := s.c
	for {
		n, frame, err := s.awaitSendWindow(len(p))
		if err != nil {
			return err
		}
		if frame > 0 {
			maxFrame = frame // the server's SETTINGS_MAX_FRAME_SIZE now
		}
		last := end && n == len(p)
		c.lockWrite()
		if err := s.writable(); err != nil {
			_ = c.unlockWrite()
			c.mu.Lock()
			c.sendWindow += int64(n) // never sent: the connection's window is still ours
			c.mu.Unlock()
			return err
		}
		c.writeDataLocked(s.id, p[:n], last, maxFrame)
		if err := c.unlockWrite(); err != nil {
			c.close(&connError{c.ep.addr, fmt.Errorf("write: %w", err)})
			return err
		}
		p = p[n:]
		if last {
			c.markSendDone(s)
		}
		if len(p) == 0 {
			return nil
		}
	}
}

// writable reports why the stream can take no more frames, if so.
func (s *stream) writable() error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case s.closed:
		return s.closedErr()
	case s.stopSend:
		return errStopBody
	case c.closed:
		return c.err
	}
	return nil
}

// awaitSendWindow takes up to want bytes of both send windows, waiting
// for WINDOW_UPDATE when either is empty, and returns the server's frame
// size limit with them. want 0 takes nothing.
func (s *stream) awaitSendWindow(want int) (int, int, error) {
	if want == 0 {
		return 0, 0, nil
	}
	c := s.c
	ctx := s.rq.ctx
	c.mu.Lock()
	for {
		switch {
		case s.closed:
			err := s.closedErr()
			c.mu.Unlock()
			return 0, 0, err
		case s.stopSend:
			c.mu.Unlock()
			return 0, 0, errStopBody
		case c.closed:
			err := c.err
			c.mu.Unlock()
			return 0, 0, err
		}
		if avail := min(c.sendWindow, s.sendWindow); avail > 0 {
			n := int(min(avail, int64(want)))
			c.sendWindow -= int64(n)
			s.sendWindow -= int64(n)
			frame := int(c.maxFrame)
			c.mu.Unlock()
			return n, frame, nil
		}
		if s.sendWake == nil {
			s.sendWake = make(chan struct{}, 1)
		}
		if !s.inFlow {
			s.inFlow = true
			c.flowWaiters = append(c.flowWaiters, s)
		}
		wake := s.sendWake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
		c.mu.Lock()
	}
}

// growSendWindows applies a change of the server's initial stream window
// to every open stream (under c.mu); false when one overflows.
func (c *conn) growSendWindowsLocked(delta int64) bool {
	ok := true
	for _, s := range c.streams {
		s.sendWindow += delta
		if s.sendWindow > maxWindow {
			ok = false
		}
	}
	c.wakeFlowWaitersLocked()
	return ok
}

func (c *conn) wakeFlowWaitersLocked() {
	for _, s := range c.flowWaiters {
		s.inFlow = false
		s.wakeSend()
	}
	clear(c.flowWaiters)
	c.flowWaiters = c.flowWaiters[:0]
}

const maxWindow = 1<<31 - 1
