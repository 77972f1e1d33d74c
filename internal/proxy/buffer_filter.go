package proxy

// The buffer filter (envoy.filters.http.buffer): the whole request body is
// read before the request goes upstream, and a body larger than
// max_request_bytes is answered 413 by the proxy, as Envoy's connection
// manager does when a filter's buffer overflows.
//
//	Content-Length > max ─────────────► 413 at once, body unread (HTTP/1.1: connection closed)
//	body of unknown length ─ read ≤ max+1 ─► beyond max: 413
//	whole body ≤ max ──► upstream gets it with a Content-Length (trailers dropped),
//	                     and a retry can resend it whatever its size
//
// Bodies are read into buffers of the proxy's bodyPool and returned to it
// when the request is done, so memory stays flat under load: a request
// never holds more than max bytes of body. The fast path's part is in
// buffer_filter_h1.go; the net/http path's is here.

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
)

var (
	typeBuffer         = typeURL(&bufferv3.Buffer{})
	typeBufferPerRoute = typeURL(&bufferv3.BufferPerRoute{})
)

// reasonPayloadTooLarge is the x-trellis-reason of a 413 (Envoy's response
// code details for it).
const reasonPayloadTooLarge = "request_payload_too_large"

// bufferIdleTimeout bounds the wait for each read of a body being buffered
// (Envoy's default stream_idle_timeout).
const bufferIdleTimeout = idleTimeout

var errBodyTooLarge = errors.New("request body larger than max_request_bytes")

// bufferPolicy is a Buffer: the HCM's filter config, or a BufferPerRoute's.
type bufferPolicy struct {
	max int64 // max_request_bytes
}

// translateBuffer translates an envoy.extensions.filters.http.buffer.v3.Buffer.
func translateBuffer(b *bufferv3.Buffer) (*bufferPolicy, error) {
	m := b.GetMaxRequestBytes()
	switch {
	case m == nil:
		return nil, fmt.Errorf("max_request_bytes: missing")
	case m.GetValue() == 0:
		return nil, fmt.Errorf("max_request_bytes: 0, want > 0")
	}
	return &bufferPolicy{max: int64(m.GetValue())}, nil
}

// translateBufferPerRoute translates a BufferPerRoute into fc: disabled, or
// its own Buffer.
func translateBufferPerRoute(b *bufferv3.BufferPerRoute, fc *filterConfig) error {
	switch o := b.GetOverride().(type) {
	case *bufferv3.BufferPerRoute_Disabled:
		if !o.Disabled {
			return fmt.Errorf("disabled: false, want true or a buffer")
		}
		fc.disabled = true
	case *bufferv3.BufferPerRoute_Buffer:
		bp, err := translateBuffer(o.Buffer)
		if err != nil {
			return fmt.Errorf("buffer.%w", err)
		}
		fc.buffer = bp
	default:
		return fmt.Errorf("override: missing, want disabled or buffer")
	}
	return nil
}

// resolveBuffer returns the buffer config in force for a request on rt:
// the most specific BufferPerRoute (route, then virtual host), else the
// HCM's. nil when the filter is disabled there.
func (f *httpFilter) resolveBuffer(rt *route) *bufferPolicy {
	if rt != nil {
		for i := range rt.filters {
			if fc := &rt.filters[i]; fc.name == f.name {
				if fc.disabled {
					return nil
				}
				if fc.buffer != nil {
					return fc.buffer
				}
			}
		}
	}
	return f.buffer
}

// tooLargeReply is the 413 of a body over the limit.
func tooLargeReply(grpc bool) proxyReply {
	return proxyReply{code: http.StatusRequestEntityTooLarge, reason: reasonPayloadTooLarge, body: "Payload Too Large",
		contentType: "text/plain", grpc: grpc, grpcStatus: -1}
}

// bodyPool recycles body buffers by power-of-two size class; buffers above
// maxPooledBody are not kept. The *[]byte boxes the classes hold are
// recycled too, so a steady state allocates nothing.
type bodyPool struct {
	classes [maxBodyClass - minBodyClass + 1]sync.Pool // *[]byte
	boxes   sync.Pool                                  // empty *[]byte
}

const (
	minBodyClass  = 9  // 512 B
	maxBodyClass  = 24 // 16 MiB
	firstChunk    = 16 << 10
	maxPooledBody = 1 << maxBodyClass
)

func bodyClass(n int) int {
	if n <= 1<<minBodyClass {
		return minBodyClass
	}
	return bits.Len(uint(n - 1))
}

// get returns an empty buffer with room for at least n bytes.
func (p *bodyPool) get(n int) []byte {
	c := bodyClass(n)
	if c > maxBodyClass {
		return make([]byte, 0, n)
	}
	if box, ok := p.classes[c-minBodyClass].Get().(*[]byte); ok {
		b := (*box)[:0]
		*box = nil
		p.boxes.Put(box)
		return b
	}
	return make([]byte, 0, 1<<c)
}

// put returns b to the pool if it came from it.
func (p *bodyPool) put(b []byte) {
	c := cap(b)
	if c < 1<<minBodyClass || c > maxPooledBody || c&(c-1) != 0 {
		return
	}
	box, ok := p.boxes.Get().(*[]byte)
	if !ok {
		box = new([]byte)
	}
	*box = b[:0]
	p.classes[bodyClass(c)-minBodyClass].Put(box)
}

// grow returns b with room for at least n bytes, its contents kept.
func (p *bodyPool) grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b
	}
	nb := append(p.get(n), b...)
	p.put(b)
	return nb
}

