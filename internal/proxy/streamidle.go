package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The stream idle timeout is Envoy's HttpConnectionManager
// stream_idle_timeout (docs/security.md, safe defaults): a request whose
// exchange makes no progress for that long (no bytes of its body read, no
// response head from the upstream, no bytes of the response written) ends.
// Nothing was sent to the caller yet: 408 with the reason below (and
// Connection: close on HTTP/1.1). Otherwise the stream is reset: the
// HTTP/1.1 connection closes, the HTTP/2 stream gets RST_STREAM. It bounds
// a request body that trickles in (slow POST, R.U.D.Y.), an upstream that
// never answers or stops mid-response, and a caller that stops reading,
// when the route has no timeout (Istio's default).
//
//	fast path (h1*.go)    deadlines on both connections, pushed to now+timeout
//	                      before each blocking read (connReader.beforeRead)
//	net/http (http.go)    a per-request timer: body reads and response writes
//	                      mark progress; when it fires, the upstream exchange
//	                      is cancelled and the caller's reads (and writes, once
//	                      the response started) get a deadline in the past
//	h2srv (http.go)       the server's own per-stream watch (WatchIdle: its
//	                      connection's ticker, no per-request timer): the
//	                      same progress, plus frames from the caller; the
//	                      request's context is cancelled with
//	                      h2srv.ErrStreamIdle and the handler answers 408, or
//	                      the stream is reset once the response started
const (
	// defaultStreamIdleTimeout applies when the HCM does not set one.
	defaultStreamIdleTimeout = 5 * time.Minute
	reasonStreamIdle         = "stream_idle_timeout"
)

// errStreamIdle ends an exchange whose stream idle timeout expired (also the
// cancellation cause of a net/http request's context).
var errStreamIdle = errors.New("stream idle timeout")

// idleSlack is how far past the timeout a deadline is pushed: deadlines
// move at most once per slack per connection (a runtime timer update each),
// not on every read, and the stream ends between timeout and timeout+slack
// after its last progress.
func idleSlack(timeout time.Duration) time.Duration { return timeout / 8 }

// beginStream starts the timers of the exchange of a routed request: the
// route timeout (its deadline is returned; zero: none) and the stream idle
// timeout of the listener's chain.
func (dc *downConn) beginStream(lc *listenerConfig, rt *route) time.Time {
	dc.streamIdle = lc.streamIdleTimeout
	var now, deadline time.Time
	if rt.timeout > 0 || dc.streamIdle > 0 {
		now = time.Now()
	}
	if rt.timeout > 0 {
		deadline = now.Add(rt.timeout)
	}
	dc.deadline, dc.upDeadline = deadline, deadline
	dc.setDeadline(dc.streamDeadline(now, dc.dl, deadline))
	return deadline
}

// endStream stops the stream idle timeout: between requests, the keep-alive
// and read-header timeouts apply.
func (dc *downConn) endStream() { dc.streamIdle = 0 }

// touch runs before every blocking read of the exchange (and the flush of
// the other hop's writer that comes first): the caller's connection and the
// upstream one get at least the stream idle timeout from now.
func (dc *downConn) touch() {
	if dc.streamIdle == 0 {
		return
	}
	now := time.Now()
	dc.setDeadline(dc.streamDeadline(now, dc.dl, dc.deadline))
	// A caller gone has had the upstream read interrupted (watchClient):
	// do not undo it.
	if uc := dc.cur.Load(); uc != nil && !dc.gone.Load() {
		uc.setDeadline(dc.streamDeadline(now, uc.dl, dc.upDeadline))
	}
}

// streamDeadline is the deadline a connection of the exchange needs for a
// blocking operation starting now, given its current one (cur): limit (the
// route or per-try deadline; zero: none) when it comes before the idle
// bound, else cur while it lies within [now+timeout, now+timeout+slack],
// else now+timeout+slack.
func (dc *downConn) streamDeadline(now, cur, limit time.Time) time.Time {
	if dc.streamIdle == 0 {
		return limit
	}
	hi := now.Add(dc.streamIdle + idleSlack(dc.streamIdle))
	if !limit.IsZero() && !limit.After(hi) {
		return limit
	}
	if !cur.Before(now.Add(dc.streamIdle)) && !cur.After(hi) {
		return cur
	}
	return hi
}

