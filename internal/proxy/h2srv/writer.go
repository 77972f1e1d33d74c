package h2srv

import (
	"bytes"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	writeBufSize = 32 << 10 // initial capacity of a batch buffer
	flushLimit   = 64 << 10 // a batch this large is written at once
	maxDataFrame = 16 << 10 // payload per frame we send (TLS record sized)
	lowerCacheN  = 64       // per-connection cache of lowercased header names
)

// connWriter is the write side of a connection. Every goroutine that has
// frames to send writes them itself into one buffer under mu; the buffer
// goes to the socket when the last writer leaves ("group commit"): writers
// announce themselves in waiting before taking the lock, and whoever takes
// waiting back to zero flushes what all of them wrote.
//
// mu also guards the HPACK encoder, the send flow-control windows (the
// connection's here, each stream's in the stream) and each stream's write
// state. Writers waiting for window wait on cond, having left the group.
type connWriter struct {
	mu       sync.Mutex
	waiting  atomic.Int32
	owed     atomic.Bool   // the read loop left a batch unflushed (flushOwed)
	flushing atomic.Bool   // a socket write is in progress
	flushes  atomic.Uint64 // socket writes started (stuck-write detection)
	busy     atomic.Int32  // handlers running (conn.running, mirrored): more than one may join a batch
	dataSent atomic.Uint64 // DATA frames written (feeds the peer's frame budget)

	nc     net.Conn
	pool   *sync.Pool
	bufp   *[]byte
	buf    []byte
	err    error       // sticky: no new frames are accepted
	broken bool        // a socket write failed: nothing more is written
	onFail func(error) // called once, under mu, when a write fails

	enc   *hpack.Encoder
	hbuf  bytes.Buffer
	lower map[string]string

	flow        int64 // connection send window
	maxFrame    int   // peer's SETTINGS_MAX_FRAME_SIZE
	initWindow  int64 // peer's SETTINGS_INITIAL_WINDOW_SIZE
	cond        sync.Cond
	condWaiters int
}

func (w *connWriter) init(nc net.Conn, pool *sync.Pool, onFail func(error)) {
	w.nc, w.pool, w.onFail = nc, pool, onFail
	w.enc = hpack.NewEncoder(&w.hbuf)
	w.flow, w.maxFrame, w.initWindow = initialWindow, minMaxFrameSize, initialWindow
	w.cond.L = &w.mu
	w.lower = make(map[string]string)
}

// acquire joins the writers and takes the lock.
func (w *connWriter) acquire() {
	w.waiting.Add(1)
	w.mu.Lock()
}

// release leaves: the last writer out flushes the batch. When other
// handlers of the connection are running, it first lets the goroutines
// that are ready to run go first (runtime.Gosched, staying in the group so
// that none of them flushes): the handlers of other streams woken by the
// same upstream read add their frames, and the batch leaves in one write
// and one TLS record instead of one per stream (docs/perf.md, "Cross-stream
// write batching"). A lone stream does not yield: at low rates there is
// nothing to batch, and a yield may wake another thread.
func (w *connWriter) release() {
	if len(w.buf) > 0 && w.waiting.Load() == 1 && w.busy.Load() > 1 {
		w.mu.Unlock()
		runtime.Gosched()
		w.mu.Lock()
	}
	if w.waiting.Add(-1) == 0 {
		w.flushLocked()
		w.putBuf()
	}
	w.mu.Unlock()
}

// releaseLater leaves without flushing; if it was the last writer, the
// read loop owes a flush, which it pays before it blocks (flushOwed). It
// lets the answers to a burst of frames leave in one write.
func (w *connWriter) releaseLater() {
	if w.waiting.Add(-1) == 0 && len(w.buf) > 0 {
		w.owed.Store(true)
	}
	w.mu.Unlock()
}

// flushOwed pays the read loop's deferred flush.
func (w *connWriter) flushOwed() {
	if w.owed.Load() {
		w.acquire()
		w.release()
	}
}

// flushLocked writes the batch to the socket.
func (w *connWriter) flushLocked() {
	w.owed.Store(false)
	if len(w.buf) == 0 {
		return
	}
	if !w.broken {
		w.flushing.Store(true)
		w.flushes.Add(1)
		_, err := w.nc.Write(w.buf)
		w.flushing.Store(false)
		if err != nil {
			w.failLocked(err)
		}
	}
	w.buf = w.buf[:0]
}

// failLocked stops all writing: waiters for flow control wake and see err.
func (w *connWriter) failLocked(err error) {
	if w.broken {
		return
	}
	w.broken = true
	if w.err == nil {
		w.err = err
	}
	if w.condWaiters > 0 {
		w.cond.Broadcast()
	}
	if w.onFail != nil {
		w.onFail(err)
	}
}

// putBuf gives an empty batch buffer back; one that grew past twice the
// flush limit (a large header block) is left to the GC.
func (w *connWriter) putBuf() {
	if w.bufp != nil && len(w.buf) == 0 {
		if cap(w.buf) <= 2*flushLimit {
			*w.bufp = w.buf[:0]
			w.pool.Put(w.bufp)
		}
		w.bufp, w.buf = nil, nil
	}
}

// frameHeader appends a frame header, taking a buffer from the pool if
// needed and flushing first when the batch is already large.
func (w *connWriter) frameHeader(length int, t http2.FrameType, f http2.Flags, sid uint32) {
	if w.bufp == nil {
		w.bufp = w.pool.Get().(*[]byte)
		w.buf = (*w.bufp)[:0]
	} else if len(w.buf) >= flushLimit {
		w.flushLocked()
	}
	w.buf = append(w.buf, byte(length>>16), byte(length>>8), byte(length),
		byte(t), byte(f), byte(sid>>24)&0x7f, byte(sid>>16), byte(sid>>8), byte(sid))
}

