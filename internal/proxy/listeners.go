package proxy

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Safe server defaults (DESIGN.md "Defaults that must be safe").
// maxConcurrentStreams also bounds an HTTP/2 rapid reset: Go's server runs
// at most this many handlers per connection and sends GOAWAY
// ENHANCE_YOUR_CALM when more than 4x wait. With 1000, 10,000 reset streams
// reached the app ~1,800 times and cost 1.5 s of CPU and +33 MiB; with 100,
// ~10 times and 80 ms (TestAttacks/h2-rapid-reset, docs/security.md).
// The premature-reset guard (h2abuse.go) then closes the connection.
const (
	readHeaderTimeout    = 10 * time.Second
	idleTimeout          = 5 * time.Minute
	maxHeaderBytes       = 64 << 10
	maxConcurrentStreams = 100
	drainTimeout         = 30 * time.Second // for listeners removed by an update
)

// DefaultMaxDownstreamConns bounds the open connections of one listener;
// one more is closed at accept (downstream_cx_overflow). Callers reach a
// sidecar through pooled keep-alive connections, so this is far above need
// and below the file descriptor limit of a service.
const DefaultMaxDownstreamConns = 10000

// boundListener is a listening socket and the server running on it.
type boundListener struct {
	key     string
	name    string
	address string
	ln      net.Listener
	tcp     *tcpServer // kindTCP
	h1      *h1Server  // kindHTTP (the fast path, or all handed to net/http)
	serve   func() error
	done    chan struct{} // closed when serve returns
}

// applyListeners binds the listeners of cfg that are new or changed. It
// returns them (not yet serving) and the bound listeners to drain; Update
// starts and drains them after swapping the config in. Unchanged listeners
// (same name, address and mode) keep their socket.
func (p *Proxy) applyListeners(cfg *runtimeConfig) (started, closing []*boundListener, err error) {
	heldBy := map[string]*boundListener{}
	for name, b := range p.bound {
		if lc := cfg.listeners[name]; lc == nil || lc.bindKey() != b.key {
			closing = append(closing, b)
			heldBy[b.address] = b
		}
	}
	names := make([]string, 0, len(cfg.listeners))
	for name := range cfg.listeners {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		lc := cfg.listeners[name]
		if b := p.bound[name]; b != nil && b.key == lc.bindKey() {
			continue
		}
		if old := heldBy[lc.address]; old != nil {
			_ = old.ln.Close() // free the address; its connections drain later
		}
		b, err := p.bind(lc)
		if err != nil {
			for _, s := range started {
				_ = s.ln.Close()
			}
			return nil, nil, fmt.Errorf("listener %q: address: %w", name, err)
		}
		started = append(started, b)
	}
	return started, closing, nil
}

// commitListeners starts serving the newly bound listeners and drains the
// replaced ones. Called with p.mu held, after the config swap.
func (p *Proxy) commitListeners(started, closing []*boundListener) {
	for _, b := range closing {
		if p.bound[b.name] == b {
			delete(p.bound, b.name)
		}
		// Free the address now, not in the drain goroutine: the next update
		// may bind it again at once (only connections drain).
		_ = b.ln.Close()
		p.draining.Add(1)
		go func() {
			defer p.draining.Done()
			ctx, cancel := context.WithTimeout(p.ctx, drainTimeout)
			defer cancel()
			b.shutdown(ctx)
		}()
	}
	for _, b := range started {
		p.bound[b.name] = b
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer close(b.done)
			if err := b.serve(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				p.log.Error("listener stopped", "listener", b.name, "address", b.address, "error", err)
			}
		}()
	}
}

func (p *Proxy) bind(lc *listenerConfig) (*boundListener, error) {
	var lcfg net.ListenConfig
	ln, err := lcfg.Listen(p.ctx, "tcp", lc.address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", lc.address, err)
	}
	b := &boundListener{key: lc.bindKey(), name: lc.name, address: lc.address, ln: ln, done: make(chan struct{})}
	if lc.kind == kindTCP {
		b.tcp = newTCPServer(p, lc, ln)
		b.serve = b.tcp.serve
		return b, nil
	}
	// The legacy mode (every request on net/http) shares the dispatcher,
	// which sniffs and handshakes, then hands every connection over.
	b.h1 = p.newH1Server(lc, ln)
	b.h1.legacy = p.legacyHTTP1
	b.serve = b.h1.serve
	return b, nil
}

// newHTTPServer returns the net/http server of a listener. handoff: it serves
// connections the fast path accepted (and counted) and handed over.
func (p *Proxy) newHTTPServer(lc *listenerConfig, handoff bool) *http.Server {
	stats := lc.stats
	mh := maxHeaderBytes
	if lc.maxHeaderKB > 0 && int(lc.maxHeaderKB)<<10 < mh {
		mh = int(lc.maxHeaderKB) << 10
	}
	srv := &http.Server{
		Handler:           &httpHandler{p: p, listener: lc.name},
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    mh,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxConcurrentStreams},
		Protocols:         new(http.Protocols),
		BaseContext:       func(net.Listener) context.Context { return p.ctx },
		ConnContext:       p.h2ConnContext(lc.name, stats), // h2abuse.go
		ErrorLog:          log.New(&serverLog{log: p.log.With("listener", lc.name), stats: stats}, "", 0),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				if !handoff {
					stats.active.Add(1)
				}
			case http.StateClosed, http.StateHijacked:
				stats.active.Add(-1)
			}
		},
	}
	// A listener's chains may be TLS (h2 by ALPN) and plaintext (h2c by
	// prior knowledge), and change with the config without a new server.
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	return srv
}

// shutdown stops accepting and drains until ctx ends, then force-closes.
func (b *boundListener) shutdown(ctx context.Context) {
	switch {
	case b.h1 != nil:
		b.h1.shutdown(ctx)
	default:
		b.tcp.shutdown(ctx)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
	}
}

// serverLog adapts net/http's error log to slog and counts TLS handshake
// failures, which net/http reports only there.
type serverLog struct {
	log   *slog.Logger
	stats *endpointStats
}

func (s *serverLog) Write(b []byte) (int, error) {
	msg := strings.TrimSpace(string(b))
	if strings.Contains(msg, "TLS handshake error") {
		s.stats.tlsFailures.Add(1)
		s.log.Debug("downstream tls handshake failed", "detail", msg)
		return len(b), nil
	}
	s.log.Warn("http server", "detail", msg)
	return len(b), nil
}
