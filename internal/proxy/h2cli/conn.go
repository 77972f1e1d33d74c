package h2cli

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// conn is one HTTP/2 connection to an endpoint. Lock order: the pool's mu,
// then wmu, then mu, then a stream's mu or ctlMu; the read loop never
// blocks on wmu (it queues control frames, write.go).
type conn struct {
	pool *Pool
	ep   *endpoint
	o    *Options
	nc   net.Conn
	tls  *tls.ConnectionState
	born time.Time

	// Writing (write.go), under wmu.
	wmu        sync.Mutex
	writers    atomic.Int32 // goroutines holding or waiting for wmu to write: the last one out flushes
	bw         *bufio.Writer
	fr         *http2.Framer
	henc       *hpack.Encoder
	hbuf       bytes.Buffer
	lowerNames map[string]string // lower-case names of uncommon header keys, bounded
	werr       error             // first write error: the connection is dead
	ctlMu      sync.Mutex
	ctlQ, ctlW *controlFrames // queued (under ctlMu), being written (under wmu)
	ctlPending atomic.Bool

	// Reading (read.go): the read loop's own.
	br          *bufio.Reader
	hdec        *hpack.Decoder
	hb          headerBlock
	canonNames  map[string]string // canonical keys of uncommon header names, bounded
	gotSettings bool
	settingsc   chan struct{} // closed at the server's first SETTINGS
	readDone    chan struct{} // closed when the read loop ends
	readErr     error         // why it ended (before readDone closes)
	sawFrame    atomic.Bool   // a frame arrived since the keepalive last looked
	inAvail     atomic.Int64  // connection receive window left to the server
	inUnacked   atomic.Int64  // bytes consumed and not yet returned by WINDOW_UPDATE

	mu            sync.Mutex
	streams       map[uint32]*stream
	nextID        uint32
	active        int          // open streams
	inflight      atomic.Int32 // active, readable without mu (write batching)
	reserved      int          // slots the pool handed out, not yet streams
	started       uint32       // slots handed out in all (max requests)
	maxConcurrent uint32       // the server's SETTINGS_MAX_CONCURRENT_STREAMS
	peerWindow    int32        // the server's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame      uint32       // the server's SETTINGS_MAX_FRAME_SIZE
	peerMaxList   uint64       // the server's SETTINGS_MAX_HEADER_LIST_SIZE (0: unlimited)
	sendWindow    int64        // connection send window
	flowWaiters   []*stream
	draining      bool // takes no new stream; closes when the last ends
	goAway        bool
	goAwayID      uint32
	closed        bool
	err           error
	idleSince     time.Time
	idleTimer     *time.Timer
	idleArmed     bool
	ageTimer      *time.Timer
	pingTimer     *time.Timer
	pingOut       bool // a keepalive PING awaits its ack
	pingData      [8]byte
	pingSeq       uint64
}

// newConn starts HTTP/2 on nc (preface, SETTINGS, connection window) and
// its read loop. The pool waits for the server's SETTINGS (c.settingsc)
// before giving it streams.
func newConn(p *Pool, ep *endpoint, nc net.Conn) (*conn, error) {
	c := &conn{
		pool: p, ep: ep, o: &p.o, nc: nc, born: time.Now(),
		lowerNames: map[string]string{}, canonNames: map[string]string{},
		ctlQ: &controlFrames{}, ctlW: &controlFrames{},
		settingsc: make(chan struct{}), readDone: make(chan struct{}),
		streams: map[uint32]*stream{}, nextID: 1,
		maxConcurrent: 100, peerWindow: initialWindow, maxFrame: 16 << 10, sendWindow: initialWindow,
	}
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol != "" && cs.NegotiatedProtocol != http2.NextProtoTLS {
			return nil, fmt.Errorf("h2cli: %s negotiated ALPN %q, not h2", ep.addr, cs.NegotiatedProtocol)
		}
		c.tls = &cs
	}
	c.bw = bufio.NewWriterSize(nc, writeBufSize)
	c.br = bufio.NewReaderSize(nc, readBufSize)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.SetReuseFrames()
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.hdec = hpack.NewDecoder(4096, c.onHeaderField)
	// A field somewhat over the limit fails its stream (onHeaderField);
	// only a string far over it, which the decoder must refuse midway,
	// fails the connection.
	c.hdec.SetMaxStringLength(4 * int(c.o.MaxHeaderListSize))
	c.inAvail.Store(int64(c.o.ConnWindow))

	_, _ = c.bw.WriteString(http2.ClientPreface)
	_ = c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.o.StreamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.o.MaxHeaderListSize},
	)
	if c.o.ConnWindow > initialWindow {
		_ = c.fr.WriteWindowUpdate(0, uint32(c.o.ConnWindow-initialWindow))
	}
	if err := c.bw.Flush(); err != nil {
		return nil, &connError{ep.addr, fmt.Errorf("writing the preface: %w", err)}
	}
	p.wg.Add(1)
	go c.readLoop()
	if c.o.PingInterval > 0 {
		c.pingTimer = time.AfterFunc(c.o.PingInterval, c.keepalive)
	}
	if c.o.MaxConnDuration > 0 {
		c.ageTimer = time.AfterFunc(c.o.MaxConnDuration, c.drain)
	}
	c.mu.Lock()
	c.afterStreamLocked() // idle until a request takes it
	c.mu.Unlock()
	return c, nil
}

