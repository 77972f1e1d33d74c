package h2cli

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"time"
)

// Defaults of the zero Options fields.
const (
	DefaultPingInterval      = 30 * time.Second // like net/http's HTTP2Config.SendPingTimeout in the proxy
	DefaultPingTimeout       = 15 * time.Second
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultMaxHeaderListSize = 64 << 10 // Envoy's max_response_headers_kb default is 60 KiB
	DefaultMaxHeaderFields   = 100      // Envoy's max_headers_count default
	DefaultStreamWindow      = 1 << 20
	DefaultConnWindow        = 16 << 20
)

const (
	// maxTransparentRetries bounds how often the pool sends a request
	// again by itself when the server did not process it and the whole
	// request is still at hand (no body, or a body held in memory).
	maxTransparentRetries = 2
	// maxInlineBody: a request body up to this size that is already in
	// memory (GetBody set, or a body that says it is complete) is sent
	// with the HEADERS on the caller's goroutine.
	maxInlineBody = 64 << 10
	// defaultMaxConcurrent is the stream limit of a server whose first
	// SETTINGS has no SETTINGS_MAX_CONCURRENT_STREAMS ("unlimited").
	defaultMaxConcurrent = 1000
	maxStreamID          = 1<<31 - 1
	initialWindow        = 1<<16 - 1 // both directions, until SETTINGS and WINDOW_UPDATE say otherwise
	writeBufSize         = 32 << 10
	readBufSize          = 32 << 10
	maxPendingControl    = 256 // queued PING/SETTINGS acks before the peer counts as flooding
	max1xxResponses      = 16
)

// Options configure a Pool. Dial is required.
type Options struct {
	// Dial connects to an endpoint address ("host:port"): TCP, or TLS with
	// its handshake done (a *tls.Conn whose ALPN, if any, is "h2"). Its
	// errors are returned by RoundTrip unchanged in the chain, so a caller
	// recognises its own connect-failure type.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// MaxRequestsPerConn: a connection that took this many requests takes
	// no more and closes when its last one ends (0: unlimited).
	MaxRequestsPerConn uint32
	// MaxConnDuration: a connection this old takes no new request and
	// closes when its last one ends (0: unlimited).
	MaxConnDuration time.Duration
	// IdleTimeout closes a connection without streams for this long
	// (0: never).
	IdleTimeout time.Duration
	// PingInterval: when no frame arrived for between one and two
	// intervals, a PING is sent; without its acknowledgement within
	// PingTimeout the connection is closed. 0: DefaultPingInterval;
	// negative: no keepalive.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// HandshakeTimeout bounds the wait for the server's first SETTINGS
	// after the connection is established.
	HandshakeTimeout time.Duration
	// MaxHeaderListSize and MaxHeaderFields bound a response header (or
	// trailer) block: decoded size as HTTP/2 counts it, and field count.
	MaxHeaderListSize uint32
	MaxHeaderFields   int
	// StreamWindow and ConnWindow are the receive windows advertised to
	// the server, per stream and for the connection.
	StreamWindow int32
	ConnWindow   int32
	Logger       *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	o.PingTimeout = cmp.Or(o.PingTimeout, DefaultPingTimeout)
	o.HandshakeTimeout = cmp.Or(o.HandshakeTimeout, DefaultHandshakeTimeout)
	o.MaxHeaderListSize = cmp.Or(o.MaxHeaderListSize, DefaultMaxHeaderListSize)
	o.MaxHeaderFields = cmp.Or(o.MaxHeaderFields, DefaultMaxHeaderFields)
	if o.StreamWindow <= 0 {
		o.StreamWindow = DefaultStreamWindow
	}
	if o.ConnWindow <= 0 {
		o.ConnWindow = max(DefaultConnWindow, o.StreamWindow)
	}
	o.ConnWindow = max(o.ConnWindow, initialWindow) // a connection window cannot shrink below the initial one
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
