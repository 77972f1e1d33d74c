package h2cli

import (
	"io"
	"sync"
)

// responseBody is a response's Body: the stream's buffered DATA, with
// flow control returned to the server as it is read.
type responseBody struct{ s *stream }

// Read returns buffered data, then io.EOF (with the trailers in
// res.Trailer) or the stream's error.
func (b responseBody) Read(p []byte) (int, error) {
	s := b.s
	s.mu.Lock()
	for s.buf.size == 0 && s.readErr == nil {
		if len(p) == 0 {
			s.mu.Unlock()
			return 0, nil
		}
		s.mu.Unlock()
		select {
		case <-s.recvWake:
		case <-s.rq.ctx.Done():
			err := s.rq.ctx.Err()
			s.cancel(err)
			return 0, err
		}
		s.mu.Lock()
	}
	if s.buf.size == 0 {
		err := s.readErr
		if err == io.EOF {
			s.setTrailerLocked()
		}
		s.mu.Unlock()
		return 0, err
	}
	n := s.buf.read(p)
	var streamWU int64
	if !s.recvEnded {
		s.unacked += int64(n)
		if s.unacked >= int64(s.c.o.StreamWindow)/2 {
			streamWU, s.unacked = s.unacked, 0
			s.inAvail += streamWU
		}
	}
	var err error
	if s.buf.size == 0 && s.readErr == io.EOF {
		err = io.EOF
		s.setTrailerLocked()
		s.buf.free()
	}
	s.mu.Unlock()
	s.c.consumed(int64(n), s.id, streamWU)
	return n, err
}

// Buffered reports how many bytes Read returns without blocking, and
// whether they are the rest of the body (the server ended the stream).
// It makes the body a BufferedBody: a proxy copying it flushes
// only when it is about to wait.
func (b responseBody) Buffered() (int, bool) {
	s := b.s
	s.mu.Lock()
	n, complete := s.buf.size, s.readErr == io.EOF
	s.mu.Unlock()
	return n, complete
}

// setTrailerLocked puts the received trailers in res.Trailer, before
// io.EOF is returned (as net/http does).
func (s *stream) setTrailerLocked() {
	if s.trailerSet || s.res == nil {
		return
	}
	s.trailerSet = true
	if len(s.trailer) == 0 {
		return
	}
	if s.res.Trailer == nil {
		s.res.Trailer = s.trailer
		return
	}
	for k, vv := range s.trailer {
		s.res.Trailer[k] = vv
	}
}

// Close discards what was not read; a stream still receiving is reset
// (CANCEL).
func (b responseBody) Close() error {
	s := b.s
	s.mu.Lock()
	if s.bodyClosed {
		s.mu.Unlock()
		return nil
	}
	s.bodyClosed = true
	unread := int64(s.buf.size)
	s.buf.free()
	if s.readErr == nil || s.readErr == io.EOF {
		s.readErr = errBodyClosed
	}
	s.mu.Unlock()
	if unread > 0 {
		s.c.consumed(unread, 0, 0)
	}
	// A stream still receiving is reset; so is one whose response is
	// complete but whose request body is still being sent: nobody wants
	// the exchange any more. (No-op on a closed stream.)
	s.cancel(errBodyClosed)
	return nil
}

// consumed returns n read bytes of the connection's window to the server
// (batched: half the window at a time), with a stream's increment.
func (c *conn) consumed(n int64, id uint32, streamIncr int64) {
	var connIncr int64
	if n > 0 && c.inUnacked.Add(n) >= int64(c.o.ConnWindow)/2 {
		connIncr = c.inUnacked.Swap(0)
		c.inAvail.Add(connIncr)
	}
	if connIncr <= 0 && streamIncr <= 0 {
		return
	}
	c.queueWindowUpdate(uint32(max(connIncr, 0)), id, uint32(streamIncr))
	c.kickControl()
}

// missingBody is the body of a response that ended with its headers
// although its Content-Length promised more.
type missingBody struct{}

func (missingBody) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }
func (missingBody) Close() error             { return nil }

var _ io.ReadCloser = responseBody{}

// dataBuffer holds a stream's received DATA in pooled chunks.
type dataBuffer struct {
	chunks []*[]byte
	first  [2]*[]byte // chunks' backing array while it is short
	r, w   int        // read offset in chunks[0], write offset in the last
	size   int
}

var chunkPools = [...]struct {
	size int
	pool sync.Pool
}{{size: 1 << 10}, {size: 4 << 10}, {size: 16 << 10}}

// write copies p; hint is how much more is expected (to size chunks).
func (b *dataBuffer) write(p []byte, hint int64) {
	for len(p) > 0 {
		if len(b.chunks) == 0 || b.w == len(*b.chunks[len(b.chunks)-1]) {
			if b.chunks == nil {
				b.chunks = b.first[:0]
			}
			b.chunks = append(b.chunks, getChunk(max(int64(len(p)), hint)))
			b.w = 0
		}
		last := *b.chunks[len(b.chunks)-1]
		n := copy(last[b.w:], p)
		b.w += n
		b.size += n
		p = p[n:]
	}
}

func (b *dataBuffer) read(p []byte) int {
	n := 0
	for len(p) > 0 && b.size > 0 {
		firstp := b.chunks[0]
		first := *firstp
		end := len(first)
		if len(b.chunks) == 1 {
			end = b.w
		}
		m := copy(p, first[b.r:end])
		b.r += m
		b.size -= m
		n += m
		p = p[m:]
		if b.r < end {
			continue
		}
		b.r = 0
		if len(b.chunks) == 1 {
			b.w = 0 // keep the chunk for what comes next
			break
		}
		putChunk(firstp)
		b.chunks[0] = nil
		b.chunks = b.chunks[1:]
	}
	return n
}

// free returns every chunk to its pool.
func (b *dataBuffer) free() {
	for i, ch := range b.chunks {
		putChunk(ch)
		b.chunks[i] = nil
	}
	b.chunks = nil
	b.r, b.w, b.size = 0, 0, 0
}

func getChunk(want int64) *[]byte {
	i := 0
	for i < len(chunkPools)-1 && want > int64(chunkPools[i].size) {
		i++
	}
	if p, ok := chunkPools[i].pool.Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, chunkPools[i].size)
	return &b
}

func putChunk(p *[]byte) {
	for i := range chunkPools {
		if cap(*p) == chunkPools[i].size {
			*p = (*p)[:cap(*p)]
			chunkPools[i].pool.Put(p)
			return
		}
	}
}
