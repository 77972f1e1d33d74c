package h2srv

import (
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

func connError(code http2.ErrCode) error { return http2.ConnectionError(code) }

func streamError(id uint32, code http2.ErrCode) error {
	return http2.StreamError{StreamID: id, Code: code}
}

// process handles one frame on the read loop.
func (c *conn) process(f http2.Frame) error {
	if !c.sawSettings {
		if _, ok := f.(*http2.SettingsFrame); !ok {
			return connError(http2.ErrCodeProtocol)
		}
		c.sawSettings = true
		if c.s.cfg.ReadHeaderTimeout > 0 {
			_ = c.nc.SetReadDeadline(time.Time{})
			if c.stop.Load() != stopNone { // a wake-up the line above undid
				_ = c.nc.SetReadDeadline(aLongTimeAgo)
			}
		}
	}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil // we send no PING
		}
		if f.StreamID != 0 {
			return connError(http2.ErrCodeProtocol)
		}
		c.w.acquire()
		c.w.writePing(true, f.Data)
		c.w.releaseLater()
		return nil
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.PriorityFrame:
		if f.StreamID == f.StreamDep {
			return streamError(f.StreamID, http2.ErrCodeProtocol)
		}
		return nil
	case *http2.GoAwayFrame:
		c.startDrain()
		return nil
	case *http2.PushPromiseFrame:
		return connError(http2.ErrCodeProtocol)
	}
	return nil // unknown and ignored frames (priority updates, stray CONTINUATION)
}

// lookup returns the open stream id, or nil; idle reports an id no stream
// used yet.
func (c *conn) lookup(id uint32) (st *stream, idle bool) {
	c.smu.Lock()
	st = c.streams[id]
	c.smu.Unlock()
	return st, st == nil && id > c.maxID
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		if c.unacked--; c.unacked < 0 {
			return connError(http2.ErrCodeProtocol)
		}
		return nil
	}
	if f.NumSettings() > 100 { // not in the RFC: net/http's bound
		return connError(http2.ErrCodeProtocol)
	}
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		return err
	}
	w := &c.w
	w.acquire()
	defer w.releaseLater()
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingHeaderTableSize:
			w.enc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingMaxFrameSize:
			w.maxFrame = int(s.Val)
		case http2.SettingInitialWindowSize:
			return c.setInitialWindow(int64(s.Val))
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.writeSettingsAck()
	return nil
}

// setInitialWindow applies a new SETTINGS_INITIAL_WINDOW_SIZE to every
// open stream's send window (RFC 9113 6.9.2). Called with w.mu held.
func (c *conn) setInitialWindow(v int64) error {
	w := &c.w
	delta := v - w.initWindow
	w.initWindow = v
	c.smu.Lock()
	defer c.smu.Unlock()
	for _, st := range c.streams {
		st.sendWin += delta
		if st.sendWin > maxWindow {
			return connError(http2.ErrCodeFlowControl)
		}
	}
	if delta > 0 && w.condWaiters > 0 {
		w.cond.Broadcast()
	}
	return nil
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	w := &c.w
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.flow += inc; w.flow > maxWindow {
			return connError(http2.ErrCodeFlowControl)
		}
		if w.condWaiters > 0 {
			w.cond.Broadcast()
		}
		return nil
	}
	st, idle := c.lookup(f.StreamID)
	if st == nil {
		if idle {
			return connError(http2.ErrCodeProtocol)
		}
		return nil // a stream that just closed
	}
	st.activity.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if st.sendWin += inc; st.sendWin > maxWindow {
		return streamError(f.StreamID, http2.ErrCodeFlowControl)
	}
	if w.condWaiters > 0 {
		w.cond.Broadcast()
	}
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	st, idle := c.lookup(f.StreamID)
	if st == nil {
		if idle {
			return connError(http2.ErrCodeProtocol)
		}
		return nil
	}
	c.s.stats.StreamReset()
	c.closeStream(st, errClientReset)
	if c.guard.Reset(time.Since(st.opened)) {
		return errRapidReset
	}
	return nil
}

// onData delivers a DATA frame to its stream's body, enforcing flow
// control and the declared content-length.
func (c *conn) onData(f *http2.DataFrame) error {
	id, length := f.StreamID, int64(f.Length)
	if length > c.inAvail.Load() {
		return connError(http2.ErrCodeFlowControl)
	}
	c.inAvail.Add(-length)
	st, idle := c.lookup(id)
	if st == nil || st.remoteDone {
		if idle {
			return connError(http2.ErrCodeProtocol)
		}
		c.returnWindow(nil, 0, length, true)
		if err := c.rd.charge(); err != nil {
			return err
		}
		if st == nil && c.quietlyDropped(id) {
			return nil
		}
		return streamError(id, http2.ErrCodeStreamClosed)
	}
	st.activity.Add(1)
	data := f.Data()
	if st.declLen >= 0 && st.recvLen+int64(len(data)) > st.declLen {
		c.returnWindow(nil, 0, length, true)
		return streamError(id, http2.ErrCodeProtocol)
	}
	if err := st.body.write(c, data, length); err != nil {
		c.returnWindow(nil, 0, length, true)
		return err
	}
	st.recvLen += int64(len(data))
	if f.StreamEnded() {
		if st.declLen >= 0 && st.recvLen != st.declLen {
			return streamError(id, http2.ErrCodeProtocol)
		}
		c.endRemote(st, nil)
	}
	return nil
}

// quietlyDropped: frames of streams above the GOAWAY's last id (RFC 9113
// 6.8) and of streams the server just reset are dropped without answer.
func (c *conn) quietlyDropped(id uint32) bool {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.draining && id > c.goAwayID || c.wasResetLocked(id)
}

// onTrailers takes the HEADERS that end a request body.
func (c *conn) onTrailers(st *stream, f *http2.MetaHeadersFrame) error {
	if st.remoteDone {
		return streamError(st.id, http2.ErrCodeStreamClosed)
	}
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 || f.Truncated {
		return streamError(st.id, http2.ErrCodeProtocol)
	}
	st.activity.Add(1)
	if st.declLen >= 0 && st.recvLen != st.declLen {
		return streamError(st.id, http2.ErrCodeProtocol)
	}
	var trailer map[string][]string
	for _, hf := range f.RegularFields() {
		key := c.canonical(hf.Name)
		if !httpguts.ValidTrailerHeader(key) {
			return streamError(st.id, http2.ErrCodeProtocol)
		}
		if _, declared := st.req.Trailer[key]; !declared {
			continue // net/http passes only declared trailers
		}
		if trailer == nil {
			trailer = make(map[string][]string)
		}
		trailer[key] = append(trailer[key], hf.Value)
	}
	c.endRemote(st, trailer)
	return nil
}

// streamError resets a stream after a stream error (RFC 9113 5.4.2). A
// HEADERS frame that opened no stream still used its id.
func (c *conn) streamError(se http2.StreamError) error {
	if se.StreamID == 0 {
		return connError(se.Code)
	}
	if st, _ := c.lookup(se.StreamID); st != nil {
		c.resetStream(st, se.Code, errStreamClosed, true)
		return nil
	}
	c.smu.Lock()
	if c.rd.lastType == http2.FrameHeaders && se.StreamID > c.maxID {
		c.maxID = se.StreamID
	}
	c.smu.Unlock()
	if err := c.rd.charge(); err != nil {
		return err
	}
	c.w.acquire()
	c.w.writeRST(se.StreamID, se.Code)
	c.w.releaseLater()
	return nil
}
