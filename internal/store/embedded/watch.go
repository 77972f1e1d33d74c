package embedded

import (
	"bytes"
	"context"
	"fmt"

	"github.com/trellis-mesh/trellis/internal/store"
)

// watcher is one Watch call. Its channel is the buffer: dispatch never
// blocks on it, and a watcher whose buffer is full is removed and its
// channel closed so that it re-lists.
type watcher struct {
	kind string
	ch   chan store.Event
	// stop unregisters the context.AfterFunc that removes the watcher when
	// its context ends.
	stop func() bool
}

// Watch delivers every change committed after the call, for kind ("" for all
// kinds), in revision order. The channel is closed when ctx ends, when the
// store is closed, or when the watcher falls more than the buffer size behind.
// Event data is the watcher's own copy.
func (s *Store) Watch(ctx context.Context, kind string) (<-chan store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("watch %q: %w", kind, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("watch %q: %w", kind, ErrClosed)
	}
	w := &watcher{kind: kind, ch: make(chan store.Event, s.watchBuffer)}
	s.watchers[w] = struct{}{}
	// No goroutine waits on ctx: the runtime calls this once ctx is done,
	// and removeWatcherLocked unregisters it when the watcher ends first.
	w.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.removeWatcherLocked(w)
	})
	return w.ch, nil
}

// removeWatcherLocked closes w's channel once. s.mu must be held.
func (s *Store) removeWatcherLocked(w *watcher) {
	if _, ok := s.watchers[w]; !ok {
		return
	}
	delete(s.watchers, w)
	close(w.ch)
	if w.stop != nil {
		w.stop()
	}
}

// dispatchLocked hands committed events to every interested watcher without
// blocking. s.mu must be held.
func (s *Store) dispatchLocked(evs []store.Event) {
	for w := range s.watchers {
		for _, ev := range evs {
			if w.kind != "" && w.kind != ev.Record.Kind {
				continue
			}
			if ev.Record.Data != nil {
				ev.Record.Data = bytes.Clone(ev.Record.Data)
			}
			select {
			case w.ch <- ev:
				continue
			default:
			}
			s.logger.Warn("watcher fell behind; closing its channel so it re-lists",
				"kind", w.kind, "buffer", cap(w.ch), "revision", ev.Record.Revision)
			s.removeWatcherLocked(w)
			break
		}
	}
}
