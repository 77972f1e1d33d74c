package proxy

import (
	"errors"
	"io"
	"sync"

	"github.com/trellis-mesh/trellis/internal/proxy/h2cli"
	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

var errAttemptAbandoned = errors.New("request body: attempt abandoned for a retry")

// replayBody lets the net/http path resend a request body on retries without
// waiting for it first: the body streams to the current attempt as it
// arrives and is recorded up to retry.MaxBufferedBody, so a retry replays the
// recording and then continues from the caller. A body that outgrows the
// limit streams on but can no longer be replayed (no more retries), as with
// Envoy's retry buffer limit.
//
// Each attempt reads through its own replayReader; starting an attempt
// abandons the readers of earlier ones. Reads from the caller's body happen
// one at a time; a reader that needs data another reader is fetching waits
// for it.
type replayBody struct {
	src io.ReadCloser

	mu       sync.Mutex
	cond     sync.Cond
	buf      []byte
	overflow bool
	err      error // the source's terminal error (io.EOF at the end)
	reading  bool  // a reader is inside src.Read
	gen      int
	broken   int // a generation that lost data to an overflow while abandoned
}

func newReplayBody(src io.ReadCloser) *replayBody {
	b := &replayBody{src: src}
	b.cond.L = &b.mu
	return b
}

// reader starts a new attempt's view of the body, or reports false when the
// body can no longer be replayed.
func (b *replayBody) reader() (io.ReadCloser, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.overflow && b.gen > 0 {
		return nil, false
	}
	b.gen++
	b.cond.Broadcast()
	return &replayReader{b: b, gen: b.gen}, true
}

// replayable reports whether another attempt could still get the whole body.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.overflow
}

// getBody is http.Request.GetBody: the transport's own resends get a new
// attempt's view too.
func (b *replayBody) getBody() (io.ReadCloser, error) {
	r, ok := b.reader()
	if !ok {
		return nil, errors.New("request body: too large to resend")
	}
	return r, nil
}

type replayReader struct {
	b      *replayBody
	gen    int
	pos    int
	closed bool
}

func (r *replayReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		switch {
		case r.closed:
			return 0, io.ErrClosedPipe
		case r.gen != b.gen || r.gen == b.broken:
			return 0, errAttemptAbandoned
		case r.pos < len(b.buf) && !b.overflow:
			n := copy(p, b.buf[r.pos:])
			r.pos += n
			return n, nil
		case b.err != nil:
			return 0, b.err
		case b.reading:
			b.cond.Wait()
			continue
		}
		if len(p) == 0 {
			return 0, nil
		}
		b.reading = true
		b.mu.Unlock()
		n, err := b.src.Read(p)
		b.mu.Lock()
		b.reading = false
		b.cond.Broadcast()
		if err != nil {
			b.err = err
		}
		if n > 0 && !b.overflow {
			if len(b.buf)+n <= retry.MaxBufferedBody {
				b.buf = append(b.buf, p[:n]...)
			} else {
				b.overflow = true
				b.buf = nil
				if r.gen != b.gen {
					// The current attempt never sees these bytes.
					b.broken = b.gen
				}
			}
		}
		if r.gen != b.gen {
			continue // recorded for the current attempt; this one is over
		}
		if !b.overflow {
			r.pos = len(b.buf)
		}
		if n > 0 {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// Buffered reports what Read returns without blocking (the recording
// still to replay, and what the caller's body has buffered, when it can
// say), and whether that is the rest of the body: the reader is an
// h2cli.BufferedBody when the caller's body is one.
func (r *replayReader) Buffered() (int, bool) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.closed || r.gen != b.gen || r.gen == b.broken || b.overflow {
		return 0, false
	}
	n := len(b.buf) - r.pos
	switch {
	case b.err == io.EOF:
		return n, true
	case b.err != nil || b.reading:
		return n, false
	}
	bb, ok := b.src.(h2cli.BufferedBody)
	if !ok {
		return n, false
	}
	m, complete := bb.Buffered()
	return n + m, complete
}

// Close ends this attempt's view; the caller's body stays open for retries
// (the server closes it when the handler returns).
func (r *replayReader) Close() error {
	r.b.mu.Lock()
	r.closed = true
	r.b.cond.Broadcast()
	r.b.mu.Unlock()
	return nil
}
