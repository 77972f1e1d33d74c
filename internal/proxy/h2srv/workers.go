package h2srv

// Handler goroutines are kept for the connection's next streams: a new
// goroutine starts with a small stack that a proxying handler grows
// (copying it) several times per request, and a go statement with
// arguments allocates. A goroutine done with its handler takes the next
// queued stream, else waits (idle) on the connection's workc for one that
// openStream hands it, up to maxIdleWorkers of them. Idle workers end with
// the connection (failStreams) or once it went a whole tick of its ticker
// without opening a stream (releaseIdleWorkers).

// maxIdleWorkers bounds a connection's idle handler goroutines: the
// streams in flight of a busy client connection (h2load -m 10, gRPC
// channels) find one, and a connection that had 100 streams at once
// keeps no more than this many stacks.
const maxIdleWorkers = 32

// nextStream returns the next stream for a goroutine whose handler
// returned: a queued one, else one handed to it while it waits idle; nil
// when the goroutine is to end.
func (c *conn) nextStream() *stream {
	c.smu.Lock()
	for len(c.queue) > 0 && !c.closing {
		st := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		if st.inTable { // else reset while it waited: never handled
			c.smu.Unlock()
			return st
		}
	}
	if len(c.queue) == 0 {
		c.queue = nil
	}
	c.running--
	c.w.busy.Add(-1)
	if c.closing || c.idle >= maxIdleWorkers {
		c.smu.Unlock()
		return nil
	}
	c.idle++
	c.smu.Unlock()
	return <-c.workc // nil: end (stopWorkers)
}

// stopWorkers ends n idle workers: each counted itself idle under smu,
// which the caller took from c.idle, and receives exactly one value.
func (c *conn) stopWorkers(n int) {
	for range n {
		c.workc <- nil
	}
}

// releaseIdleWorkers ends the idle workers of a connection that opened
// no stream since the last call (the ticker's).
func (c *conn) releaseIdleWorkers() {
	c.smu.Lock()
	n := 0
	if c.opened == c.idleSeen {
		n, c.idle = c.idle, 0
	}
	c.idleSeen = c.opened
	c.smu.Unlock()
	c.stopWorkers(n)
}