// idleFired reports whether a failed exchange ended by its stream idle
// timeout: the deadline last set on the caller's connection or on uc (nil:
// none) passed and was not the route or per-try deadline.
func (dc *downConn) idleFired(uc *upConn) bool {
	if dc.streamIdle == 0 || dc.gone.Load() {
		return false
	}
	now := time.Now()
	return idlePassed(now, dc.dl, dc.deadline) || (uc != nil && idlePassed(now, uc.dl, dc.upDeadline))
}

func idlePassed(now, dl, limit time.Time) bool {
	return !dl.IsZero() && !dl.Equal(limit) && !now.Before(dl)
}

// streamIdleReply answers a request (head of n bytes still buffered, or 0)
// whose stream idle timeout expired before anything of the response was
// written: 408, and the connection closes.
func (dc *downConn) streamIdleReply(lc *listenerConfig, c *cluster, n int) bool {
	lc.stats.response(http.StatusRequestTimeout)
	dc.s.p.log.Debug("stream idle timeout", "listener", dc.s.name, "cluster", c.name, "timeout", dc.streamIdle)
	dc.setDeadline(time.Now().Add(time.Second)) // for the reply
	return dc.localReply(n, http.StatusRequestTimeout, reasonStreamIdle, true)
}

// streamWatch is the stream idle timeout of one request on the net/http
// path. Reads of the request body and writes of the response mark progress;
// the timer, when it finds none for the timeout, cancels the request's
// context (the upstream exchange) with errStreamIdle and sets the caller's
// read deadline in the past (a body read in progress fails), and its write
// deadline too once the response started or when it fires again (a write
// blocked on a caller that stops reading fails). The handler answers 408
// if nothing was written (classifyUpstreamError, or endStreamIdle).
//
// Watches are reused (httpHandler.watches) with their timer when
// endStreamIdle stopped the timer while it was pending: no callback can
// run on a reused one.
// The body wrapper is not reused: the transport may read it after the
// handler returned.
type streamWatch struct {
	timeout time.Duration
	base    time.Time    // progress is measured from it (monotonic)
	last    atomic.Int64 // writes' progress, ns since base
	started atomic.Bool  // a final response head was written
	fired   atomic.Bool
	h1      bool
	inner   http.ResponseWriter // the writer given (ResponseController reaches the server's)
	out     http.ResponseWriter // the handler's from here: w, or the route's writer over it
	r       *http.Request
	stats   *endpointStats
	cancel  context.CancelCauseFunc
	body    *idleBody // nil: no request body

	mu    sync.Mutex // fire against end, and the fields above against a reuse
	done  bool
	timer *time.Timer

	w idleWriter
}

