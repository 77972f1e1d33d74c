package h2srv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/trellis-mesh/trellis/internal/proxy/resetguard"
)

// ErrStreamIdle is the cause of a request's context cancelled by the
// stream idle timeout, and what reading its body returns then.
var ErrStreamIdle = errors.New("h2srv: stream idle timeout")

var (
	errNoHandler       = errors.New("h2srv: ConnOpts.Handler is nil")
	errAborted         = errors.New("h2srv: connection aborted")
	errConnClosed      = errors.New("h2srv: connection closed")
	errClientReset     = errors.New("h2srv: stream reset by the client")
	errStreamClosed    = errors.New("h2srv: stream closed")
	errBadPreface      = errors.New("h2srv: bogus client preface")
	errWriteTimeout    = errors.New("h2srv: write blocked past the write timeout")
	errHandlerQueue    = errors.New("h2srv: too many handlers waiting (streams reset faster than handled)")
	errRapidReset      = errors.New("h2srv: too many premature stream resets")
	errReadHeadTimeout = errors.New("h2srv: no client preface and SETTINGS within the read header timeout")
	errHandlerDone     = errors.New("h2srv: ResponseWriter used after the handler returned")
	errBodyClosed      = errors.New("http: invalid Read on closed Body")
	errTooLong         = errors.New("h2srv: handler wrote more than the declared Content-Length")
)

const (
	readBufSize   = 16 << 10
	lingerTimeout = time.Second // reading what the client still sends before the close
	lingerMax     = 1 << 20
	closeTimeout  = time.Second // writing the last frames of a closing connection
)

var aLongTimeAgo = time.Unix(1, 0)

// Why the read loop was woken (conn.stop).
const (
	stopNone int32 = iota
	stopGraceful
	stopAbort
)

// conn is one served connection. The read loop (ServeConn's goroutine)
// owns the Framer and the fields marked "read loop"; smu guards the stream
// table and the handler queue; w.mu the write side (writer.go). Lock order:
// w.mu before smu; a stream's body lock is never held with either.
type conn struct {
	s      *Server
	nc     net.Conn
	h      http.Handler
	tls    *tls.ConnectionState
	remote string
	// base is the parent of the streams' contexts: the connection's own
	// cancelCtx, so that opening and ending a stream locks this
	// connection's context, not one every connection shares.
	base       context.Context
	baseCancel context.CancelFunc
	guard      *resetguard.Guard

	br   *bufio.Reader
	rd   frameReader
	fr   *http2.Framer
	meta metaReader
	w    connWriter

	// read loop
	prefaceRead bool
	sawSettings bool
	unacked     int // our SETTINGS frames not yet acknowledged
	canon       map[string]string

	// connection receive window: avail is what the client may still send
	// (read loop takes, readers give back), unsent what was consumed but
	// not yet returned with WINDOW_UPDATE.
	inAvail  atomic.Int64
	inUnsent atomic.Int64

	smu      sync.Mutex
	streams  map[uint32]*stream
	maxID    uint32 // highest client stream id seen (written by the read loop under smu)
	goAwayID uint32 // last stream served once draining
	draining bool
	closing  bool // no new streams, no new handlers
	running  int  // handler goroutines running a handler
	queue    []*stream
	// Handler goroutines done with their stream wait for the next one
	// (workers.go): idle of them are receiving on workc.
	idle  int
	workc chan *stream
	// streams opened as of the ticker's last look at idle workers
	idleSeen uint64
	opened   uint64 // streams opened so far

	recentResets [16]uint32 // streams the server reset lately (noteResetLocked)
	recentNext   uint32

	handlers sync.WaitGroup
	drainCtx context.Context // ServeConn's: done starts a drain
	stop     atomic.Int32
	ticker   ticker
}