func (w *connWriter) writeData(sid uint32, p []byte, end bool) {
	var f http2.Flags
	if end {
		f = http2.FlagDataEndStream
	}
	w.frameHeader(len(p), http2.FrameData, f, sid)
	w.buf = append(w.buf, p...)
	if len(p) > 0 {
		w.dataSent.Add(1)
	}
}

// writeHeaderBlock writes w.hbuf as HEADERS and as many CONTINUATION
// frames as the peer's frame size needs; nothing else can come between
// them since the lock is held.
func (w *connWriter) writeHeaderBlock(sid uint32, end bool) {
	block := w.hbuf.Bytes()
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), w.maxFrame, maxDataFrame)
		var f http2.Flags
		if n == len(block) {
			f = http2.FlagHeadersEndHeaders
		}
		t := http2.FrameContinuation
		if first {
			t = http2.FrameHeaders
			if end {
				f |= http2.FlagHeadersEndStream
			}
		}
		w.frameHeader(n, t, f, sid)
		w.buf = append(w.buf, block[:n]...)
		block = block[n:]
	}
}

func (w *connWriter) writeRST(sid uint32, code http2.ErrCode) {
	w.frameHeader(4, http2.FrameRSTStream, 0, sid)
	w.buf = appendUint32(w.buf, uint32(code))
}

func (w *connWriter) writeWindowUpdate(sid uint32, incr uint32) {
	w.frameHeader(4, http2.FrameWindowUpdate, 0, sid)
	w.buf = appendUint32(w.buf, incr&0x7fffffff)
}

func (w *connWriter) writeGoAway(last uint32, code http2.ErrCode, debug string) {
	w.frameHeader(8+len(debug), http2.FrameGoAway, 0, 0)
	w.buf = appendUint32(w.buf, last&0x7fffffff)
	w.buf = appendUint32(w.buf, uint32(code))
	w.buf = append(w.buf, debug...)
}

func (w *connWriter) writePing(ack bool, data [8]byte) {
	var f http2.Flags
	if ack {
		f = http2.FlagPingAck
	}
	w.frameHeader(8, http2.FramePing, f, 0)
	w.buf = append(w.buf, data[:]...)
}

func (w *connWriter) writeSettingsAck() {
	w.frameHeader(0, http2.FrameSettings, http2.FlagSettingsAck, 0)
}

func (w *connWriter) writeSettings(settings ...http2.Setting) {
	w.frameHeader(6*len(settings), http2.FrameSettings, 0, 0)
	for _, s := range settings {
		w.buf = append(w.buf, byte(s.ID>>8), byte(s.ID))
		w.buf = appendUint32(w.buf, s.Val)
	}
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// encode adds one header field to the block being built in hbuf.
func (w *connWriter) encode(name, value string) {
	_ = w.enc.WriteField(hpack.HeaderField{Name: name, Value: value})
}

// encodeField adds a field of an http.Header: the name lowercased, fields
// that cannot be sent in HTTP/2 dropped (as net/http does).
func (w *connWriter) encodeField(key string, values []string) {
	name, ok := w.lowerName(key)
	if !ok || !validWireName(name) || isConnectionSpecific(name) {
		return
	}
	for _, v := range values {
		if httpguts.ValidHeaderFieldValue(v) {
			w.encode(name, v)
		}
	}
}

// lowerName lowercases a canonical header key without allocating for the
// common ones and for the connection's recent others. ok is false for a
// name that is not ASCII.
func (w *connWriter) lowerName(k string) (string, bool) {
	if v, ok := commonLower[k]; ok {
		return v, true
	}
	if v, ok := w.lower[k]; ok {
		return v, true
	}
	for i := 0; i < len(k); i++ {
		if k[i] >= 0x80 {
			return "", false
		}
	}
	v := strings.ToLower(k)
	if len(w.lower) < lowerCacheN {
		w.lower[k] = v
	}
	return v, true
}

// validWireName: a lowercase token (RFC 9113 8.2.1).
func validWireName(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 0x80 || !httpguts.IsTokenRune(rune(c)) || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// isConnectionSpecific: fields HTTP/2 forbids (RFC 9113 8.2.2); te is
// checked on requests only.
func isConnectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// commonLower maps common canonical header keys to their HTTP/2 names.
// Built once, never written after.
var commonLower = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Origin", "Age", "Allow", "Authorization", "Cache-Control",
		"Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Location", "Content-Range", "Content-Type", "Cookie", "Date", "Etag",
		"Expect", "Expires", "From", "Grpc-Accept-Encoding", "Grpc-Encoding", "Grpc-Message",
		"Grpc-Status", "Grpc-Status-Details-Bin", "Grpc-Timeout", "Host", "If-Match",
		"If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since", "Last-Modified",
		"Link", "Location", "Max-Forwards", "Origin", "Proxy-Authenticate", "Proxy-Authorization",
		"Range", "Referer", "Refresh", "Retry-After", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Te", "Trailer", "Transfer-Encoding", "User-Agent", "Vary",
		"Via", "Www-Authenticate", "X-Content-Type-Options", "X-Forwarded-Client-Cert",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id", "X-Trellis-Reason",
		"X-Envoy-Upstream-Service-Time", "Traceparent", "Tracestate", "X-B3-Traceid",
		"X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled",
	} {
		m[k] = strings.ToLower(k)
	}
	return m
}()
