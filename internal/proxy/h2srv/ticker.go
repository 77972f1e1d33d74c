package h2srv

import (
	"sync"
	"sync/atomic"
	"time"
)

// ticker runs a connection's timeouts on one timer, so that the request
// path pays for none of them: activity is counted, and each tick compares
// the counts with the previous tick's. It ticks at a quarter of the
// shortest timeout in use: the connection's, or a shorter one a handler
// set for its stream (WatchIdle), from then on.
type ticker struct {
	mu      sync.Mutex
	t       *time.Timer
	every   time.Duration
	everyNs atomic.Int64 // every, for atMost's check without the lock
	running bool         // onTick is running: it re-arms the timer when done
	stopped bool

	// onTick's own (set before the timer is first armed)
	last        time.Time
	lastFlushes uint64
	stuckFor    time.Duration
	lastOpened  uint64
	idleFor     time.Duration
}

func (t *ticker) start(c *conn) {
	cfg := &c.s.cfg
	var shortest time.Duration
	for _, d := range [...]time.Duration{cfg.IdleTimeout, cfg.StreamIdleTimeout, cfg.WriteTimeout} {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	if shortest == 0 {
		return
	}
	t.atMost(c, shortest/4)
}

// atMost makes the ticker tick at least every d (1 ms at the least).
func (t *ticker) atMost(c *conn, d time.Duration) {
	d = max(d, time.Millisecond)
	if e := t.everyNs.Load(); e > 0 && int64(d) >= e {
		return // the common case: no lock
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.stopped || t.t != nil && d >= t.every:
	case t.t == nil:
		t.every, t.last = d, time.Now()
		t.everyNs.Store(int64(d))
		t.t = time.AfterFunc(d, c.onTick)
	default:
		t.every = d
		t.everyNs.Store(int64(d))
		if !t.running {
			t.t.Reset(d)
		}
	}
}

func (t *ticker) stop() {
	t.mu.Lock()
	t.stopped = true
	if t.t != nil {
		t.t.Stop()
	}
	t.mu.Unlock()
}

// enter starts a tick; false when another is running or the ticker
// stopped.
func (t *ticker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.running || t.stopped {
		return false
	}
	t.running = true
	return true
}

// leave ends a tick, arming the next one unless again is false.
func (t *ticker) leave(again bool) {
	t.mu.Lock()
	t.running = false
	if again && !t.stopped {
		t.t.Reset(t.every)
	}
	t.mu.Unlock()
}

func (c *conn) onTick() {
	t, cfg := &c.ticker, &c.s.cfg
	if !t.enter() {
		return
	}
	now := time.Now()
	elapsed := now.Sub(t.last)
	t.last = now
	if f := c.w.flushes.Load(); c.w.flushing.Load() && f == t.lastFlushes {
		t.stuckFor += elapsed
	} else {
		t.stuckFor, t.lastFlushes = 0, f
	}
	if cfg.WriteTimeout > 0 && t.stuckFor >= cfg.WriteTimeout {
		c.s.log.Debug("closing HTTP/2 connection: write blocked", "remote", c.remote, "for", t.stuckFor)
		c.abort(errWriteTimeout)
		t.leave(false)
		return
	}
	var idle []*stream
	c.smu.Lock()
	if c.closing {
		c.smu.Unlock()
		t.leave(false)
		return
	}
	if len(c.streams) == 0 && c.opened == t.lastOpened {
		t.idleFor += elapsed
	} else {
		t.idleFor = 0
	}
	t.lastOpened = c.opened
	for _, st := range c.streams {
		timeout := cfg.StreamIdleTimeout
		if d := st.idleTimeout.Load(); d != 0 {
			timeout = time.Duration(max(d, 0))
		}
		if timeout <= 0 {
			continue
		}
		if a := st.activity.Load(); a != st.seenAct {
			st.seenAct, st.idleFor = a, 0
			continue
		}
		if st.idleFor += elapsed; st.idleFor >= timeout {
			st.idleFor = 0 // a watched stream gets another period to answer
			idle = append(idle, st)
		}
	}
	if len(idle) > 0 {
		// Ended on a goroutine of their own: streamIdle may wait for the
		// write lock, which a write blocked on the client holds until this
		// ticker aborts it. Counted as a handler (before closing is set, so
		// before ServeConn waits for them).
		c.handlers.Add(1)
	}
	c.smu.Unlock()
	if len(idle) > 0 {
		go func() {
			defer c.handlers.Done()
			for _, st := range idle {
				c.streamIdle(st)
			}
		}()
	}
	c.releaseIdleWorkers()
	if cfg.IdleTimeout > 0 && t.idleFor >= cfg.IdleTimeout {
		c.startDrain()
	}
	t.leave(true) // last: the next tick must not overlap this one
}
