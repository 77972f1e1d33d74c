package proxy

import "sync"

// connSet tracks a listener's open connections so that shutdown can reach
// them. Once closed it refuses new ones, so a connection accepted during
// shutdown is never left behind. It is touched once per connection, never
// per request.
type connSet[C comparable] struct {
	mu     sync.Mutex
	conns  map[C]struct{}
	closed bool
}

// add tracks c; false means shutdown began and the caller must close c.
func (s *connSet[C]) add(c C) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = map[C]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet[C]) remove(c C) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// each calls f for every tracked connection, under the set's lock.
func (s *connSet[C]) each(f func(C)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		f(c)
	}
}

// close refuses new connections and calls f for every tracked one.
func (s *connSet[C]) close(f func(C)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		f(c)
	}
	s.conns = nil
}