// readBody reads src to its end into a pooled buffer: at most limit bytes
// (errBodyTooLarge when there are more, after reading at most one more).
// declared is the body's announced length (at most limit), -1 if unknown.
func (p *bodyPool) readBody(src io.Reader, declared, limit int64) ([]byte, error) {
	want, first := limit, min(limit, firstChunk)
	if declared >= 0 {
		want, first = declared, declared
	}
	buf := p.get(int(first))
	for {
		if int64(len(buf)) >= want {
			// The body must end here.
			var probe [1]byte
			n, err := readSome(src, probe[:])
			switch {
			case n > 0:
				err = errBodyTooLarge
			case err == io.EOF:
				return buf, nil
			}
			p.put(buf)
			return nil, err
		}
		if len(buf) == cap(buf) {
			buf = p.grow(buf, int(min(2*int64(cap(buf)), want)))
		}
		n, err := src.Read(buf[len(buf):int(min(int64(cap(buf)), want))])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if declared >= 0 && int64(len(buf)) != declared {
				p.put(buf)
				return nil, io.ErrUnexpectedEOF
			}
			return buf, nil
		}
		if err != nil {
			p.put(buf)
			return nil, err
		}
	}
}

// readSome reads until it gets a byte or an error.
func readSome(src io.Reader, p []byte) (int, error) {
	for {
		n, err := src.Read(p)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// bufferedBody is a request body read whole on the net/http path. Each
// attempt reads it through its own reader; the buffer goes back to the
// pool once the handler (release) and every reader (Close) are done with
// it, as a transport may still read or close a body after RoundTrip.
type bufferedBody struct {
	data []byte
	pool *bodyPool
	refs atomic.Int32
}

func newBufferedBody(data []byte, pool *bodyPool) *bufferedBody {
	b := &bufferedBody{data: data, pool: pool}
	b.refs.Store(1) // the handler's
	return b
}

// release drops the handler's reference (nil: nothing buffered).
func (b *bufferedBody) release() {
	if b != nil {
		b.unref()
	}
}

func (b *bufferedBody) unref() {
	if b.refs.Add(-1) == 0 {
		b.pool.put(b.data)
		b.data = nil
	}
}

// reader implements replayer: every attempt gets the whole body.
func (b *bufferedBody) reader() (io.ReadCloser, bool) {
	b.refs.Add(1)
	return &bufferedReader{b: b}, true
}

func (b *bufferedBody) replayable() bool { return true }

func (b *bufferedBody) getBody() (io.ReadCloser, error) {
	r, _ := b.reader()
	return r, nil
}

// bufferedReader is one attempt's view of a bufferedBody. Read and Close
// may come from different goroutines of a transport.
type bufferedReader struct {
	b      *bufferedBody
	mu     sync.Mutex
	pos    int
	closed bool
}

func (r *bufferedReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, io.ErrClosedPipe
	}
	if r.pos >= len(r.b.data) {
		return 0, io.EOF
	}
	n := copy(p, r.b.data[r.pos:])
	r.pos += n
	return n, nil
}

func (r *bufferedReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.b.unref()
	}
	return nil
}

// bufferingBody reads a body being buffered on the net/http path, each read
// within bufferIdleTimeout (where the server supports read deadlines).
type bufferingBody struct {
	src io.Reader
	rc  *http.ResponseController
}

func (b bufferingBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(bufferIdleTimeout))
	return b.src.Read(p)
}

// replayer is a request body a retry can send again: the recording of
// retrybody.go, or a body the buffer filter read whole.
type replayer interface {
	reader() (io.ReadCloser, bool)
	replayable() bool
	getBody() (io.ReadCloser, error)
}

// bufferHTTP runs the buffer filter bp on the net/http path: a body over
// the limit is answered 413 (mut and rl apply to it); otherwise the body
// is read whole and r carries it with its length. It returns the body
// (nil when there is none), which the caller releases when the request is
// done, and ok=false when it answered or the caller left.
func (h *httpHandler) bufferHTTP(w http.ResponseWriter, r *http.Request, lc *listenerConfig, bp *bufferPolicy,
	mut *headerMutation, rl *rlHeaders) (*bufferedBody, bool) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, true
	}
	tooLarge := func() (*bufferedBody, bool) {
		lc.stats.rqTooLarge.Add(1)
		lr := tooLargeReply(isGRPC(r.Header.Get("Content-Type")))
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close") // the rest of the body is not read
		}
		lc.stats.response(lr.status())
		writeLocalHTTP(w, &lr, r.Method == http.MethodHead, mut, rl)
		return nil, false
	}
	if r.ContentLength > bp.max {
		return tooLarge()
	}
	rc := http.NewResponseController(w)
	data, err := h.p.bodies.readBody(bufferingBody{r.Body, rc}, r.ContentLength, bp.max)
	_ = rc.SetReadDeadline(time.Time{})
	switch {
	case errors.Is(err, errBodyTooLarge):
		return tooLarge()
	case err != nil && r.Context().Err() != nil:
		lc.stats.downstreamGone.Add(1)
		return nil, false
	case err != nil:
		h.p.log.Debug("request body failed", "listener", h.listener, "error", err)
		lc.stats.response(http.StatusBadRequest)
		w.Header().Set("Connection", "close")
		localReply(w, r, http.StatusBadRequest, "")
		return nil, false
	}
	r.ContentLength, r.TransferEncoding, r.Trailer = int64(len(data)), nil, nil
	r.Header.Del("Trailer")
	r.Header.Del("Expect") // the body is here: the upstream is not asked to wait for it
	if len(data) == 0 {
		h.p.bodies.put(data)
		r.Body = http.NoBody
		return nil, true
	}
	bb := newBufferedBody(data, &h.p.bodies)
	r.Body, _ = bb.reader()
	r.GetBody = bb.getBody
	return bb, true
}
