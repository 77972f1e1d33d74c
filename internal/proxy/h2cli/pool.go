package h2cli

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
)

// Pool keeps the HTTP/2 connections of one upstream cluster, by endpoint
// address, and is its http.RoundTripper. A request takes a stream on the
// oldest connection to req.URL.Host with room (under the server's
// SETTINGS_MAX_CONCURRENT_STREAMS, max requests and age); when none has
// room it waits for one, and for a new connection: at most one is dialed
// per endpoint at a time, on a goroutine of the pool.
type Pool struct {
	o      Options
	ctx    context.Context // dials; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // dial goroutines and read loops

	mu      sync.Mutex
	eps     map[string]*endpoint
	live    map[*conn]struct{} // every open connection, listed or draining
	retired bool
	closed  bool
}

// endpoint is the pool's state for one address (under the pool's mu,
// except waiters).
type endpoint struct {
	addr    string
	conns   []*conn // connections that may take streams, oldest first
	dialing bool
	dialGen uint64 // dials finished
	dialErr error  // of the last one
	wakec   chan struct{}
	waiters atomic.Int32 // requests waiting for a stream
}

// New returns a pool; Options.Dial is required.
func New(o Options) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{o: o.withDefaults(), ctx: ctx, cancel: cancel, eps: map[string]*endpoint{}, live: map[*conn]struct{}{}}
}

// RoundTrip sends req to req.URL.Host, with req.Host (or the URL's host)
// as :authority. It implements http.RoundTripper: the body is closed, the
// response body streams, and res.Trailer is filled before io.EOF.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	s := newStream()
	if err := s.rq.prepare(req); err != nil {
		s.rq.closeRequestBody(req)
		return nil, err
	}
	if req.URL.Host == "" || s.rq.ctx.Err() != nil {
		s.rq.release()
		s.rq.closeBody()
		if err := s.rq.ctx.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("h2cli: request URL has no host")
	}
	for try := 0; ; try++ {
		c, err := p.get(s.rq.ctx, req.URL.Host)
		if err != nil {
			s.rq.release()
			s.rq.closeBody()
			return nil, err
		}
		res, err := c.roundTrip(s)
		if err == nil {
			if !s.rq.writerStarted {
				s.rq.release()
			}
			return res, nil
		}
		if try < maxTransparentRetries && s.rq.ctx.Err() == nil && s.resendable(err) {
			s = s.again()
			continue
		}
		if !s.rq.writerStarted {
			s.rq.release()
			s.rq.closeBody()
		}
		return nil, err
	}
}

// resendable reports whether a failed stream's request can go again on
// another connection: nothing was sent, or the server did not process it
// and the whole request is still at hand.
func (s *stream) resendable(err error) bool {
	if errors.Is(err, errNotSent) {
		return true
	}
	return IsRefused(err) && !s.rq.writerStarted && s.rq.body == nil
}

// get returns a connection to addr with a stream slot reserved.
func (p *Pool) get(ctx context.Context, addr string) (*conn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		ep := p.eps[addr]
		if ep == nil {
			ep = &endpoint{addr: addr}
			p.eps[addr] = ep
		}
		for i := 0; i < len(ep.conns); i++ {
			c := ep.conns[i]
			ok, drained := c.tryReserve(p.retired)
			if drained {
				ep.conns = slices.Delete(ep.conns, i, i+1)
				i--
			}
			if ok {
				p.mu.Unlock()
				return c, nil
			}
		}
		if !ep.dialing {
			ep.dialing = true
			p.wg.Add(1)
			go p.dial(ep)
		}
		gen := ep.dialGen
		if ep.wakec == nil {
			ep.wakec = make(chan struct{})
		}
		wakec := ep.wakec
		ep.waiters.Add(1)
		p.mu.Unlock()
		select {
		case <-wakec:
		case <-ctx.Done():
			ep.waiters.Add(-1)
			return nil, ctx.Err()
		}
		ep.waiters.Add(-1)
		p.mu.Lock()
		err := ep.dialErr
		failed := ep.dialGen != gen && err != nil
		p.mu.Unlock()
		if failed {
			return nil, err // the dial this request waited for failed
		}
	}
}