func (s *Server) newConn(nc net.Conn, opts *ConnOpts) *conn {
	c := &conn{
		s: s, nc: nc, h: opts.Handler, tls: opts.TLS, remote: opts.RemoteAddr,
		guard:   s.cfg.ResetGuard(),
		streams: make(map[uint32]*stream),
		canon:   make(map[string]string),
		workc:   make(chan *stream),
	}
	if c.remote == "" && nc.RemoteAddr() != nil {
		c.remote = nc.RemoteAddr().String()
	}
	base := opts.BaseContext
	if base == nil {
		base = context.Background()
	}
	base = context.WithValue(base, http.ServerContextKey, s.httpSrv)
	base = context.WithValue(base, http.LocalAddrContextKey, nc.LocalAddr())
	c.base, c.baseCancel = context.WithCancel(base)
	var src io.Reader = nc
	if len(opts.Buffered) > 0 {
		src = io.MultiReader(bytes.NewReader(opts.Buffered), nc)
	}
	if br, ok := s.readers.Get().(*bufio.Reader); ok {
		br.Reset(src)
		c.br = br
	} else {
		c.br = bufio.NewReaderSize(src, readBufSize)
	}
	c.w.init(nc, &s.writeBufs, func(error) { c.closeSocket() })
	c.rd.init(c.br, s.ctl, s.maxContinuations, c.w.dataSent.Load)
	c.fr = http2.NewFramer(nil, &c.rd)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(s.cfg.MaxReadFrameSize)
	c.fr.MaxHeaderListSize = uint32(s.cfg.MaxHeaderBytes)
	c.meta.init(c.fr, uint32(s.cfg.MaxHeaderBytes))
	c.inAvail.Store(int64(s.cfg.ConnWindowSize))
	c.prefaceRead = opts.PrefaceRead
	return c
}

// release returns the connection's pooled buffers once it is over.
func (c *conn) release() {
	c.baseCancel()
	c.ticker.stop()
	c.br.Reset(nil)
	c.s.readers.Put(c.br)
}

// serve is the read loop.
func (c *conn) serve() error {
	cfg := &c.s.cfg
	c.w.acquire()
	c.w.writeSettings(
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: cfg.MaxReadFrameSize},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: cfg.MaxConcurrentStreams},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(cfg.MaxHeaderBytes)},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(cfg.InitialWindowSize)},
	)
	if cfg.ConnWindowSize > initialWindow {
		c.w.writeWindowUpdate(0, uint32(cfg.ConnWindowSize-initialWindow))
	}
	c.w.release()
	c.unacked = 1
	if cfg.ReadHeaderTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(cfg.ReadHeaderTimeout))
	}
	// A drain writes GOAWAY: only after the SETTINGS above.
	stopDrain := context.AfterFunc(c.drainCtx, c.startDrain)
	defer stopDrain()
	if err := c.readPreface(); err != nil {
		if c.stop.Load() == stopGraceful { // drained before the client spoke
			c.lingerClose(errConnClosed)
			return nil
		}
		c.closeNow(err)
		return err
	}
	c.ticker.start(c)
	for {
		if c.rd.blocking() {
			c.w.flushOwed()
		}
		f, err := c.readFrame()
		if err == nil {
			err = c.process(f)
		}
		if err != nil {
			if end, rerr := c.handleError(f, err); end {
				return rerr
			}
		}
	}
}

func (c *conn) readPreface() error {
	if c.prefaceRead {
		return nil
	}
	var buf [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, buf[:]); err != nil {
		return fmt.Errorf("h2srv: reading the client preface: %w", err)
	}
	if string(buf[:]) != http2.ClientPreface {
		c.w.acquire()
		c.w.writeGoAway(0, http2.ErrCodeProtocol, "bogus preface")
		c.w.release()
		return errBadPreface
	}
	return nil
}

// handleError deals with an error of reading or processing a frame (f may
// be nil). end: the read loop is over; err is what ServeConn returns.
func (c *conn) handleError(f http2.Frame, err error) (end bool, _ error) {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &se):
		if rerr := c.streamError(se); rerr != nil {
			return c.handleError(nil, rerr)
		}
		return false, nil
	case c.stop.Load() == stopGraceful:
		c.lingerClose(errConnClosed)
		return true, nil
	case c.stop.Load() == stopAbort:
		c.closeNow(errAborted)
		return true, nil
	case errors.Is(err, errControlFlood):
		return true, c.abuse(AbuseControlFlood, err)
	case errors.Is(err, errContinuationFlood):
		return true, c.abuse(AbuseContinuation, err)
	case errors.Is(err, errRapidReset):
		return true, c.abuse(AbuseRapidReset, err)
	case errors.Is(err, errHandlerQueue):
		return true, c.abuse(AbuseHandlerQueue, err)
	case errors.As(err, &ce):
		if _, ok := f.(*http2.MetaHeadersFrame); ok && http2.ErrCode(ce) == http2.ErrCodeProtocol {
			c.s.stats.ConnAbuse(AbuseHeaderBlock)
		}
		detail := ""
		if d := c.fr.ErrorDetail(); d != nil {
			detail = d.Error()
		}
		c.goAway(http2.ErrCode(ce), detail)
		return true, fmt.Errorf("h2srv: connection error %v %s", http2.ErrCode(ce), detail)
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.goAway(http2.ErrCodeFrameSize, "frame too large")
		return true, err
	case c.rd.err != nil: // the connection itself: EOF, reset, deadline
		if !c.sawSettings && isTimeout(c.rd.err) {
			err = errReadHeadTimeout
		} else if errors.Is(c.rd.err, io.EOF) || errors.Is(c.rd.err, net.ErrClosed) {
			err = nil
		}
		c.closeNow(errConnClosed)
		return true, err
	case errors.Is(err, io.ErrUnexpectedEOF): // a frame too short for its fields
		c.goAway(http2.ErrCodeFrameSize, "frame too short")
		return true, err
	default:
		c.goAway(http2.ErrCodeProtocol, "")
		return true, err
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// abuse ends a connection with GOAWAY ENHANCE_YOUR_CALM.
func (c *conn) abuse(why Abuse, err error) error {
	c.s.stats.ConnAbuse(why)
	opened, premature := c.guard.Counts()
	c.s.log.Warn("closing abusive HTTP/2 connection", "remote", c.remote, "reason", string(why),
		"streams", opened, "premature_resets", premature)
	c.goAway(http2.ErrCodeEnhanceYourCalm, string(why))
	return err
}