// watchStreamIdle starts the stream idle timeout of a request about to be
// forwarded, with the writer and request to use from then on (both
// unchanged, and a nil watch, when the chain's timeout is 0 or h2srv
// watches the stream itself). The handler must call h.endStreamIdle
// (nil-safe) when it returns.
func (h *httpHandler) watchStreamIdle(w http.ResponseWriter, r *http.Request, lc *listenerConfig) (http.ResponseWriter, *http.Request, *streamWatch) {
	d := lc.streamIdleTimeout
	if d <= 0 {
		return w, r, nil
	}
	if hw, ok := ownH2Writer(w); ok {
		hw.WatchIdle(d)
		return w, r, nil
	}
	s, _ := h.watches.Get().(*streamWatch)
	if s == nil {
		s = &streamWatch{}
		s.timer = time.AfterFunc(time.Hour, s.fire)
		s.timer.Stop()
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	r = r.WithContext(ctx)
	s.mu.Lock()
	s.timeout, s.base, s.h1, s.inner, s.stats, s.cancel = d, time.Now(), r.ProtoMajor == 1, w, lc.stats, cancel
	s.last.Store(0)
	s.started.Store(false)
	s.fired.Store(false)
	s.done = false
	s.body = nil
	if r.Body != nil && r.Body != http.NoBody {
		s.body = &idleBody{ReadCloser: r.Body, base: s.base}
		r.Body = s.body
	}
	s.r = r
	s.out = &s.w
	if rw, ok := w.(*routeWriter); ok {
		// Beneath the route's writer, which local replies look for.
		s.w = idleWriter{ResponseWriter: rw.ResponseWriter, s: s}
		rw.ResponseWriter, s.out = &s.w, rw
	} else {
		s.w = idleWriter{ResponseWriter: w, s: s}
	}
	s.timer.Reset(d)
	s.mu.Unlock()
	return s.out, r, s
}

// progress marks a response write as activity on the stream.
func (s *streamWatch) progress() { s.last.Store(int64(time.Since(s.base))) }

// idleFor is how long the stream made no progress. Called with s.mu held.
func (s *streamWatch) idleFor() time.Duration {
	last := s.last.Load()
	if s.body != nil {
		last = max(last, s.body.last.Load())
	}
	return time.Since(s.base) - time.Duration(last)
}

func (s *streamWatch) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	if idle := s.idleFor(); idle < s.timeout {
		s.timer.Reset(s.timeout - idle)
		return
	}
	again := s.fired.Swap(true)
	// Read before cancelling: that wakes the handler, which may write its
	// 408 at once, and its write must not fail.
	started := s.started.Load()
	s.cancel(errStreamIdle)
	rc := http.NewResponseController(s.inner)
	_ = rc.SetReadDeadline(aLongTimeAgo)
	if again || started {
		_ = rc.SetWriteDeadline(aLongTimeAgo)
		return
	}
	// The handler answers 408 now; should that stall too, fire again.
	s.timer.Reset(s.timeout)
}

// stop ends the watch: fire does nothing from then on. It reports whether
// the timer was still pending, so that no callback is running or to come.
func (s *streamWatch) stop() bool {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
	return s.timer.Stop()
}

// endStreamIdle stops the watch when the handler returns and, if the
// timeout fired while nothing was written, answers 408; then the watch is
// reused.
func (h *httpHandler) endStreamIdle(s *streamWatch) {
	if s == nil {
		return
	}
	reusable := s.stop()
	s.cancel(nil)
	if s.fired.Load() && !s.started.Load() {
		s.stats.response(http.StatusRequestTimeout)
		localReply(s.out, s.r, http.StatusRequestTimeout, reasonStreamIdle)
	}
	if !reusable {
		return
	}
	s.mu.Lock()
	s.inner, s.out, s.r, s.stats, s.cancel, s.body = nil, nil, nil, nil, nil, nil
	s.w = idleWriter{}
	s.mu.Unlock()
	h.watches.Put(s)
}

// idleWriter marks response writes as progress and tracks whether the
// response started. ResponseController reaches the server's writer through
// Unwrap; a hijack (upgrade) ends the watch: the connection leaves HTTP.
type idleWriter struct {
	http.ResponseWriter
	s *streamWatch
}

func (w *idleWriter) WriteHeader(code int) {
	if code >= http.StatusOK {
		if w.s.h1 && w.s.fired.Load() && !w.s.started.Load() {
			// The caller's reads were cut: the connection cannot serve
			// another request.
			w.Header().Set("Connection", "close")
		}
		w.s.started.Store(true)
	}
	w.ResponseWriter.WriteHeader(code)
	w.s.progress()
}

func (w *idleWriter) Write(b []byte) (int, error) {
	if !w.s.started.Load() {
		w.s.started.Store(true)
	}
	n, err := w.ResponseWriter.Write(b)
	w.s.progress()
	return n, err
}

// FlushError makes the writer a flusher for ResponseController (and
// http.Flusher through Flush).
func (w *idleWriter) FlushError() error {
	if !w.s.started.Load() {
		w.s.started.Store(true)
	}
	err := http.NewResponseController(w.ResponseWriter).Flush()
	w.s.progress()
	return err
}

func (w *idleWriter) Flush() { _ = w.FlushError() }

func (w *idleWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	_ = w.s.stop()
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// idleBody marks request body reads that return bytes as progress. It
// keeps its own clock: the transport may still read it once the watch went
// back to the pool.
type idleBody struct {
	io.ReadCloser
	base time.Time
	last atomic.Int64 // ns since base
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.last.Store(int64(time.Since(b.base)))
	}
	return n, err
}
