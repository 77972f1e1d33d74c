package jwtauthn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// KeyCache limits and timings.
const (
	MaxJWKSSize     = 1 << 20          // bytes of a JWKS response read at most
	IdleTimeout     = 10 * time.Minute // an entry no Filter uses stops refreshing after this
	MinRetryBackoff = time.Second      // first retry after a failed fetch, doubling...
	MaxRetryBackoff = time.Minute      // ...up to this
	MinKickInterval = 30 * time.Second // early re-fetches (unknown kid, no keys) at most this often
)

// KeyCache fetches remote JWKS documents and keeps them across config updates. Owned by
// the Proxy; its goroutines stop when ctx ends.
type KeyCache struct {
	ctx    context.Context
	client *http.Client
	log    *slog.Logger
	timing timing

	mu      sync.Mutex
	entries map[remoteSpec]*remoteEntry
}

// timing holds the KeyCache's durations; tests shorten them.
type timing struct {
	idle, minBackoff, maxBackoff, minKick time.Duration
}

// NewKeyCache returns an empty cache. Fetches use client without following redirects
// (as Envoy's JWKS fetcher), each bounded by its http_uri.timeout.
func NewKeyCache(ctx context.Context, client *http.Client, log *slog.Logger) *KeyCache {
	if client == nil {
		client = http.DefaultClient
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &KeyCache{
		ctx:     ctx,
		client:  &c,
		log:     log.With("component", "jwks"),
		timing:  timing{idle: IdleTimeout, minBackoff: MinRetryBackoff, maxBackoff: MaxRetryBackoff, minKick: MinKickInterval},
		entries: make(map[remoteSpec]*remoteEntry),
	}
}

// remoteEntry is one remote JWKS: its last good key set and the goroutine refreshing it.
type remoteEntry struct {
	spec remoteSpec
	keys atomic.Pointer[keySet] // nil until the first successful fetch

	refs      atomic.Int64 // live Filters using the entry
	idleSince atomic.Int64 // unix nanoseconds when refs last dropped to 0
	lastFetch atomic.Int64 // unix nanoseconds of the last fetch started (or kick accepted)
	minKick   time.Duration
	kicks     chan struct{}
}

// acquire returns the entry for spec, creating it (and starting its fetch) if needed.
func (c *KeyCache) acquire(spec remoteSpec) *remoteEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[spec]
	if e == nil {
		e = &remoteEntry{spec: spec, minKick: c.timing.minKick, kicks: make(chan struct{}, 1)}
		e.lastFetch.Store(time.Now().UnixNano())
		c.entries[spec] = e
		if c.ctx.Err() == nil {
			go c.run(e)
		}
	}
	e.refs.Add(1)
	return e
}

func (e *remoteEntry) release() {
	if e.refs.Add(-1) == 0 {
		e.idleSince.Store(time.Now().UnixNano())
	}
}

// kick asks for an early fetch when the last one started at least minKick ago; it
// never blocks.
func (e *remoteEntry) kick() {
	now := time.Now().UnixNano()
	last := e.lastFetch.Load()
	if now-last < int64(e.minKick) || !e.lastFetch.CompareAndSwap(last, now) {
		return
	}
	select {
	case e.kicks <- struct{}{}:
	default:
	}
}

// run fetches e at once, then every cache_duration, retrying failures with backoff and
// keeping the last good keys; it returns when ctx ends or e has been idle too long.
func (c *KeyCache) run(e *remoteEntry) {
	log := c.log.With("uri", e.spec.uri)
	backoff := c.timing.minBackoff
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-timer.C:
		case <-e.kicks:
			timer.Stop()
		}
		if c.removeIfIdle(e) {
			log.Info("JWKS no longer used; stopped refreshing")
			return
		}
		wait := e.spec.cacheDuration
		e.lastFetch.Store(time.Now().UnixNano())
		n, err := c.fetch(e)
		select { // a kick that arrived during this fetch asked for what it just did
		case <-e.kicks:
		default:
		}
		switch {
		case err != nil && c.ctx.Err() != nil:
			return
		case err != nil:
			wait = backoff
			backoff = min(2*backoff, c.timing.maxBackoff)
			log.Warn("JWKS fetch failed; keeping the last good keys", "err", err, "retry_in", wait, "have_keys", e.keys.Load() != nil)
		default:
			backoff = c.timing.minBackoff
			log.Debug("JWKS fetched", "keys", n)
		}
		timer.Reset(wait)
	}
}

// removeIfIdle drops e from the cache when no Filter has used it for the idle timeout.
func (c *KeyCache) removeIfIdle(e *remoteEntry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.refs.Load() > 0 || time.Since(time.Unix(0, e.idleSince.Load())) < c.timing.idle {
		return false
	}
	delete(c.entries, e.spec)
	return true
}

// fetch gets and parses the JWKS, and publishes it when it has a usable key.
func (c *KeyCache) fetch(e *remoteEntry) (int, error) {
	ctx, cancel := context.WithTimeout(c.ctx, e.spec.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.spec.uri, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return 0, fmt.Errorf("reading the body: %w", err)
	}
	if len(body) > MaxJWKSSize {
		return 0, errors.New("body larger than 1 MiB")
	}
	ks, skipped, err := parseJWKS(body)
	if len(skipped) > 0 {
		c.log.Warn("JWKS keys skipped", "uri", e.spec.uri, "skipped", skipped)
	}
	if err != nil {
		return 0, err
	}
	e.keys.Store(ks)
	return len(ks.keys), nil
}
