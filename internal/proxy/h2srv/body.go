package h2srv

import (
	"io"
	"sync"

	"golang.org/x/net/http2"
)

const chunkSize = 16 << 10 // pooled body buffers (request and response)

// requestBody is a request's r.Body: DATA the read loop received and the
// handler has not read yet. Flow control is returned as the handler reads,
// in batches of a quarter window: the client never has more in flight than
// the stream's window, and the connection's window bounds the sum.
type requestBody struct {
	st   *stream
	mu   sync.Mutex
	cond sync.Cond

	// Received data not read yet: pooled chunks of chunkSize, filled in
	// order; it starts at (*segs[0])[r:]. A list of fixed chunks, not one
	// growing buffer: a body that arrives faster than the handler reads
	// holds up to the stream window without allocating (memory stays flat
	// under a 50 MiB upload).
	segs    []*[]byte
	segsBuf [2]*[]byte // segs' array while it is short
	r       int
	size    int // bytes buffered

	err           error // once set, no more data comes (io.EOF, reset, deadline)
	closed        bool  // the handler closed it, or returned
	needsContinue bool  // send 100 Continue at the first Read
	trailer       map[string][]string
	copied        bool

	avail      int64 // stream receive window the client has left
	unsent     int64 // read but not yet returned
	threshold  int64
	remoteDone bool
	waiters    int
}

func (b *requestBody) init(st *stream, needsContinue bool, window int64) {
	b.st, b.needsContinue, b.avail = st, needsContinue, window
	b.threshold = max(window/4, 1)
	b.cond.L = &b.mu
}

// write adds a DATA frame's data (read loop); length is the frame's flow
// controlled length (data and padding). The padding is returned at once.
func (b *requestBody) write(c *conn, data []byte, length int64) error {
	b.mu.Lock()
	if length > b.avail {
		b.mu.Unlock()
		return streamError(b.st.id, http2.ErrCodeFlowControl)
	}
	b.avail -= length
	if b.closed || b.err != nil {
		b.mu.Unlock()
		c.returnWindow(nil, 0, length, true) // dropped
		return nil
	}
	if len(data) > 0 {
		b.appendLocked(c, data)
		if b.waiters > 0 {
			b.cond.Signal()
		}
	}
	pad := length - int64(len(data))
	var inc int64
	if pad > 0 {
		inc = b.consumedLocked(pad)
	}
	b.mu.Unlock()
	if pad > 0 {
		c.returnWindow(b.st, inc, pad, true)
	}
	return nil
}

func (b *requestBody) appendLocked(c *conn, data []byte) {
	b.size += len(data)
	for len(data) > 0 {
		var last *[]byte
		if n := len(b.segs); n > 0 && len(*b.segs[n-1]) < cap(*b.segs[n-1]) {
			last = b.segs[n-1]
		} else {
			last = c.s.chunks.Get().(*[]byte)
			*last = (*last)[:0]
			if b.segs == nil {
				b.segs = b.segsBuf[:0]
			}
			b.segs = append(b.segs, last)
		}
		m := min(len(data), cap(*last)-len(*last))
		*last = append(*last, data[:m]...)
		data = data[m:]
	}
}

// readLocked copies buffered data into p, giving chunks back to the pool
// as they empty.
func (b *requestBody) readLocked(p []byte) int {
	n := 0
	for n < len(p) && b.size > 0 {
		first := b.segs[0]
		m := copy(p[n:], (*first)[b.r:])
		n += m
		b.r += m
		b.size -= m
		if b.r == len(*first) {
			b.dropFirstLocked()
		}
	}
	return n
}

func (b *requestBody) dropFirstLocked() {
	first := b.segs[0]
	*first = (*first)[:0]
	b.st.c.s.chunks.Put(first)
	copy(b.segs, b.segs[1:])
	b.segs[len(b.segs)-1] = nil
	b.segs = b.segs[:len(b.segs)-1]
	b.r = 0
}

// putLocked gives every chunk back (its data is gone).
func (b *requestBody) putLocked() {
	for len(b.segs) > 0 {
		b.dropFirstLocked()
	}
	b.size = 0
}

