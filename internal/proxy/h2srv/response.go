package h2srv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

// responseWriter is a stream's http.ResponseWriter. Only the handler (and
// goroutines it serializes with, such as ReverseProxy's flush timer) calls
// it; what reaches the connection goes through the stream's emit.
type responseWriter struct {
	st          *stream
	header      http.Header
	snap        []headerKV // the header at WriteHeader (what is sent)
	snapp       *[]headerKV
	status      int
	wroteHeader bool
	headersOut  bool // this handler's headers were sent
	done        bool // the handler returned
	isHead      bool
	out         []byte // body written, not yet sent
	outp        *[]byte
	written     int64
	declLen     int64    // the handler's Content-Length, -1: none
	trailers    []string // declared in the Trailer header
	trailerBuf  [2]string
	declared    bool
	connClose   bool
	rdl, wdl    *time.Timer
}

var (
	_ http.ResponseWriter = (*responseWriter)(nil)
	_ http.Flusher        = (*responseWriter)(nil)
)

// headerKV is one field of a header snapshot. The values slice is shared
// with the handler's map: Set, Add and Del after WriteHeader replace or
// extend it without changing what the snapshot sees.
type headerKV struct {
	k string
	v []string
}

func (rw *responseWriter) init(st *stream, isHead bool) {
	rw.st, rw.isHead, rw.declLen = st, isHead, -1
}

func (rw *responseWriter) Header() http.Header {
	if rw.header == nil {
		rw.header = make(http.Header)
	}
	return rw.header
}

// AdoptHeader makes h the response's header map, as if its fields had
// been added to Header(), when Header was not called yet (and reports
// whether it was). A proxy passes the upstream's header on this way
// without copying it; h must not be used elsewhere afterwards.
func (rw *responseWriter) AdoptHeader(h http.Header) bool {
	if rw.header != nil || rw.done || h == nil {
		return false
	}
	rw.header = h
	return true
}

func (rw *responseWriter) WriteHeader(code int) {
	if rw.done || rw.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 {
		if code != http.StatusSwitchingProtocols { // no 101 in HTTP/2 (RFC 9113 8.6)
			rw.writeInformational(code)
		}
		return
	}
	rw.wroteHeader, rw.status = true, code
	rw.st.started.Store(true)
	rw.st.activity.Add(1)
	if len(rw.header) == 0 {
		return
	}
	if v := rw.header.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseUint(v, 10, 63); err == nil {
			rw.declLen = int64(n)
		}
	}
	rw.snapp = rw.st.c.s.snaps.Get().(*[]headerKV)
	rw.snap = (*rw.snapp)[:0]
	for k, vv := range rw.header {
		rw.snap = append(rw.snap, headerKV{k, vv})
	}
}

func (rw *responseWriter) Write(p []byte) (int, error) { return rw.write(p, "") }

func (rw *responseWriter) WriteString(s string) (int, error) { return rw.write(nil, s) }

