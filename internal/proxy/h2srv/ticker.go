package h2srv

import "time"

// ticker runs a connection's timeouts on one timer, so that the request
// path pays for none of them: activity is counted, and each tick compares
// the counts with the previous tick's.
type ticker struct {
	t     *time.Timer
	every time.Duration

	// the timer's goroutine only
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
	t.every = max(shortest/4, time.Millisecond)
	t.t = time.AfterFunc(t.every, c.onTick)
}

func (t *ticker) stop() {
	if t.t != nil {
		t.t.Stop()
	}
}

func (c *conn) onTick() {
	t, cfg := &c.ticker, &c.s.cfg
	if f := c.w.flushes.Load(); c.w.flushing.Load() && f == t.lastFlushes {
		t.stuckFor += t.every
	} else {
		t.stuckFor, t.lastFlushes = 0, f
	}
	if cfg.WriteTimeout > 0 && t.stuckFor >= cfg.WriteTimeout {
		c.s.log.Debug("closing HTTP/2 connection: write blocked", "remote", c.remote, "for", t.stuckFor)
		c.abort(errWriteTimeout)
		return
	}
	var idle []*stream
	c.smu.Lock()
	if c.closing {
		c.smu.Unlock()
		return
	}
	if len(c.streams) == 0 && c.opened == t.lastOpened {
		t.idleFor += t.every
	} else {
		t.idleFor = 0
	}
	t.lastOpened = c.opened
	if cfg.StreamIdleTimeout > 0 {
		for _, st := range c.streams {
			if a := st.activity.Load(); a != st.seenAct {
				st.seenAct, st.idleFor = a, 0
				continue
			}
			if st.idleFor += t.every; st.idleFor >= cfg.StreamIdleTimeout {
				idle = append(idle, st)
			}
		}
	}
	c.smu.Unlock()
	for _, st := range idle {
		c.streamIdle(st)
	}
	if cfg.IdleTimeout > 0 && t.idleFor >= cfg.IdleTimeout {
		c.startDrain()
	}
	t.t.Reset(t.every) // last: the next tick must not overlap this one
}