// consumedLocked counts n bytes read and returns the stream window to
// give back now (0: not yet, or the client has ended the stream).
func (b *requestBody) consumedLocked(n int64) int64 {
	b.unsent += n
	if b.remoteDone || b.unsent < b.threshold {
		return 0
	}
	inc := b.unsent
	b.unsent, b.avail = 0, b.avail+inc
	return inc
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	for b.size == 0 {
		switch {
		case b.err != nil:
			err := b.err
			if err == io.EOF {
				b.copyTrailerLocked()
			}
			b.mu.Unlock()
			return 0, err
		case b.closed:
			b.mu.Unlock()
			return 0, errBodyClosed
		case b.needsContinue:
			b.needsContinue = false
			b.mu.Unlock()
			b.st.rw.writeContinue()
			b.mu.Lock()
		default:
			b.waiters++
			b.cond.Wait()
			b.waiters--
		}
	}
	n := b.readLocked(p)
	inc := b.consumedLocked(int64(n))
	b.mu.Unlock()
	b.st.activity.Add(1)
	b.st.c.returnWindow(b.st, inc, int64(n), false)
	return n, nil
}

// Buffered reports how many bytes Read returns without blocking, and
// whether they are the rest of the body: the client ended the stream, so
// its trailers are in too. The body is thereby an h2cli.BufferedBody: a
// request the client sent whole goes upstream with its HEADERS in one
// write.
func (b *requestBody) Buffered() (n int, complete bool) {
	b.mu.Lock()
	n, complete = b.size, b.err == io.EOF && !b.closed
	b.mu.Unlock()
	return n, complete
}

// Close discards what is buffered; the client's further DATA is dropped
// (and the connection window returned).
func (b *requestBody) Close() error {
	b.close()
	return nil
}

func (b *requestBody) close() {
	if b.st == nil {
		return // HEADERS ended the stream: r.Body is http.NoBody
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	n := b.discardLocked()
	b.mu.Unlock()
	b.st.c.returnWindow(nil, 0, n, false)
}

func (b *requestBody) discardLocked() int64 {
	n := int64(b.size)
	b.putLocked()
	if b.waiters > 0 {
		b.cond.Broadcast()
	}
	return n
}

// end: the client ended the stream (read loop); trailer holds the
// declared trailers it sent.
func (b *requestBody) end(trailer map[string][]string) {
	if b.st == nil {
		return
	}
	b.mu.Lock()
	b.remoteDone = true
	b.trailer = trailer
	if b.err == nil {
		b.err = io.EOF
	}
	if b.waiters > 0 {
		b.cond.Broadcast()
	}
	b.mu.Unlock()
}

// fail ends the body with err (stream reset, connection gone): buffered
// data is dropped.
func (b *requestBody) fail(err error) {
	if b.st == nil {
		return
	}
	b.mu.Lock()
	b.err = err
	n := b.discardLocked()
	b.mu.Unlock()
	b.st.c.returnWindow(nil, 0, n, false)
}

// expire ends the body at a read deadline; data already buffered can
// still be read.
func (b *requestBody) expire(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	if b.waiters > 0 {
		b.cond.Broadcast()
	}
	b.mu.Unlock()
}

func (b *requestBody) copyTrailerLocked() {
	if b.copied || b.trailer == nil {
		return
	}
	b.copied = true
	for k, v := range b.trailer {
		b.st.req.Trailer[k] = v
	}
}

// returnWindow gives back flow control: streamInc to st's window (0:
// none), connN bytes to the connection's, batched. From the read loop the
// frames leave with its next flush.
func (c *conn) returnWindow(st *stream, streamInc, connN int64, readLoop bool) {
	var connInc int64
	if connN > 0 {
		u := c.inUnsent.Add(connN)
		if u >= int64(c.s.cfg.ConnWindowSize)/4 && c.inUnsent.CompareAndSwap(u, 0) {
			connInc = u
			c.inAvail.Add(u)
		}
	}
	if streamInc == 0 && connInc == 0 {
		return
	}
	w := &c.w
	w.acquire()
	if connInc > 0 {
		w.writeWindowUpdate(0, uint32(connInc))
	}
	if streamInc > 0 {
		w.writeWindowUpdate(st.id, uint32(streamInc))
	}
	if readLoop {
		w.releaseLater()
	} else {
		w.release()
	}
}
