package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// h2LimitPool is the transport of an HTTP/2 cluster with
// max_requests_per_connection or max_connection_duration when HTTP/2 is on
// net/http (TRELLIS_PROXY_H2=nethttp; otherwise h2cli keeps every HTTP/2
// cluster's connections, upstream.go). net/http's own
// pool cannot retire a connection after N requests or after an age, so this
// pool keeps its connections itself (net/http's Transport.NewClientConn) and
// retires them as Envoy does: a connection that reached either limit takes
// no new request, and closes once its requests in flight are done.
// Connections are never closed with mu held, and the state hook takes no
// lock: a ClientConn calls its hook synchronously from Reserve, RoundTrip,
// Body.Close and Close.
// Clusters without these limits use the plain http.Transport (upstream.go).
// It goes when the net/http fallback does (docs/adr/003).
type h2LimitPool struct {
	t           *http.Transport // dials, TLS and h2 settings of the cluster
	scheme      string          // "https" (mTLS) or "http" (h2c)
	maxRequests uint32          // 0: unlimited
	maxAge      time.Duration   // 0: unlimited
	idle        time.Duration   // an idle connection closes after this; 0: never
	now         func() time.Time

	mu      sync.Mutex
	conns   map[string][]*h2PoolConn // usable connections by endpoint address
	dialing map[string]*h2Dial       // one dial per endpoint at a time
	retired bool
}

// h2PoolConn is one connection and what the pool knows of it.
type h2PoolConn struct {
	cc       *http.ClientConn
	born     time.Time
	lastUsed time.Time
	used     uint32      // requests sent or reserved (under the pool's mu)
	draining atomic.Bool // takes no new request; closed when none is in flight
}

type h2Dial struct {
	done chan struct{}
	err  error
}

func newH2LimitPool(t *http.Transport, scheme string, maxRequests uint32, maxAge, idle time.Duration) *h2LimitPool {
	return &h2LimitPool{t: t, scheme: scheme, maxRequests: maxRequests, maxAge: maxAge, idle: idle, now: time.Now,
		conns: map[string][]*h2PoolConn{}, dialing: map[string]*h2Dial{}}
}

var errPoolRetired = errors.New("upstream transport retired")

// RoundTrip sends req on a connection to req.URL.Host that is under both
// limits, dialing one when none can take it.
func (p *h2LimitPool) RoundTrip(req *http.Request) (*http.Response, error) {
	pc, err := p.get(req.Context(), req.URL.Host)
	if err != nil {
		return nil, err
	}
	return pc.cc.RoundTrip(req)
}

// get returns a connection to addr with a reserved request slot.
func (p *h2LimitPool) get(ctx context.Context, addr string) (*h2PoolConn, error) {
	for {
		p.mu.Lock()
		if p.retired {
			p.mu.Unlock()
			return nil, errPoolRetired
		}
		pc, closing := p.reserveLocked(addr)
		p.mu.Unlock()
		closeConns(closing)
		if pc != nil {
			return pc, nil
		}
		p.mu.Lock()
		if d := p.dialing[addr]; d != nil {
			p.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if d.err != nil {
				return nil, d.err
			}
			continue // the new connection may have room
		}
		d := &h2Dial{done: make(chan struct{})}
		p.dialing[addr] = d
		p.mu.Unlock()
		cc, err := p.t.NewClientConn(ctx, p.scheme, addr)
		p.mu.Lock()
		delete(p.dialing, addr)
		d.err = err
		var orphan *http.ClientConn
		if err == nil {
			if p.retired {
				orphan = cc
				d.err = errPoolRetired
			} else {
				pc := &h2PoolConn{cc: cc, born: p.now()}
				pc.lastUsed = pc.born
				cc.SetStateHook(pc.changed)
				p.conns[addr] = append(p.conns[addr], pc)
			}
		}
		p.mu.Unlock()
		if orphan != nil {
			_ = orphan.Close()
		}
		close(d.done)
		if d.err != nil {
			return nil, d.err
		}
	}
}

// reserveLocked reserves a request on a usable connection to addr, and
// retires the connections past their limits (and idle ones past the idle
// timeout) on the way.
func (p *h2LimitPool) reserveLocked(addr string) (got *h2PoolConn, closing []*http.ClientConn) {
	now := p.now()
	list := p.conns[addr]
	keep := list[:0]
	for _, pc := range list {
		switch {
		case pc.cc.Err() != nil:
			continue // dead: net/http closed it
		case p.maxAge > 0 && now.Sub(pc.born) >= p.maxAge:
			closing = p.drainLocked(pc, closing)
			continue
		case p.idle > 0 && pc.cc.InFlight() == 0 && now.Sub(pc.lastUsed) >= p.idle:
			closing = append(closing, pc.cc)
			continue
		}
		if got == nil && pc.cc.Reserve() == nil {
			got = pc
			pc.used++
			pc.lastUsed = now
			if p.maxRequests > 0 && pc.used >= p.maxRequests {
				pc.draining.Store(true) // this request is its last: the hook closes it
				continue
			}
		}
		keep = append(keep, pc)
	}
	clear(list[len(keep):])
	p.conns[addr] = keep
	return got, closing
}

// drainLocked stops giving pc new requests and adds it to closing when none
// is in flight; otherwise its state hook closes it after the last one.
func (p *h2LimitPool) drainLocked(pc *h2PoolConn, closing []*http.ClientConn) []*http.ClientConn {
	pc.draining.Store(true)
	if pc.cc.InFlight() == 0 {
		closing = append(closing, pc.cc)
	}
	return closing
}

func closeConns(ccs []*http.ClientConn) {
	for _, cc := range ccs {
		_ = cc.Close()
	}
}

// changed is pc's state hook: a draining connection closes once its last
// request is done. Dead connections leave the pool at the next reserve.
// It runs inside net/http's calls (Reserve, RoundTrip, Body.Close), so it
// takes no lock and closes from another goroutine.
func (pc *h2PoolConn) changed(cc *http.ClientConn) {
	if pc.draining.Load() && cc.InFlight() == 0 && cc.Err() == nil {
		go cc.Close()
	}
}

// closeIdle closes the connections with nothing in flight.
func (p *h2LimitPool) closeIdle() {
	var closing []*http.ClientConn
	p.mu.Lock()
	for addr, list := range p.conns {
		keep := list[:0]
		for _, pc := range list {
			if pc.cc.InFlight() == 0 {
				closing = append(closing, pc.cc)
				continue
			}
			keep = append(keep, pc)
		}
		clear(list[len(keep):])
		p.conns[addr] = keep
	}
	p.mu.Unlock()
	closeConns(closing)
}

// retire drains every connection: no config uses the pool any more.
func (p *h2LimitPool) retire() {
	var closing []*http.ClientConn
	p.mu.Lock()
	p.retired = true
	for addr, list := range p.conns {
		for _, pc := range list {
			closing = p.drainLocked(pc, closing)
		}
		delete(p.conns, addr)
	}
	p.mu.Unlock()
	closeConns(closing)
}