// dial connects to ep and adds the connection once the server's SETTINGS
// arrived; waiters wake either way.
func (p *Pool) dial(ep *endpoint) {
	defer p.wg.Done()
	c, err := p.connect(ep)
	p.mu.Lock()
	ep.dialing = false
	ep.dialGen++
	ep.dialErr = err
	var orphan *conn
	if err == nil {
		if p.closed {
			orphan = c
		} else {
			ep.conns = append(ep.conns, c)
			p.live[c] = struct{}{}
		}
	}
	p.wakeLocked(ep)
	p.forgetLocked(ep)
	p.mu.Unlock()
	if orphan != nil {
		orphan.close(ErrClosed)
	}
}

func (p *Pool) connect(ep *endpoint) (*conn, error) {
	nc, err := p.o.Dial(p.ctx, ep.addr)
	if err != nil {
		return nil, err // unchanged: the caller's connect-failure type stays visible
	}
	c, err := newConn(p, ep, nc)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	if err := c.awaitSettings(); err != nil {
		c.close(err)
		return nil, err
	}
	return c, nil
}

// wake tells requests waiting for ep that something changed.
func (p *Pool) wake(ep *endpoint) {
	p.mu.Lock()
	p.wakeLocked(ep)
	p.mu.Unlock()
}

func (p *Pool) wakeLocked(ep *endpoint) {
	if ep.wakec != nil {
		close(ep.wakec)
		ep.wakec = nil
	}
}

// unlist takes c out of the connections that get new streams (it is
// draining, going away or closed).
func (p *Pool) unlist(c *conn) {
	p.mu.Lock()
	ep := c.ep
	if i := slices.Index(ep.conns, c); i >= 0 {
		ep.conns = slices.Delete(ep.conns, i, i+1)
	}
	p.wakeLocked(ep)
	p.forgetLocked(ep)
	p.mu.Unlock()
}

// remove forgets a closed connection.
func (p *Pool) remove(c *conn) {
	p.mu.Lock()
	delete(p.live, c)
	p.mu.Unlock()
	p.unlist(c)
}

// forgetLocked drops an endpoint with nothing left.
func (p *Pool) forgetLocked(ep *endpoint) {
	if len(ep.conns) == 0 && !ep.dialing && ep.waiters.Load() == 0 && p.eps[ep.addr] == ep {
		delete(p.eps, ep.addr)
	}
}

// CloseIdle closes the connections with no stream.
func (p *Pool) CloseIdle() {
	var idle []*conn
	p.mu.Lock()
	for _, ep := range p.eps {
		keep := ep.conns[:0]
		for _, c := range ep.conns {
			if c.drainIfIdle() {
				idle = append(idle, c)
				continue
			}
			keep = append(keep, c)
		}
		clear(ep.conns[len(keep):])
		ep.conns = keep
		p.forgetLocked(ep)
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.closeGracefully(errIdle)
	}
}

// Retire drains every connection: no config uses the pool any more. Idle
// connections close now, the others when their last stream ends; a
// request that still arrives gets a connection of its own, which closes
// after it.
func (p *Pool) Retire() {
	var conns []*conn
	p.mu.Lock()
	p.retired = true
	for _, ep := range p.eps {
		conns = append(conns, ep.conns...)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
}

// Close closes every connection at once (streams fail with ErrClosed) and
// waits for the pool's goroutines.
func (p *Pool) Close() error {
	var conns []*conn
	p.mu.Lock()
	p.closed, p.retired = true, true
	for c := range p.live {
		conns = append(conns, c)
	}
	for _, ep := range p.eps {
		p.wakeLocked(ep)
	}
	p.mu.Unlock()
	p.cancel()
	for _, c := range conns {
		c.close(ErrClosed)
	}
	p.wg.Wait()
	return nil
}
