package h2srv

import (
	"context"
	"net/http"
	"net/url"
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// stream is one request. Fields are grouped by who may touch them.
type stream struct {
	c      *conn
	id     uint32
	ctx    context.Context
	cancel context.CancelCauseFunc
	req    *http.Request
	url    url.URL // req.URL
	opened time.Time
	body   requestBody    // r.Body (unless HEADERS ended the stream)
	rw     responseWriter // the handler's http.ResponseWriter

	// Stream idle timeout: activity counts frames either way, reads of the
	// request body and writes of the response; idleTimeout is WatchIdle's
	// (ns; 0: Config.StreamIdleTimeout, negative: none); started is set by
	// the handler's final WriteHeader.
	activity    atomic.Uint32
	idleTimeout atomic.Int64
	started     atomic.Bool

	// read loop
	declLen int64 // request content-length, -1: none
	recvLen int64

	// c.smu
	inTable    bool // open: counts against MaxConcurrentStreams
	remoteDone bool // the client ended its side (also read by the read loop, its only writer)
	localDone  bool // END_STREAM sent
	seenAct    uint32
	idleFor    time.Duration
	idleFired  bool // a watched stream's handler was told to answer (streamIdle)

	// c.w.mu
	sendWin     int64
	sentHeaders bool
	wdone       bool // nothing more may be written (END_STREAM or RST sent, or reset)
	werr        error
}

// onHeaders opens a stream, or takes a stream's trailers.
func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return connError(http2.ErrCodeProtocol)
	}
	c.smu.Lock()
	if st := c.streams[id]; st != nil {
		c.smu.Unlock()
		return c.onTrailers(st, f)
	}
	if id <= c.maxID {
		recent := c.wasResetLocked(id)
		c.smu.Unlock()
		if recent { // trailers in flight when the response ended the stream
			return c.rd.charge()
		}
		return connError(http2.ErrCodeProtocol)
	}
	c.maxID = id
	ignore := c.closing || c.draining && id > c.goAwayID
	full := uint32(len(c.streams)) >= c.s.cfg.MaxConcurrentStreams
	c.smu.Unlock()
	switch {
	case ignore:
		return nil
	case f.HasPriority() && f.Priority.StreamDep == id:
		return streamError(id, http2.ErrCodeProtocol)
	case full:
		if err := c.rd.charge(); err != nil {
			return err
		}
		return streamError(id, http2.ErrCodeRefusedStream)
	case f.Truncated || len(f.RegularFields()) > c.s.cfg.MaxHeaderFields:
		c.s.stats.HeaderLimit()
		c.reply431(id, f.StreamEnded())
		return nil
	}
	st, err := c.newStream(f)
	if err != nil {
		return err
	}
	return c.openStream(st)
}

// openStream registers a new stream and starts (or queues) its handler:
// on an idle handler goroutine if there is one, else on a new one.
func (c *conn) openStream(st *stream) error {
	maxRunning := int(c.s.cfg.MaxConcurrentStreams)
	c.smu.Lock()
	if c.closing {
		c.smu.Unlock()
		st.cancel(nil)
		return nil
	}
	c.streams[st.id] = st
	st.inTable = true
	c.opened++
	start := c.running < maxRunning
	handoff := false
	switch {
	case start:
		c.running++
		c.w.busy.Add(1)
		if c.idle > 0 {
			c.idle--
			handoff = true
		}
	case len(c.queue) >= 4*maxRunning:
		c.smu.Unlock()
		return errHandlerQueue
	default:
		c.queue = append(c.queue, st)
	}
	c.smu.Unlock()
	c.rd.streamsNow++
	c.guard.Opened()
	c.s.stats.StreamOpened()
	switch {
	case handoff:
		c.workc <- st // an idle goroutine is receiving (it counted itself under smu)
	case start:
		c.handlers.Add(1)
		go c.runHandlers(st)
	}
	return nil
}

// runHandlers runs st's handler, then those queued behind it, then waits
// as an idle worker for the streams openStream hands it (workers.go).
func (c *conn) runHandlers(st *stream) {
	defer c.handlers.Done()
	for st != nil {
		c.runHandler(st)
		st = c.nextStream()
	}
}

func (c *conn) runHandler(st *stream) {
	defer st.handlerEnded()
	if st.ctx.Err() != nil {
		return // reset before its handler started
	}
	panicked := true
	defer func() {
		if !panicked {
			return
		}
		if v := recover(); v != http.ErrAbortHandler {
			c.s.log.Error("http2 handler panic", "remote", c.remote, "method", st.req.Method,
				"path", st.req.URL.Path, "panic", v, "stack", string(debug.Stack()))
		}
		c.resetStream(st, http2.ErrCodeInternal, errStreamClosed, false)
	}()
	c.h.ServeHTTP(&st.rw, st.req)
	panicked = false
	st.rw.finish()
}

// handlerEnded releases what the handler used; its context ends.
func (st *stream) handlerEnded() {
	st.rw.done = true
	st.rw.stopTimers()
	st.cancel(nil)
	st.body.close()
	st.rw.putBuf()
}

// endRemote: the client ended its side (END_STREAM). The stream is marked
// before the body's reader wakes, so that a handler finishing at once does
// not take the client for one still sending (finishLocal).
func (c *conn) endRemote(st *stream, trailer map[string][]string) {
	c.smu.Lock()
	st.remoteDone = true
	if st.localDone {
		c.removeLocked(st)
	}
	c.smu.Unlock()
	st.body.end(trailer)
}