// awaitSettings waits for the server's first SETTINGS, which say how many
// streams the connection takes and how large they may be.
func (c *conn) awaitSettings() error {
	t := time.NewTimer(c.o.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-c.settingsc:
		c.mu.Lock()
		none := c.maxConcurrent == 0
		c.mu.Unlock()
		if none {
			err := &connError{c.ep.addr, errors.New("the server allows no streams (SETTINGS_MAX_CONCURRENT_STREAMS 0)")}
			c.close(err)
			return err
		}
		return nil
	case <-c.readDone:
		return c.readErr
	case <-c.pool.ctx.Done():
		c.close(ErrClosed)
		return ErrClosed
	case <-t.C:
		err := &connError{c.ep.addr, fmt.Errorf("no SETTINGS from the server within %v", c.o.HandshakeTimeout)}
		c.close(err)
		return err
	}
}

// tryReserve hands out a stream slot when the connection can take one more
// stream; drained reports that it just reached max_requests_per_connection.
func (c *conn) tryReserve(retired bool) (ok, drained bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.draining || c.goAway || uint32(c.active+c.reserved) >= c.maxConcurrent ||
		uint64(c.nextID)+2*uint64(c.reserved) > maxStreamID {
		return false, false
	}
	c.reserved++
	c.started++
	if (c.o.MaxRequestsPerConn > 0 && c.started >= c.o.MaxRequestsPerConn) || retired {
		c.draining = true // this request is its last
		drained = true
	}
	return true, drained
}

// streamDone is what happens once a stream or slot is released.
type streamDone struct{ closeConn, wake bool }

// afterStreamLocked decides, after a stream or slot was released, whether
// the connection closes (drained and empty) or starts its idle timer.
func (c *conn) afterStreamLocked() streamDone {
	d := streamDone{wake: c.ep.waiters.Load() > 0}
	if c.closed || c.active+c.reserved > 0 {
		return d
	}
	if c.draining || c.goAway {
		d.closeConn = true
		return d
	}
	c.idleSince = time.Now()
	if c.o.IdleTimeout > 0 && !c.idleArmed {
		c.idleArmed = true
		if c.idleTimer == nil {
			c.idleTimer = time.AfterFunc(c.o.IdleTimeout, c.idleCheck)
		} else {
			c.idleTimer.Reset(c.o.IdleTimeout)
		}
	}
	return d
}

func (c *conn) afterStream(d streamDone) {
	if d.closeConn {
		c.closeGracefully(errDrained)
	}
	if d.wake {
		c.pool.wake(c.ep)
	}
}

// idleCheck closes the connection once it has had no stream for the idle
// timeout.
func (c *conn) idleCheck() {
	c.mu.Lock()
	c.idleArmed = false
	if c.closed || c.active+c.reserved > 0 {
		c.mu.Unlock()
		return // busy: the next idle period arms the timer again
	}
	if left := c.o.IdleTimeout - time.Since(c.idleSince); left > 0 {
		c.idleArmed = true
		c.idleTimer.Reset(left)
		c.mu.Unlock()
		return
	}
	c.draining = true // no reservation from now on
	c.mu.Unlock()
	c.closeGracefully(errIdle)
}

// drain stops new streams (max_connection_duration, pool retired); the
// connection closes when its last stream ends.
func (c *conn) drain() {
	c.mu.Lock()
	if c.closed || c.draining {
		c.mu.Unlock()
		return
	}
	c.draining = true
	empty := c.active+c.reserved == 0
	c.mu.Unlock()
	c.pool.unlist(c)
	if empty {
		c.closeGracefully(errDrained)
	}
}

// drainIfIdle marks a connection without streams or reservations as
// draining (the caller closes it) and reports whether it was.
func (c *conn) drainIfIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.active+c.reserved > 0 {
		return false
	}
	c.draining = true
	return true
}

// keepalive runs every PingInterval: a connection that read no frame for a
// whole interval gets a PING, and is closed when the next run finds it
// unanswered.
func (c *conn) keepalive() {
	if c.sawFrame.Swap(false) {
		c.mu.Lock()
		c.pingOut = false
		closed := c.closed
		c.mu.Unlock()
		if !closed {
			c.pingTimer.Reset(c.o.PingInterval)
		}
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.pingOut {
		c.mu.Unlock()
		c.close(&connError{c.ep.addr, errPingTimeout})
		return
	}
	c.pingOut = true
	c.pingSeq++
	for i := range c.pingData {
		c.pingData[i] = byte(c.pingSeq >> (8 * i))
	}
	data := c.pingData
	c.mu.Unlock()
	c.queueControl(func(q *controlFrames) { q.ping, q.hasPing = data, true })
	c.kickControl()
	c.pingTimer.Reset(c.o.PingTimeout)
}

// pingAcked clears the outstanding keepalive PING when data matches.
func (c *conn) pingAcked(data [8]byte) {
	c.mu.Lock()
	if c.pingOut && data == c.pingData {
		c.pingOut = false
	}
	c.mu.Unlock()
}

// closeGracefully says GOAWAY (best effort, never blocking on a busy
// writer) and closes.
func (c *conn) closeGracefully(why error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	if c.wmu.TryLock() {
		if c.werr == nil {
			_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			_ = c.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			_ = c.bw.Flush()
		}
		c.wmu.Unlock()
	}
	c.close(why)
}

// close ends the connection: every open stream fails with err, the socket
// closes (which ends the read loop) and the pool forgets it.
func (c *conn) close(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = err
	streams := make([]*stream, 0, len(c.streams))
	for _, s := range c.streams {
		streams = append(streams, s)
	}
	for _, s := range c.flowWaiters {
		s.wakeSend()
	}
	c.flowWaiters = nil
	for _, t := range []*time.Timer{c.idleTimer, c.ageTimer, c.pingTimer} {
		if t != nil {
			t.Stop()
		}
	}
	c.mu.Unlock()
	_ = c.nc.Close()
	for _, s := range streams {
		s.abort(err, 0, false)
	}
	c.pool.remove(c)
}
