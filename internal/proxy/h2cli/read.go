package h2cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"golang.org/x/net/http2"
)

// The read loop: one goroutine per connection reads frames and hands them
// to their streams. It never blocks on the write lock: the frames it must
// send (acknowledgements, WINDOW_UPDATE, RST_STREAM) are queued, and
// written once its read buffer is empty, or by the next writer.

func (c *conn) readLoop() {
	defer c.pool.wg.Done()
	err := c.readFrames()
	c.readErr = &connError{c.ep.addr, err}
	close(c.readDone)
	c.close(c.readErr)
}

func (c *conn) readFrames() error {
	for {
		fh, err := c.fr.ReadFrameHeader()
		if err != nil {
			return c.readError(err)
		}
		f, err := c.fr.ReadFrameForHeader(fh)
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) && fh.Type != http2.FrameHeaders && fh.Type != http2.FrameContinuation {
				// A malformed DATA or WINDOW_UPDATE ends its stream only.
				// (A header block that cannot be decoded would leave HPACK
				// out of step: that ends the connection, below.)
				if fh.Type == http2.FrameData {
					if err := c.takeConnWindow(fh.Length); err != nil {
						return c.protocolError(err)
					}
					c.consumed(int64(fh.Length), 0, 0)
				}
				c.onStreamError(se)
				continue
			}
			return c.readError(err)
		}
		if !c.sawFrame.Load() {
			c.sawFrame.Store(true)
		}
		if err := c.dispatch(f); err != nil {
			return c.protocolError(err)
		}
		if c.br.Buffered() == 0 && c.ctlPending.Load() {
			c.kickControl() // about to block reading: send what is queued
		}
	}
}

func (c *conn) dispatch(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		return c.onHeaders(f)
	case *http2.ContinuationFrame:
		return c.headerFragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.RSTStreamFrame:
		return c.onRST(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		return c.onPing(f)
	case *http2.GoAwayFrame:
		c.onGoAway(f)
		return nil
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // SETTINGS_ENABLE_PUSH is 0
	}
	return nil // PRIORITY, PRIORITY_UPDATE and unknown types are ignored
}

// readError turns a failed read into the connection's error, telling the
// server about a protocol error first.
func (c *conn) readError(err error) error {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		return c.protocolError(err)
	case errors.Is(err, http2.ErrFrameTooLarge):
		return c.protocolError(http2.ConnectionError(http2.ErrCodeFrameSize))
	case errors.Is(err, io.EOF):
		return errors.New("closed by the server")
	}
	return err
}

// protocolError sends GOAWAY with the error's code (best effort) and
// returns what ends the connection.
func (c *conn) protocolError(err error) error {
	code := http2.ErrCodeProtocol
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		code = http2.ErrCode(ce)
	}
	c.queueControl(func(q *controlFrames) { q.goAway, q.goAwayCode = true, code })
	c.kickControl()
	if d := c.fr.ErrorDetail(); d != nil {
		return fmt.Errorf("protocol error from the server: %w: %v", err, d)
	}
	return fmt.Errorf("protocol error from the server: %w", err)
}

// streamFor looks up an open stream; idle reports an id the client never
// used (a protocol error for most frames).
func (c *conn) streamFor(id uint32) (s *stream, idle bool) {
	c.mu.Lock()
	s = c.streams[id]
	idle = id%2 == 0 || id >= c.nextID
	c.mu.Unlock()
	return s, idle
}

// resetStream ends a stream the server broke the protocol on.
func (c *conn) resetStream(s *stream, code http2.ErrCode, cause error) {
	s.abort(&StreamError{StreamID: s.id, Code: code, Cause: cause}, code, true)
}

func (c *conn) onStreamError(se http2.StreamError) {
	if s, _ := c.streamFor(se.StreamID); s != nil {
		cause := se.Cause
		if cause == nil {
			cause = c.fr.ErrorDetail()
		}
		if cause == nil {
			cause = errors.New("malformed frame")
		}
		c.resetStream(s, se.Code, cause)
	}
}

