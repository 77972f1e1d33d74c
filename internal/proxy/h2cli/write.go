package h2cli

import (
	"runtime"

	"golang.org/x/net/http2"
)

// Writing frames. Every frame goes through the connection's buffered
// writer under wmu, and the buffer is flushed by the last writer out
// ("group commit"): a writer that sees others waiting for wmu leaves the
// flush to them, so concurrent streams share TLS records and write calls.
//
// Control frames (SETTINGS and PING acknowledgements, WINDOW_UPDATE,
// RST_STREAM, keepalive PING) are queued instead, by goroutines that must
// not block on a busy writer: the read loop above all, which would
// otherwise stop reading while a writer waits for the server to read. A
// queued frame is written by whoever takes wmu next: every writer drains
// the queue when it takes the lock and before it lets go, and whoever
// queues or unlocks tries to take the lock when the queue is not empty.

type windowUpdate struct{ id, incr uint32 }

type rstStream struct {
	id   uint32
	code http2.ErrCode
}

// controlFrames are queued control frames.
type controlFrames struct {
	tableSize    uint32 // the server's SETTINGS_HEADER_TABLE_SIZE, applied to the encoder
	hasTableSize bool
	settingsAcks int
	rsts         []rstStream
	connWU       uint32
	streamWUs    []windowUpdate
	pingAcks     [][8]byte
	ping         [8]byte
	hasPing      bool
	goAway       bool
	goAwayCode   http2.ErrCode
}

func (q *controlFrames) reset() {
	*q = controlFrames{rsts: q.rsts[:0], streamWUs: q.streamWUs[:0], pingAcks: q.pingAcks[:0]}
}

// queueControl adds frames to the queue (f runs under ctlMu). The caller
// then calls kickControl, unless it is the read loop with more to read.
func (c *conn) queueControl(f func(q *controlFrames)) {
	c.ctlMu.Lock()
	f(c.ctlQ)
	c.ctlPending.Store(true)
	c.ctlMu.Unlock()
}

// queueWindowUpdate returns receive window to the server.
func (c *conn) queueWindowUpdate(connIncr uint32, id, incr uint32) {
	c.ctlMu.Lock()
	c.ctlQ.connWU += connIncr
	if incr > 0 {
		c.ctlQ.streamWUs = append(c.ctlQ.streamWUs, windowUpdate{id, incr})
	}
	c.ctlPending.Store(true)
	c.ctlMu.Unlock()
}

// lockWrite takes the write lock to write frames; unlockWrite releases it
// and flushes if no other writer is waiting.
func (c *conn) lockWrite() {
	c.writers.Add(1)
	c.wmu.Lock()
	c.drainControlLocked()
}

func (c *conn) unlockWrite() error {
	c.drainControlLocked()
	if c.writers.Load() == 1 && c.werr == nil && c.bw.Buffered() > 0 && c.inflight.Load() > 1 {
		// The last writer out lets the goroutines ready to run go first
		// when other streams are open, staying counted so that none of
		// them flushes: their requests join this batch (one write, one TLS
		// record). A lone stream does not yield (nothing to batch).
		c.wmu.Unlock()
		runtime.Gosched()
		c.wmu.Lock()
		c.drainControlLocked()
	}
	if c.writers.Add(-1) == 0 && c.werr == nil {
		c.werr = c.bw.Flush()
	}
	err := c.werr
	c.wmu.Unlock()
	if c.ctlPending.Load() {
		c.kickControl()
	}
	return err
}

// kickControl writes queued control frames if nobody holds the write lock
// (whoever does writes them before letting go).
func (c *conn) kickControl() {
	for c.ctlPending.Load() && c.wmu.TryLock() {
		c.drainControlLocked()
		if c.writers.Load() == 0 && c.werr == nil {
			c.werr = c.bw.Flush()
		}
		c.wmu.Unlock()
	}
}

// drainControlLocked writes the queued control frames (under wmu). Only
// the queue swap happens under ctlMu: queuing never waits for a write.
func (c *conn) drainControlLocked() {
	if !c.ctlPending.Load() {
		return
	}
	c.ctlMu.Lock()
	c.ctlQ, c.ctlW = c.ctlW, c.ctlQ
	c.ctlPending.Store(false)
	c.ctlMu.Unlock()
	q := c.ctlW
	defer q.reset()
	if c.werr != nil {
		return
	}
	if q.hasTableSize {
		c.henc.SetMaxDynamicTableSize(q.tableSize)
	}
	for range q.settingsAcks {
		c.setWriteErr(c.fr.WriteSettingsAck())
	}
	for _, r := range q.rsts {
		c.setWriteErr(c.fr.WriteRSTStream(r.id, r.code))
	}
	if q.connWU > 0 {
		c.setWriteErr(c.fr.WriteWindowUpdate(0, q.connWU))
	}
	for _, w := range q.streamWUs {
		c.setWriteErr(c.fr.WriteWindowUpdate(w.id, w.incr))
	}
	for _, data := range q.pingAcks {
		c.setWriteErr(c.fr.WritePing(true, data))
	}
	if q.hasPing {
		c.setWriteErr(c.fr.WritePing(false, q.ping))
	}
	if q.goAway {
		c.setWriteErr(c.fr.WriteGoAway(0, q.goAwayCode, nil))
	}
}

func (c *conn) setWriteErr(err error) {
	if err != nil && c.werr == nil {
		c.werr = err
	}
}

// writeHeaderBlockLocked writes block as HEADERS and CONTINUATION frames
// of at most maxFrame bytes (under wmu).
func (c *conn) writeHeaderBlockLocked(id uint32, endStream bool, block []byte, maxFrame int) {
	first := true
	for first || len(block) > 0 {
		chunk := block
		if len(chunk) > maxFrame {
			chunk = chunk[:maxFrame]
		}
		block = block[len(chunk):]
		if first {
			c.setWriteErr(c.fr.WriteHeaders(http2.HeadersFrameParam{
				StreamID: id, BlockFragment: chunk, EndStream: endStream, EndHeaders: len(block) == 0,
			}))
			first = false
		} else {
			c.setWriteErr(c.fr.WriteContinuation(id, len(block) == 0, chunk))
		}
		if c.werr != nil {
			return
		}
	}
}

// writeDataLocked writes p as DATA frames of at most maxFrame bytes, the
// last with END_STREAM when end (under wmu; flow control already taken).
func (c *conn) writeDataLocked(id uint32, p []byte, end bool, maxFrame int) {
	for {
		chunk := p
		if len(chunk) > maxFrame {
			chunk = chunk[:maxFrame]
		}
		p = p[len(chunk):]
		c.setWriteErr(c.fr.WriteData(id, end && len(p) == 0, chunk))
		if len(p) == 0 || c.werr != nil {
			return
		}
	}
}
