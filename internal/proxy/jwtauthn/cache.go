package jwtauthn

import (
	"sync"
	"sync/atomic"
)

// Verified-token cache defaults (Envoy's JwtCacheConfig defaults).
const (
	DefaultTokenCacheSize     = 100
	DefaultTokenCacheMaxToken = 4096
)

// tokenCache remembers tokens whose signature verified, so that a client repeating its
// token skips parsing and signature work. A hit is used only when the token comes from
// the same location and its provider still has the very key set that verified it (a
// refreshed JWKS re-verifies once); exp, nbf and max_lifetime are checked again on every
// hit. Reads are lock-free (sync.Map); when full, the cache is replaced by an empty one,
// which bounds it without an LRU list to lock.
type tokenCache struct {
	size, maxToken int
	m              atomic.Pointer[sync.Map] // string → *cachedToken
	n              atomic.Int64
}

type cachedToken struct {
	t   *token
	p   *provider
	loc *location
	ks  *keySet
	o   Outcome
}

func newTokenCache(size, maxToken int) *tokenCache {
	c := &tokenCache{size: size, maxToken: maxToken}
	c.m.Store(new(sync.Map))
	return c
}

// get returns the entry for raw when it may stand for a fresh verification at loc.
func (c *tokenCache) get(raw string, loc *location) *cachedToken {
	if c == nil || len(raw) > c.maxToken {
		return nil
	}
	v, ok := c.m.Load().Load(raw)
	if !ok {
		return nil
	}
	e := v.(*cachedToken)
	if e.loc != loc || e.p.currentKeys() != e.ks {
		return nil
	}
	return e
}

func (c *tokenCache) put(raw string, e *cachedToken) {
	if c == nil || len(raw) > c.maxToken {
		return
	}
	if c.n.Add(1) > int64(c.size) {
		c.m.Store(new(sync.Map))
		c.n.Store(1)
	}
	c.m.Load().Store(raw, e)
}