// finishLocal: END_STREAM was written (w.mu held). A client still
// sending its body is told to stop (RST_STREAM NO_ERROR, RFC 9113 8.1).
func (c *conn) finishLocal(st *stream) {
	st.wdone = true
	c.smu.Lock()
	st.localDone = true
	if st.inTable && !st.remoteDone {
		c.w.writeRST(st.id, http2.ErrCodeNo)
		c.noteResetLocked(st.id)
	}
	c.removeLocked(st)
	c.smu.Unlock()
}

// closeStream ends a stream the client reset.
func (c *conn) closeStream(st *stream, err error) {
	c.smu.Lock()
	c.removeLocked(st)
	c.smu.Unlock()
	c.w.mu.Lock()
	st.wcloseLocked(err)
	c.w.mu.Unlock()
	st.cancel(nil)
	st.body.fail(err)
}

// resetStream ends a stream with RST_STREAM code: a handler panic, a
// write deadline, or (readLoop) a stream error answering the client's
// frame, which is sent even if the stream has just closed.
func (c *conn) resetStream(st *stream, code http2.ErrCode, err error, readLoop bool) {
	w := &c.w
	w.acquire()
	c.smu.Lock()
	open := st.inTable
	if open && !st.remoteDone {
		c.noteResetLocked(st.id)
	}
	c.removeLocked(st)
	c.smu.Unlock()
	if open || readLoop {
		w.writeRST(st.id, code)
	}
	st.wcloseLocked(err)
	if readLoop {
		w.releaseLater()
	} else {
		w.release()
	}
	st.cancel(nil)
	st.body.fail(err)
}

// wcloseLocked stops the stream's writers (w.mu held).
func (st *stream) wcloseLocked(err error) {
	if !st.wdone {
		st.wdone, st.werr = true, err
	}
	if w := &st.c.w; w.condWaiters > 0 {
		w.cond.Broadcast()
	}
}

// writableLocked reports why nothing can be written (w.mu held).
func (st *stream) writableLocked() error {
	switch {
	case st.c.w.err != nil:
		return st.c.w.err
	case st.wdone && st.werr != nil:
		return st.werr
	case st.wdone:
		return errStreamClosed
	}
	return nil
}

// waitWindowLocked waits for send window, out of the writers' group (so
// what the stream wrote so far is flushed and the client can answer).
func (st *stream) waitWindowLocked() error {
	w := &st.c.w
	if w.waiting.Add(-1) == 0 {
		w.flushLocked()
	}
	w.condWaiters++
	w.cond.Wait()
	w.condWaiters--
	w.waiting.Add(1)
	return st.writableLocked()
}

// removeLocked takes st out of the table (smu held); a draining connection
// closes once its last stream is gone.
func (c *conn) removeLocked(st *stream) {
	if !st.inTable {
		return
	}
	st.inTable = false
	delete(c.streams, st.id)
	if len(c.streams) == 0 && c.draining {
		c.stopReading(stopGraceful)
	}
}

// noteResetLocked remembers a stream the server reset while the client
// could still be sending on it: frames in flight for it are dropped
// quietly (RFC 9113 5.4.2), not treated as errors.
func (c *conn) noteResetLocked(id uint32) {
	c.recentResets[c.recentNext%uint32(len(c.recentResets))] = id
	c.recentNext++
}

func (c *conn) wasResetLocked(id uint32) bool {
	for _, r := range c.recentResets {
		if r == id {
			return true
		}
	}
	return false
}

// reply431 answers a request whose header list is over the limits
// without opening a stream or running the handler.
func (c *conn) reply431(id uint32, ended bool) {
	w := &c.w
	w.acquire()
	w.hbuf.Reset()
	w.encode(":status", "431")
	w.encode("content-length", "0")
	w.writeHeaderBlock(id, true)
	if !ended {
		w.writeRST(id, http2.ErrCodeNo)
		c.smu.Lock()
		c.noteResetLocked(id)
		c.smu.Unlock()
	}
	w.releaseLater()
}

// streamIdle ends a stream without activity for its stream idle timeout.
// A stream the handler watches (WatchIdle) whose final response head is
// not written yet has its context cancelled with ErrStreamIdle and its body
// failing with it, once: the handler answers. Otherwise the stream ends as
// Envoy ends it: 408 if nothing of the response was sent (Config's timeout
// only), else RST_STREAM CANCEL.
func (c *conn) streamIdle(st *stream) {
	watched := st.idleTimeout.Load() > 0
	if watched && !st.started.Load() {
		c.smu.Lock()
		first := st.inTable && !st.idleFired
		st.idleFired = true
		c.smu.Unlock()
		if first {
			st.cancel(ErrStreamIdle)
			st.body.expire(ErrStreamIdle)
			return
		}
	}
	w := &c.w
	w.acquire()
	c.smu.Lock()
	open, remoteDone := st.inTable, st.remoteDone
	if open && !remoteDone {
		c.noteResetLocked(st.id)
	}
	c.removeLocked(st)
	c.smu.Unlock()
	if open && !st.wdone {
		if !st.sentHeaders && !watched {
			st.sentHeaders = true
			w.hbuf.Reset()
			w.encode(":status", "408")
			w.encode("content-length", "0")
			w.writeHeaderBlock(st.id, true)
			if !remoteDone {
				w.writeRST(st.id, http2.ErrCodeNo)
			}
		} else {
			w.writeRST(st.id, http2.ErrCodeCancel)
		}
	}
	st.wcloseLocked(ErrStreamIdle)
	w.release()
	st.cancel(ErrStreamIdle)
	st.body.fail(ErrStreamIdle)
}
