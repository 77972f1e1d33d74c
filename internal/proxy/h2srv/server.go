// Package h2srv serves HTTP/2 on connections the sidecar has already
// accepted (TLS with ALPN "h2", or h2c prior knowledge), calling an
// http.Handler for each stream (docs/adr/003-http2-engine.md).
//
//	ServeConn(ctx, conn, opts) ── on the caller's goroutine: the read loop
//	   │  frameReader: sees every frame header first (flood budget, CONTINUATION count)
//	   │  x/net Framer: frames; metaReader (x/net's ReadMetaHeaders, reused
//	   │  state): HPACK, header block limits
//	   ├─ HEADERS ──► stream table ──► handler goroutine (≤ MaxConcurrentStreams
//	   │                               running, ≤ 4× that queued, REFUSED_STREAM beyond)
//	   ├─ DATA ─────► the stream's request body (window returned as the handler reads)
//	   └─ SETTINGS, PING, WINDOW_UPDATE, RST_STREAM, GOAWAY ─► answered inline
//	connWriter: one mutex and one buffer for the connection. Every goroutine
//	   writes its own frames; the last writer out flushes ("group commit"),
//	   so frames of concurrent streams leave in one write.
//
// There is no serve-loop goroutine that writes go through. A handler's
// response body is buffered in its stream and written at Flush, when the
// buffer fills, or when the handler returns: a unary response (HEADERS,
// DATA, trailers) is one lock and, unless other streams are writing, one
// write. Each Flush is a write of its own unless other streams' frames join
// it (httputil.ReverseProxy flushes after every body write of a response of
// unknown length; the sidecar's forwarder flushes only before it would
// wait for the upstream). A response with trailers gets no content-length
// from the server. The headers sent are the handler's at WriteHeader (a
// snapshot of the map's fields, not a copy), encoded when they leave.
// Frames sent carry at most 16 KiB. A handler's goroutine runs the handlers
// queued behind it when it ends, then waits for the connection's next
// stream (up to 32 such idle goroutines per connection, ended when the
// connection goes a tick without a new stream): stacks grown by one
// request serve the next.
//
// Handler contract (the ADR's "Contracts at the boundary"): r.Proto
// "HTTP/2.0"; r.Host from :authority (else host); r.URL and r.RequestURI
// from :path as net/http builds them; canonical header keys, cookies joined
// with "; "; r.ContentLength from content-length, -1 when unknown, 0 with
// http.NoBody when HEADERS ended the stream; r.Trailer (declared keys)
// filled before the body returns io.EOF; r.TLS on TLS connections whatever
// the :scheme; r.Context() derived from ConnOpts.BaseContext, carrying
// http.ServerContextKey and http.LocalAddrContextKey, cancelled when the
// stream is reset, when its handler returns, or when the connection ends.
// The ResponseWriter supports 1xx (repeatable; 101 is dropped), Flush and
// FlushError, trailers declared in the Trailer header or set with
// http.TrailerPrefix, SetReadDeadline/SetWriteDeadline/EnableFullDuplex for
// http.ResponseController, and "Connection: close" (drains the
// connection). A handler that writes nothing and sets no trailers answers
// with a single HEADERS frame with END_STREAM (gRPC trailers-only). A
// handler that panics resets its stream (INTERNAL_ERROR); the panic is
// logged unless it is http.ErrAbortHandler. Unlike net/http, the server
// does not sniff a Content-Type: a proxy passes the upstream's. It adds
// Date and, for a response completed before its headers were sent,
// content-length, as net/http does.
//
// Defences (issue 5): header lists over MaxHeaderBytes or MaxHeaderFields
// are answered 431 without running the handler, and a header block that
// keeps coming after the limit ends the connection (x/net's rule); a block
// split into more than max(64, MaxHeaderBytes/1 KiB) CONTINUATION frames
// ends it too. Frames that do no work (PING, SETTINGS, WINDOW_UPDATE,
// PRIORITY, RST_STREAM, unknown types, DATA and CONTINUATION without
// payload or end flag, frames for closed streams, refused streams) spend a
// per-connection budget: 1,000 at once, refilled by 100 a second, by 10
// per stream opened and by 10 per DATA frame sent (legitimate peers answer
// data with WINDOW_UPDATE and PING). An empty budget, a client that resets
// most of its streams prematurely (resetguard: Envoy's rule), or more
// handlers queued than 4× MaxConcurrentStreams ends the connection with
// GOAWAY ENHANCE_YOUR_CALM. A stream reset before its handler started is
// never handled. Control frames are answered synchronously on the read
// loop, so a peer that does not read its answers stops being read (no
// queue grows), and a write blocked for WriteTimeout closes the connection.
//
// Timeouts are checked by one timer per connection that ticks at a quarter
// of the shortest of IdleTimeout, StreamIdleTimeout, WriteTimeout and the
// timeouts handlers set (WatchIdle), so they fire between 1× and 1.25×
// their value. An idle stream (no frame in either direction, no read of
// its body, no write of its response) is answered 408 if its response has
// not started, else reset (CANCEL), as Envoy does. A handler that sets its
// stream's timeout with WatchIdle answers itself: its request's context is
// cancelled with ErrStreamIdle.
//
// Conformance: h2spec, strict cases included, passes against the default
// Config, h2c and TLS (TestH2Spec); FuzzServeConn feeds arbitrary frames.
package h2srv

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/resetguard"
)