// goAway ends the connection after a connection error: GOAWAY, every
// stream cancelled, then the close.
func (c *conn) goAway(code http2.ErrCode, debug string) {
	c.smu.Lock()
	c.closing = true // the ticker stops: the deadline bounds the last writes
	last := c.maxID
	c.smu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
	c.w.acquire()
	c.w.writeGoAway(last, code, debug)
	c.w.release()
	c.lingerClose(errConnClosed)
}

// startDrain begins a graceful shutdown (ServeConn's ctx, a GOAWAY from
// the client, the idle timeout, "Connection: close"): GOAWAY with the last
// stream id, then the close once no stream is left.
func (c *conn) startDrain() {
	c.smu.Lock()
	if c.draining || c.closing {
		c.smu.Unlock()
		return
	}
	c.draining = true
	c.goAwayID = c.maxID
	idle := len(c.streams) == 0
	c.smu.Unlock()
	c.w.acquire()
	c.w.writeGoAway(c.goAwayID, http2.ErrCodeNo, "")
	c.w.release()
	if idle {
		c.stopReading(stopGraceful)
	}
}

// stopReading wakes the read loop, which then closes the connection.
func (c *conn) stopReading(why int32) {
	if c.stop.CompareAndSwap(stopNone, why) {
		_ = c.nc.SetReadDeadline(aLongTimeAgo)
	}
}

// abort closes the connection at once (ConnOpts.Abort, a stuck write).
func (c *conn) abort(err error) {
	c.stop.CompareAndSwap(stopNone, stopAbort)
	c.closeSocket()
}

// lingerClose ends the connection in order: the last frames flushed, the
// write side shut, what the client still sends read and dropped for a
// moment (closing with unread data would reset the connection and could
// destroy the frames just sent), then the close.
func (c *conn) lingerClose(err error) {
	c.failStreams(err)
	// Before the lock: a writer stuck on a client that does not read holds
	// it, and the ticker no longer watches a closing connection.
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
	c.w.mu.Lock()
	c.w.flushLocked()
	if c.w.err == nil {
		c.w.err = err
	}
	c.w.mu.Unlock()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		if tc, ok := c.nc.(*tls.Conn); ok {
			if ncw, ok := tc.NetConn().(interface{ CloseWrite() error }); ok {
				_ = ncw.CloseWrite()
			}
		}
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c.br, lingerMax)
	c.closeSocket()
}

// closeNow closes at once (the client went away, Abort).
func (c *conn) closeNow(err error) {
	c.closeSocket()
	c.failStreams(err)
}

// closeSocket closes the transport. A *tls.Conn's Close would first send
// close_notify, which blocks on a client that does not read.
func (c *conn) closeSocket() {
	if tc, ok := c.nc.(*tls.Conn); ok {
		_ = tc.NetConn().Close()
		return
	}
	_ = c.nc.Close()
}

// failStreams ends every stream: contexts cancelled, bodies failed,
// writers stopped, queued handlers dropped.
func (c *conn) failStreams(err error) {
	c.w.mu.Lock()
	if c.w.err == nil {
		c.w.err = err
	}
	if c.w.condWaiters > 0 {
		c.w.cond.Broadcast()
	}
	c.w.mu.Unlock()
	c.smu.Lock()
	c.closing = true
	open := make([]*stream, 0, len(c.streams))
	for _, st := range c.streams {
		open = append(open, st)
		st.inTable = false
	}
	clear(c.streams)
	c.queue = nil
	idle := c.idle
	c.idle = 0
	c.smu.Unlock()
	c.stopWorkers(idle)
	for _, st := range open {
		st.cancel(nil)
		st.body.fail(err)
	}
}
