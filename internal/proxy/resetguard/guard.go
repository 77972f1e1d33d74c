// Package resetguard detects HTTP/2 clients that open streams only to reset
// them (the "rapid reset" attack, CVE-2023-44487), with Envoy's rule: once a
// connection has opened MinStreams streams, it is abusive when more than half
// of its streams were reset by the client within Lifetime of being opened.
// The caller closes an abusive connection (GOAWAY, then close).
//
// A Guard belongs to one connection and is safe for concurrent use: stream
// handlers report on their own goroutines.
package resetguard

import (
	"sync/atomic"
	"time"
)

// Envoy's defaults (overload.premature_reset_total_stream_count and
// overload.premature_reset_min_stream_lifetime_seconds).
const (
	DefaultMinStreams = 500
	DefaultLifetime   = time.Second
)

// Guard counts one connection's streams and its premature resets.
type Guard struct {
	minStreams uint64
	lifetime   time.Duration
	opened     atomic.Uint64
	premature  atomic.Uint64
	tripped    atomic.Bool
}

// New returns a guard with Envoy's thresholds; zero values take the defaults.
func New(minStreams int, lifetime time.Duration) *Guard {
	if minStreams <= 0 {
		minStreams = DefaultMinStreams
	}
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	return &Guard{minStreams: uint64(minStreams), lifetime: lifetime}
}

// Opened records a new stream.
func (g *Guard) Opened() { g.opened.Add(1) }

// Reset records a stream the client reset after living age, and reports
// whether the connection is now abusive. It reports true once: the caller
// that sees true closes the connection.
func (g *Guard) Reset(age time.Duration) bool {
	if age >= g.lifetime {
		return false
	}
	premature := g.premature.Add(1)
	opened := g.opened.Load()
	if opened < g.minStreams || 2*premature <= opened {
		return false
	}
	return g.tripped.CompareAndSwap(false, true)
}

// Tripped reports whether the connection was found abusive.
func (g *Guard) Tripped() bool { return g.tripped.Load() }

// Counts returns the streams opened and the premature resets so far.
func (g *Guard) Counts() (opened, premature uint64) {
	return g.opened.Load(), g.premature.Load()
}