func (rw *responseWriter) write(p []byte, s string) (int, error) {
	if rw.done {
		return 0, errHandlerDone
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	n := len(p) + len(s)
	if !bodyAllowed(rw.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if rw.declLen >= 0 && rw.written+int64(n) > rw.declLen {
		return 0, errTooLong
	}
	rw.written += int64(n)
	rw.st.activity.Add(1)
	if rw.isHead {
		return n, nil
	}
	if len(rw.out) == 0 && len(p) >= chunkSize {
		if err := rw.emit(p, false); err != nil {
			return 0, err
		}
		return n, nil
	}
	for len(p) > 0 || len(s) > 0 {
		if rw.outp == nil {
			rw.outp = rw.st.c.s.chunks.Get().(*[]byte)
			rw.out = (*rw.outp)[:0]
		}
		free := rw.out[len(rw.out):cap(rw.out)]
		k := copy(free, p)
		p = p[k:]
		if k == 0 {
			k = copy(free, s)
			s = s[k:]
		}
		rw.out = rw.out[:len(rw.out)+k]
		if len(rw.out) == cap(rw.out) {
			err := rw.emit(rw.out, false)
			rw.out = rw.out[:0]
			if err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// FlushError sends the headers and what the handler wrote so far.
func (rw *responseWriter) FlushError() error {
	if rw.done {
		return errHandlerDone
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if len(rw.out) == 0 && rw.headersOut {
		return nil
	}
	err := rw.emit(rw.out, false)
	rw.out = rw.out[:0]
	return err
}

func (rw *responseWriter) Flush() { _ = rw.FlushError() }

// WatchIdle gives this request a stream idle timeout of d from now, in
// place of Config.StreamIdleTimeout, answered by the handler: once the
// stream has had no activity (a frame either way, a read of the request
// body, a write of the response) for d before the handler wrote its final
// response head, the request's context is cancelled with cause
// ErrStreamIdle and reading the body fails with it; the handler is to
// answer (a 408, say). If it has not written that head after another d
// without activity, or when the response had started, the stream is reset
// (RST_STREAM CANCEL) and the context cancelled with the same cause. d <= 0
// turns the timeout off for this request.
func (rw *responseWriter) WatchIdle(d time.Duration) {
	st := rw.st
	if d <= 0 {
		st.idleTimeout.Store(-1)
		return
	}
	st.idleTimeout.Store(int64(d))
	st.activity.Add(1) // the period starts now
	st.c.ticker.atMost(st.c, d/4)
}

// EnableFullDuplex: HTTP/2 always is.
func (rw *responseWriter) EnableFullDuplex() error { return nil }

// SetReadDeadline bounds the request body's reads (http.ResponseController).
func (rw *responseWriter) SetReadDeadline(t time.Time) error {
	b := &rw.st.body
	if b.st == nil {
		return nil // no body
	}
	rw.rdl = setTimer(rw.rdl, t, func() { b.expire(fmt.Errorf("%w", os.ErrDeadlineExceeded)) })
	return nil
}

// SetWriteDeadline bounds the response: past it the stream is reset
// (INTERNAL_ERROR) and writes fail, as net/http does.
func (rw *responseWriter) SetWriteDeadline(t time.Time) error {
	st := rw.st
	rw.wdl = setTimer(rw.wdl, t, func() {
		st.c.resetStream(st, http2.ErrCodeInternal, os.ErrDeadlineExceeded, false)
	})
	return nil
}

// setTimer arms (or disarms, for the zero time) a deadline timer.
func setTimer(tm *time.Timer, t time.Time, f func()) *time.Timer {
	if tm != nil {
		tm.Stop()
	}
	if t.IsZero() {
		return tm
	}
	d := time.Until(t)
	if d <= 0 {
		f()
		return tm
	}
	if tm == nil {
		return time.AfterFunc(d, f)
	}
	tm.Reset(d)
	return tm
}

func (rw *responseWriter) stopTimers() {
	if rw.rdl != nil {
		rw.rdl.Stop()
	}
	if rw.wdl != nil {
		rw.wdl.Stop()
	}
}

func (rw *responseWriter) putBuf() {
	if rw.outp != nil {
		*rw.outp = rw.out[:0]
		rw.st.c.s.chunks.Put(rw.outp)
		rw.outp, rw.out = nil, nil
	}
	if rw.snapp != nil {
		clear(rw.snap)
		*rw.snapp = rw.snap[:0]
		rw.st.c.s.snaps.Put(rw.snapp)
		rw.snapp, rw.snap = nil, nil
	}
}

// finish completes the response when the handler returns.
func (rw *responseWriter) finish() {
	if !rw.wroteHeader {
		if context.Cause(rw.st.ctx) == ErrStreamIdle {
			// Told to answer (WatchIdle), it did not: the stream ends as
			// an idle one whose response started.
			rw.st.c.resetStream(rw.st, http2.ErrCodeCancel, ErrStreamIdle, false)
			return
		}
		rw.WriteHeader(http.StatusOK)
	}
	if rw.declLen >= 0 && rw.written < rw.declLen && bodyAllowed(rw.status) && !rw.isHead {
		// A body shorter than declared must not look complete.
		rw.st.c.resetStream(rw.st, http2.ErrCodeInternal, errStreamClosed, false)
		return
	}
	_ = rw.emit(rw.out, true)
	rw.out = rw.out[:0]
}

// emit writes, under the connection's write lock, what the response has
// pending: the headers if not sent yet, data, and when final the end of the
// stream (END_STREAM on the last frame, or trailers). It waits for send
// window as needed.
func (rw *responseWriter) emit(data []byte, final bool) error {
	st := rw.st
	c := st.c
	w := &c.w
	trailers := false
	if final {
		rw.declareTrailers()
		trailers = rw.hasTrailers()
	}
	w.acquire()
	if err := st.writableLocked(); err != nil {
		w.release()
		return err
	}
	st.activity.Add(1)
	if !st.sentHeaders {
		end := rw.isHead || final && len(data) == 0 && !trailers
		// A response with trailers gets no content-length of ours: as
		// net/http's HTTP/1.1 server sends such a response chunked.
		rw.writeHeadersLocked(final && !trailers && len(rw.trailers) == 0, len(data), end)
		if end {
			c.finishLocal(st)
			return rw.release()
		}
	}
	for len(data) > 0 {
		avail := min(w.flow, st.sendWin, int64(min(w.maxFrame, maxDataFrame)))
		if avail <= 0 {
			if err := st.waitWindowLocked(); err != nil {
				w.release()
				return err
			}
			continue
		}
		n := int(min(avail, int64(len(data))))
		end := final && n == len(data) && !trailers
		w.writeData(st.id, data[:n], end)
		w.flow -= int64(n)
		st.sendWin -= int64(n)
		data = data[n:]
		if end {
			c.finishLocal(st)
			return rw.release()
		}
	}
	if final {
		if !trailers || !rw.writeTrailersLocked() {
			w.writeData(st.id, nil, true)
		}
		c.finishLocal(st)
	}
	return rw.release()
}

// release ends an emit; a "Connection: close" response drains the
// connection once the lock is free.
func (rw *responseWriter) release() error {
	rw.st.c.w.release()
	if rw.connClose {
		rw.connClose = false
		rw.st.c.startDrain()
	}
	return nil
}

// writeHeadersLocked encodes and writes the response headers. final: the
// handler returned, without trailers, so a missing content-length is
// bodyLen.
func (rw *responseWriter) writeHeadersLocked(final bool, bodyLen int, end bool) {
	st, w := rw.st, &rw.st.c.w
	rw.declareTrailers()
	w.hbuf.Reset()
	w.encode(":status", statusString(rw.status))
	hasDate := false
	for _, f := range rw.snap {
		k, vv := f.k, f.v
		switch {
		case k == "Content-Length" || strings.HasPrefix(k, http.TrailerPrefix) || rw.isTrailer(k):
			continue
		case k == "Date":
			hasDate = true
		case k == "Connection":
			for _, v := range vv {
				if httpguts.HeaderValuesContainsToken([]string{v}, "close") {
					rw.connClose = true
				}
			}
			continue
		}
		w.encodeField(k, vv)
	}
	switch {
	case rw.declLen >= 0:
		w.encode("content-length", strconv.FormatInt(rw.declLen, 10))
	case final && bodyAllowed(rw.status) && !(rw.isHead && bodyLen == 0):
		w.encode("content-length", strconv.Itoa(bodyLen))
	}
	if !hasDate {
		w.encode("date", st.c.s.date.get())
	}
	w.writeHeaderBlock(st.id, end)
	st.sentHeaders, rw.headersOut = true, true
}

// writeTrailersLocked writes the trailers as the last HEADERS; false if
// none was valid to send.
func (rw *responseWriter) writeTrailersLocked() bool {
	w := &rw.st.c.w
	w.hbuf.Reset()
	for _, k := range rw.trailers {
		if vv := rw.header[k]; len(vv) > 0 {
			w.encodeField(k, vv)
		}
	}
	for k, vv := range rw.header {
		if len(vv) > 0 && strings.HasPrefix(k, http.TrailerPrefix) {
			w.encodeField(k[len(http.TrailerPrefix):], vv)
		}
	}
	if w.hbuf.Len() == 0 {
		return false
	}
	w.writeHeaderBlock(rw.st.id, true)
	return true
}

// declareTrailers reads the Trailer header once, when the headers are
// sent (or at the end).
func (rw *responseWriter) declareTrailers() {
	if rw.declared {
		return
	}
	rw.declared = true
	for _, f := range rw.snap {
		if f.k == "Trailer" {
			rw.declare(f.v)
		}
	}
}

func (rw *responseWriter) declare(vv []string) {
	for _, v := range vv {
		for v != "" {
			var k string
			k, v, _ = strings.Cut(v, ",")
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if k != "" && httpguts.ValidTrailerHeader(k) && !rw.isTrailer(k) {
				if rw.trailers == nil {
					rw.trailers = rw.trailerBuf[:0]
				}
				rw.trailers = append(rw.trailers, k)
			}
		}
	}
}

func (rw *responseWriter) isTrailer(k string) bool {
	for _, t := range rw.trailers {
		if t == k {
			return true
		}
	}
	return false
}

func (rw *responseWriter) hasTrailers() bool {
	for _, k := range rw.trailers {
		if len(rw.header[k]) > 0 {
			return true
		}
	}
	for k, vv := range rw.header {
		if len(vv) > 0 && strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// writeInformational sends a 1xx response with the current header.
func (rw *responseWriter) writeInformational(code int) {
	st, w := rw.st, &rw.st.c.w
	w.acquire()
	if st.writableLocked() == nil && !st.sentHeaders {
		w.hbuf.Reset()
		w.encode(":status", statusString(code))
		for k, vv := range rw.header {
			w.encodeField(k, vv)
		}
		w.writeHeaderBlock(st.id, false)
	}
	w.release()
}

// writeContinue answers Expect: 100-continue at the body's first Read
// (any goroutine reading the body).
func (rw *responseWriter) writeContinue() {
	st, w := rw.st, &rw.st.c.w
	w.acquire()
	if st.writableLocked() == nil && !st.sentHeaders {
		w.hbuf.Reset()
		w.encode(":status", "100")
		w.writeHeaderBlock(st.id, false)
	}
	w.release()
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// statusStrings holds ":status" values. Built once, never written after.
var statusStrings = func() (s [1000]string) {
	for i := 100; i < len(s); i++ {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func statusString(code int) string { return statusStrings[code] }

// dateCache formats the Date header once a second.
type dateCache struct{ v atomic.Pointer[dateEntry] }

type dateEntry struct {
	sec int64
	s   string
}

func (d *dateCache) get() string {
	now := time.Now()
	if e := d.v.Load(); e != nil && e.sec == now.Unix() {
		return e.s
	}
	e := &dateEntry{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	d.v.Store(e)
	return e.s
}