// Defaults of Config's zero values.
const (
	DefaultMaxConcurrentStreams = 100
	DefaultMaxHeaderBytes       = 64 << 10
	DefaultMaxHeaderFields      = 100
	DefaultInitialWindowSize    = 1 << 20
	DefaultConnWindowSize       = 1 << 20
	DefaultMaxReadFrameSize     = 16 << 10
	DefaultIdleTimeout          = 5 * time.Minute
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultStreamIdleTimeout    = 5 * time.Minute
	DefaultWriteTimeout         = 30 * time.Second
)

// Config configures a Server. Zero values take the defaults above; a
// negative duration turns that timeout off.
type Config struct {
	// MaxConcurrentStreams is advertised to the client; more open streams
	// are refused (REFUSED_STREAM). It also bounds the handlers running at
	// once per connection (handlers of reset streams may still run).
	MaxConcurrentStreams uint32
	// MaxHeaderBytes bounds a request's decoded header list (and
	// trailers), as SETTINGS_MAX_HEADER_LIST_SIZE; MaxHeaderFields bounds
	// its number of regular fields. Beyond either: 431.
	MaxHeaderBytes  int
	MaxHeaderFields int
	// InitialWindowSize is each stream's receive window, ConnWindowSize the
	// connection's (both at least 65,535, the protocol's initial value). A handler that does not read its body holds at most
	// the former; all of a connection's at most the latter.
	InitialWindowSize int32
	ConnWindowSize    int32
	// MaxReadFrameSize is advertised as SETTINGS_MAX_FRAME_SIZE (16 KiB
	// to 16 MiB; a frame larger is a connection error).
	MaxReadFrameSize uint32
	// IdleTimeout closes a connection without open streams (GOAWAY).
	IdleTimeout time.Duration
	// ReadHeaderTimeout bounds the client preface and first SETTINGS.
	ReadHeaderTimeout time.Duration
	// StreamIdleTimeout ends a stream without frames either way.
	StreamIdleTimeout time.Duration
	// WriteTimeout closes a connection whose write has been blocked for
	// this long (the client does not read).
	WriteTimeout time.Duration
	// ResetGuard returns the premature-reset guard of a new connection
	// (nil: resetguard.New(0, 0), Envoy's thresholds).
	ResetGuard func() *resetguard.Guard
	Logger     *slog.Logger
	Stats      Stats // nil: not counted
}

// Abuse says why a connection was closed as abusive.
type Abuse string

// Reasons for closing a connection as abusive.
const (
	AbuseRapidReset   Abuse = "premature_resets"     // resetguard tripped
	AbuseControlFlood Abuse = "control_frame_flood"  // the frame budget ran out
	AbuseContinuation Abuse = "continuation_flood"   // too many CONTINUATION frames
	AbuseHandlerQueue Abuse = "handler_queue_full"   // streams reset faster than handled
	AbuseHeaderBlock  Abuse = "header_block_too_big" // x/net's header limit, past the 431
)

// Stats receives the events a proxy counts. Methods are called from the
// connection's goroutines and must be safe for concurrent use.
type Stats interface {
	StreamOpened()
	// StreamReset: the client reset an open stream (RST_STREAM).
	StreamReset()
	// HeaderLimit: a request's header list was over a limit (431).
	HeaderLimit()
	// ConnAbuse: a connection was closed with ENHANCE_YOUR_CALM (for
	// AbuseHeaderBlock: x/net's PROTOCOL_ERROR).
	ConnAbuse(Abuse)
}

type nopStats struct{}

func (nopStats) StreamOpened()   {}
func (nopStats) StreamReset()    {}
func (nopStats) HeaderLimit()    {}
func (nopStats) ConnAbuse(Abuse) {}

