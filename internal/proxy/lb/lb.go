// Package lb picks an upstream endpoint for each request with Envoy's load
// balancing policies.
//
//	SetHosts(hosts)  (once per change of the usable set: EDS update, ejection)
//	      │  builds the ring (RING_HASH) or lookup table (MAGLEV)
//	      ▼
//	atomic.Pointer[hostSet] ◄── Pick(key, attempt): one atomic load, no lock
//	      │
//	      ├─ ROUND_ROBIN    shared atomic counter
//	      ├─ LEAST_REQUEST  choice_count random hosts, fewest active requests
//	      ├─ RANDOM         per-thread random generator
//	      ├─ RING_HASH      binary search over xxHash64("addr_i") entries
//	      └─ MAGLEV         table[hash % table_size]
//
// The hash key of RING_HASH and MAGLEV comes from the route's hash policy
// (Key, HashPolicy); a request without one gets a random key, as in Envoy.
// The package knows nothing of HTTP: the request paths evaluate the policy
// and hand a Key in.
package lb

import (
	"math/rand/v2"
	"sync/atomic"
)

// Policy is a cluster's lb_policy.
type Policy int

// The supported policies.
const (
	RoundRobin Policy = iota
	LeastRequest
	Random
	RingHash
	Maglev
)

func (p Policy) String() string {
	switch p {
	case RoundRobin:
		return "ROUND_ROBIN"
	case LeastRequest:
		return "LEAST_REQUEST"
	case Random:
		return "RANDOM"
	case RingHash:
		return "RING_HASH"
	case Maglev:
		return "MAGLEV"
	}
	return "UNKNOWN"
}

// Envoy's defaults.
const (
	DefaultChoiceCount    = 2
	DefaultMinRingSize    = 1024
	DefaultMaxRingSize    = 8 << 20
	DefaultMaglevSize     = 65537
	MaxMaglevSize         = 5000011
	DefaultPanicThreshold = 50.0
)

// Config is the translated load balancing configuration of a cluster.
type Config struct {
	Policy      Policy
	ChoiceCount uint32 // LEAST_REQUEST
	MinRingSize uint64 // RING_HASH
	MaxRingSize uint64
	TableSize   uint64 // MAGLEV
	// PanicThreshold is common_lb_config.healthy_panic_threshold in percent:
	// below this share of usable hosts the cluster balances over all hosts.
	PanicThreshold float64
}

// DefaultConfig is ROUND_ROBIN with Envoy's defaults for everything else.
func DefaultConfig() Config {
	return Config{
		Policy:         RoundRobin,
		ChoiceCount:    DefaultChoiceCount,
		MinRingSize:    DefaultMinRingSize,
		MaxRingSize:    DefaultMaxRingSize,
		TableSize:      DefaultMaglevSize,
		PanicThreshold: DefaultPanicThreshold,
	}
}

// Hashing reports whether picks use the request's hash key.
func (c Config) Hashing() bool { return c.Policy == RingHash || c.Policy == Maglev }

// Host is what the balancer needs of an endpoint.
type Host interface {
	comparable
	// Address is the endpoint's "ip:port", hashed into rings and tables.
	Address() string
	// ActiveRequests is the number of requests in flight (LEAST_REQUEST).
	ActiveRequests() int64
}

// Key is a request's hash key. The zero Key means "no key".
type Key struct {
	hash uint64
	ok   bool
}

// KeyOf returns a Key with hash h.
func KeyOf(h uint64) Key { return Key{hash: h, ok: true} }

// Hash returns the key and whether there is one.
func (k Key) Hash() (uint64, bool) { return k.hash, k.ok }

// Balancer picks hosts of type H. It is safe for concurrent use; Pick takes
// no lock.
type Balancer[H Host] struct {
	cfg Config
	rr  atomic.Uint64
	cur atomic.Pointer[hostSet[H]]
}

type hostSet[H Host] struct {
	hosts []H
	ring  []ringEntry // RING_HASH, sorted by hash
	table []uint32    // MAGLEV: indices into hosts
}

// New returns a balancer without hosts.
func New[H Host](cfg Config) *Balancer[H] {
	b := &Balancer[H]{cfg: cfg}
	b.cur.Store(&hostSet[H]{})
	return b
}

// Config returns the balancer's configuration.
func (b *Balancer[H]) Config() Config { return b.cfg }

// SetHosts replaces the hosts picked from. hosts is owned by the balancer
// afterwards. A ring or table is built here, never per request.
func (b *Balancer[H]) SetHosts(hosts []H) {
	s := &hostSet[H]{hosts: hosts}
	switch b.cfg.Policy {
	case RingHash:
		s.ring = buildRing(hosts, b.cfg.MinRingSize, b.cfg.MaxRingSize)
	case Maglev:
		s.table = buildMaglev(hosts, b.cfg.TableSize)
	}
	b.cur.Store(s)
}

// Hosts returns the current hosts (not to be modified).
func (b *Balancer[H]) Hosts() []H { return b.cur.Load().hosts }

// Pick returns a host for a request with hash key k. attempt > 0 asks for an
// alternative to earlier picks of the same request (a retry host predicate
// rejected them): hash policies move along the ring or mutate the hash as
// Envoy does; the others simply pick again.
func (b *Balancer[H]) Pick(k Key, attempt uint32) (H, bool) {
	s := b.cur.Load()
	n := len(s.hosts)
	var zero H
	if n == 0 {
		return zero, false
	}
	if n == 1 {
		return s.hosts[0], true
	}
	switch b.cfg.Policy {
	case LeastRequest:
		return s.leastRequest(b.cfg.ChoiceCount), true
	case Random:
		return s.hosts[rand.Uint64N(uint64(n))], true
	case RingHash:
		h, ok := k.Hash()
		if !ok {
			h = rand.Uint64()
		}
		return s.hosts[s.ring[ringIndex(s.ring, h, attempt)].host], true
	case Maglev:
		h, ok := k.Hash()
		if !ok {
			h = rand.Uint64()
		}
		if attempt > 0 {
			// As Envoy: a value with most bits set changes the hash a lot.
			h ^= ^uint64(0) - uint64(attempt) + 1
		}
		return s.hosts[s.table[h%uint64(len(s.table))]], true
	default:
		i := b.rr.Add(1) - 1
		return s.hosts[i%uint64(n)], true
	}
}

// leastRequest samples choices hosts at random (with replacement, as Envoy)
// and returns the one with the fewest active requests; ties keep the first.
func (s *hostSet[H]) leastRequest(choices uint32) H {
	n := uint64(len(s.hosts))
	best := s.hosts[rand.Uint64N(n)]
	bestActive := best.ActiveRequests()
	for i := uint32(1); i < choices; i++ {
		h := s.hosts[rand.Uint64N(n)]
		if a := h.ActiveRequests(); a < bestActive {
			best, bestActive = h, a
		}
	}
	return best
}