func (c *conn) onHeaders(f *http2.HeadersFrame) error {
	s, idle := c.streamFor(f.StreamID)
	if idle {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.hb.s = s
	c.hb.endStream = f.StreamEnded()
	return c.headerFragment(f.HeaderBlockFragment(), f.HeadersEnded())
}

// headerFragment decodes part of a header block. The block's encoded size
// is bounded, so CONTINUATION frames cannot make it grow without end.
func (c *conn) headerFragment(frag []byte, end bool) error {
	b := &c.hb
	b.encoded += len(frag)
	if b.encoded > 2*int(c.o.MaxHeaderListSize)+16<<10 {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	if _, err := c.hdec.Write(frag); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	if !end {
		return nil
	}
	return c.endHeaderBlock()
}

// takeConnWindow counts received DATA against the connection's window.
func (c *conn) takeConnWindow(n uint32) error {
	if n > 0 && c.inAvail.Add(-int64(n)) < 0 {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	return nil
}

func (c *conn) onData(f *http2.DataFrame) error {
	if err := c.takeConnWindow(f.Length); err != nil {
		return err
	}
	s, idle := c.streamFor(f.StreamID)
	if idle {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if s == nil {
		c.consumed(int64(f.Length), 0, 0) // a stream we reset: give the window back
		return nil
	}
	data := f.Data()
	refund := int64(f.Length) - int64(len(data)) // padding: never read, returned at once
	var bad error
	code := http2.ErrCodeProtocol
	s.mu.Lock()
	s.inAvail -= int64(f.Length)
	switch {
	case s.recvEnded:
		bad, code = errors.New("DATA after END_STREAM"), http2.ErrCodeStreamClosed
	case !s.gotFinal:
		bad = errors.New("DATA before the response headers")
	case s.inAvail < 0:
		bad, code = errors.New("DATA beyond the stream's window"), http2.ErrCodeFlowControl
	case len(data) > 0 && s.rq.isHead:
		bad = errors.New("DATA in the response to HEAD")
	case s.recvRemain >= 0 && int64(len(data)) > s.recvRemain:
		bad = errors.New("response body longer than its Content-Length")
	case f.StreamEnded() && s.recvRemain > int64(len(data)):
		bad = errors.New("response body shorter than its Content-Length")
	}
	if bad != nil {
		s.mu.Unlock()
		c.consumed(int64(f.Length), 0, 0)
		c.resetStream(s, code, bad)
		return nil
	}
	if s.recvRemain >= 0 {
		s.recvRemain -= int64(len(data))
	}
	if s.bodyClosed {
		refund += int64(len(data)) // nobody reads it
	} else if len(data) > 0 {
		s.buf.write(data, s.recvRemain)
	}
	var streamIncr int64
	end := f.StreamEnded()
	if refund > 0 && !end {
		s.inAvail += refund
		streamIncr = refund
	}
	s.mu.Unlock()
	if streamIncr > 0 {
		c.queueWindowUpdate(0, s.id, uint32(streamIncr))
	}
	if refund > 0 {
		c.consumedConnOnly(refund)
	}
	if end {
		c.finishRecv(s, nil)
	} else if len(data) > 0 {
		s.wakeRecv()
	}
	return nil
}

// finishRecv ends the response: the stream's slot is released first, so
// a caller that sees io.EOF finds the connection free for its next
// request; then trailers and io.EOF become visible to the reader.
func (c *conn) finishRecv(s *stream, trailer http.Header) {
	c.endRecv(s)
	s.mu.Lock()
	s.trailer = trailer
	s.recvEnded = true
	s.readErr = eofOr(s.readErr)
	s.mu.Unlock()
	s.wakeRecv()
}

// consumedConnOnly returns connection window without kicking the writer
// (the read loop sends queued frames when it is about to block).
func (c *conn) consumedConnOnly(n int64) {
	if c.inUnacked.Add(n) >= int64(c.o.ConnWindow)/2 {
		incr := c.inUnacked.Swap(0)
		c.inAvail.Add(incr)
		c.queueWindowUpdate(uint32(incr), 0, 0)
	}
}

func (c *conn) onRST(f *http2.RSTStreamFrame) error {
	s, idle := c.streamFor(f.StreamID)
	if idle {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if s != nil {
		// NO_ERROR after a complete response only stops the request
		// body (RFC 9113 8.1): the reader keeps its io.EOF.
		s.abort(&StreamError{StreamID: f.StreamID, Code: f.ErrCode, Remote: true}, 0, false)
	}
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	var tableSize uint32
	hasTableSize := false
	c.mu.Lock()
	seenMax := false
	for i := range f.NumSettings() {
		st := f.Setting(i)
		if err := st.Valid(); err != nil {
			c.mu.Unlock()
			return err
		}
		switch st.ID {
		case http2.SettingMaxFrameSize:
			c.maxFrame = st.Val
		case http2.SettingMaxConcurrentStreams:
			c.maxConcurrent, seenMax = st.Val, true
		case http2.SettingMaxHeaderListSize:
			c.peerMaxList = uint64(st.Val)
		case http2.SettingInitialWindowSize:
			delta := int64(st.Val) - int64(c.peerWindow)
			c.peerWindow = int32(st.Val)
			if !c.growSendWindowsLocked(delta) {
				c.mu.Unlock()
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		case http2.SettingHeaderTableSize:
			tableSize, hasTableSize = st.Val, true
		}
	}
	if !c.gotSettings && !seenMax {
		c.maxConcurrent = defaultMaxConcurrent
	}
	c.mu.Unlock()
	flood := false
	c.queueControl(func(q *controlFrames) {
		q.settingsAcks++
		flood = q.settingsAcks > maxPendingControl
		if hasTableSize {
			q.tableSize, q.hasTableSize = tableSize, true
		}
	})
	if flood {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	if !c.gotSettings {
		c.gotSettings = true
		close(c.settingsc)
	}
	if c.ep.waiters.Load() > 0 {
		c.pool.wake(c.ep) // the stream limit may have grown
	}
	return nil
}

func (c *conn) onPing(f *http2.PingFrame) error {
	if f.IsAck() {
		c.pingAcked(f.Data)
		return nil
	}
	flood := false
	c.queueControl(func(q *controlFrames) {
		q.pingAcks = append(q.pingAcks, f.Data)
		flood = len(q.pingAcks) > maxPendingControl
	})
	if flood {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

// onGoAway: no new stream; streams above the last id were not processed
// and fail with a GoAwayError; the others continue. The connection closes
// when they are done (or when the server closes it).
func (c *conn) onGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	if !c.goAway || f.LastStreamID < c.goAwayID {
		c.goAwayID = f.LastStreamID
	}
	c.goAway = true
	last := c.goAwayID
	var refused []*stream
	for id, s := range c.streams {
		if id > last {
			refused = append(refused, s)
		}
	}
	empty := c.active+c.reserved == 0
	c.mu.Unlock()
	c.pool.unlist(c)
	if f.ErrCode != http2.ErrCodeNo {
		c.o.Logger.Debug("h2cli: GOAWAY from the server", "endpoint", c.ep.addr, "code", f.ErrCode.String(),
			"last_stream", last, "debug", string(f.DebugData()))
	}
	for _, s := range refused {
		s.abort(&GoAwayError{StreamID: s.id, LastStreamID: last, Code: f.ErrCode, Debug: string(f.DebugData())}, 0, false)
	}
	if empty {
		c.closeGracefully(errDrained)
	}
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	incr := int64(f.Increment)
	c.mu.Lock()
	if f.StreamID == 0 {
		c.sendWindow += incr
		if c.sendWindow > maxWindow {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.wakeFlowWaitersLocked()
		c.mu.Unlock()
		return nil
	}
	s := c.streams[f.StreamID]
	idle := f.StreamID%2 == 0 || f.StreamID >= c.nextID
	if s == nil {
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	s.sendWindow += incr
	overflow := s.sendWindow > maxWindow
	s.wakeSend()
	c.mu.Unlock()
	if overflow {
		c.resetStream(s, http2.ErrCodeFlowControl, errors.New("send window overflow"))
	}
	return nil
}