// ConnOpts describe one connection handed to ServeConn.
type ConnOpts struct {
	Handler http.Handler // required
	// BaseContext is the parent of every request's context (nil:
	// context.Background()). It is not ServeConn's ctx, which only
	// starts a graceful drain.
	BaseContext context.Context
	// Abort, when done, closes the connection at once: every stream's
	// context is cancelled (nil: never).
	Abort context.Context
	// TLS is the connection's TLS state (r.TLS); nil for h2c.
	TLS *tls.ConnectionState
	// RemoteAddr is r.RemoteAddr (default: the connection's).
	RemoteAddr string
	// Buffered holds bytes the caller already read from the connection
	// (the client preface or part of it, frames): they are read first.
	Buffered []byte
	// PrefaceRead says the caller read and checked the whole client
	// preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"): frames come next.
	PrefaceRead bool
}

// Server holds the configuration and the buffer pools shared by the
// connections it serves. It is safe for concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	stats Stats
	ctl   ctlBudget // derived from cfg

	maxContinuations int

	writeBufs sync.Pool // *[]byte, connWriter batches
	chunks    sync.Pool // *[]byte, response and request body buffers
	readers   sync.Pool // *bufio.Reader
	snaps     sync.Pool // *[]headerKV, response header snapshots
	date      dateCache
	httpSrv   *http.Server // the value of http.ServerContextKey
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	cfg = normalize(cfg)
	s := &Server{
		cfg:              cfg,
		log:              cfg.Logger,
		stats:            cfg.Stats,
		ctl:              defaultCtlBudget,
		maxContinuations: max(64, cfg.MaxHeaderBytes>>10),
		httpSrv: &http.Server{
			MaxHeaderBytes: cfg.MaxHeaderBytes,
			IdleTimeout:    cfg.IdleTimeout,
		},
	}
	s.writeBufs.New = func() any { b := make([]byte, 0, writeBufSize); return &b }
	s.chunks.New = func() any { b := make([]byte, 0, chunkSize); return &b }
	s.snaps.New = func() any { b := make([]headerKV, 0, 16); return &b }
	return s
}

func normalize(cfg Config) Config {
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxHeaderFields <= 0 {
		cfg.MaxHeaderFields = DefaultMaxHeaderFields
	}
	switch {
	case cfg.InitialWindowSize <= 0:
		cfg.InitialWindowSize = DefaultInitialWindowSize
	case cfg.InitialWindowSize < initialWindow:
		// Until it has our SETTINGS a client may use the protocol's 65,535.
		cfg.InitialWindowSize = initialWindow
	}
	if cfg.ConnWindowSize < initialWindow {
		cfg.ConnWindowSize = DefaultConnWindowSize
	}
	switch {
	case cfg.MaxReadFrameSize == 0:
		cfg.MaxReadFrameSize = DefaultMaxReadFrameSize
	case cfg.MaxReadFrameSize < minMaxFrameSize:
		cfg.MaxReadFrameSize = minMaxFrameSize
	case cfg.MaxReadFrameSize > maxMaxFrameSize:
		cfg.MaxReadFrameSize = maxMaxFrameSize
	}
	cfg.IdleTimeout = orDefault(cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.ReadHeaderTimeout = orDefault(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	cfg.StreamIdleTimeout = orDefault(cfg.StreamIdleTimeout, DefaultStreamIdleTimeout)
	cfg.WriteTimeout = orDefault(cfg.WriteTimeout, DefaultWriteTimeout)
	if cfg.ResetGuard == nil {
		cfg.ResetGuard = func() *resetguard.Guard { return resetguard.New(0, 0) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Stats == nil {
		cfg.Stats = nopStats{}
	}
	return cfg
}

// orDefault maps 0 to def and a negative duration to 0 (off).
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// ServeConn serves HTTP/2 on c until the client closes it, a connection
// error, Abort, or a drain completes, and returns after every handler of
// the connection returned. It owns c and closes it.
//
// When ctx is done the connection drains: GOAWAY (NO_ERROR) with the last
// stream id read, streams already open finish, newer ones are ignored (the
// client may retry them elsewhere), then the connection closes. The
// returned error is nil for such ends and for a client that hung up; it
// describes protocol errors and abuse otherwise.
func (s *Server) ServeConn(ctx context.Context, c net.Conn, opts ConnOpts) error {
	if opts.Handler == nil {
		_ = c.Close()
		return errNoHandler
	}
	cn := s.newConn(c, &opts)
	cn.drainCtx = ctx // watched once the server preface is out (serve)
	if opts.Abort != nil {
		stopAbort := context.AfterFunc(opts.Abort, func() { cn.abort(errAborted) })
		defer stopAbort()
	}
	err := cn.serve()
	cn.handlers.Wait()
	cn.release()
	return err
}

// Protocol constants (RFC 9113).
const (
	initialWindow   = 65535
	maxWindow       = 1<<31 - 1
	minMaxFrameSize = 1 << 14
	maxMaxFrameSize = 1<<24 - 1
)
