package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/store"
)

// nextEvent waits for one event; it fails the test if the channel is closed
// or nothing arrives in time.
func nextEvent(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatalf("watch channel closed, want an event")
		}
		return ev
	case <-time.After(eventTimeout):
		t.Fatalf("no watch event after %v", eventTimeout)
	}
	return store.Event{}
}

// waitClosed drains ch until it is closed, failing the test after eventTimeout.
func waitClosed(t *testing.T, ch <-chan store.Event) {
	t.Helper()
	deadline := time.After(eventTimeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch channel not closed after %v", eventTimeout)
		}
	}
}

func watch(ctx context.Context, t *testing.T, st store.Store, kind string) <-chan store.Event {
	t.Helper()
	ch, err := st.Watch(ctx, kind)
	if err != nil {
		t.Fatalf("Watch(%q): %v", kind, err)
	}
	return ch
}

// expectEvents reads len(want) events and compares them, then checks that
// revisions grow strictly.
func expectEvents(t *testing.T, ch <-chan store.Event, want []store.Event) {
	t.Helper()
	var got []store.Event
	for range want {
		got = append(got, nextEvent(t, ch))
	}
	if diff := diffRecords(want, got); diff != "" {
		t.Errorf("watch events (-want +got):\n%s", diff)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Record.Revision <= got[i-1].Record.Revision {
			t.Errorf("event %d revision %d, not above event %d's %d", i, got[i].Record.Revision, i-1, got[i-1].Record.Revision)
		}
	}
}

func putEvent(r store.Record) store.Event { return store.Event{Type: store.EventPut, Record: r} }

// deleteEvent is the event a Delete of r should produce, with its revision
// taken from got (a deletion's revision is only visible in its event).
func deleteEvent(r store.Record, got uint64) store.Event {
	return store.Event{Type: store.EventDelete, Record: store.Record{
		Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Revision: got,
	}}
}

// testWatchKind checks that a watcher of one kind sees exactly that kind's
// puts and deletes, in revision order, and nothing for failed writes.
func testWatchKind(t *testing.T, st store.Store) {
	ctx := testContext(t)
	chA := watch(ctx, t, st, "A")
	chB := watch(ctx, t, st, "B")

	ax := mustPut(ctx, t, st, rec("A", "ns", "x", "1"))
	by := mustPut(ctx, t, st, rec("B", "ns", "y", "1"))
	az := mustPut(ctx, t, st, rec("A", "ns", "z", "1"))
	if _, err := st.Put(ctx, store.Record{Kind: "A", Namespace: "ns", Name: "z", Revision: ax.Revision}); err == nil {
		t.Fatalf("stale CAS Put succeeded")
	}
	if err := st.Delete(ctx, "A", "ns", "x"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	batch := putAll(ctx, t, st, rec("A", "ns", "w", "2"), rec("B", "ns", "q", "2"))
	if err := st.Delete(ctx, "B", "ns", "y"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	// A sentinel of each kind last: if it is the next event after the
	// expected ones, nothing else was delivered in between.
	sentA := mustPut(ctx, t, st, rec("A", "ns", "sentinel", ""))
	sentB := mustPut(ctx, t, st, rec("B", "ns", "sentinel", ""))

	// The deletion revisions are read from the events themselves, then
	// checked against the writes around them.
	gotA := []store.Event{nextEvent(t, chA), nextEvent(t, chA), nextEvent(t, chA), nextEvent(t, chA), nextEvent(t, chA)}
	delX := gotA[2].Record.Revision
	if delX <= az.Revision || delX >= batch[0].Revision {
		t.Errorf("delete event revision %d, want between %d and %d", delX, az.Revision, batch[0].Revision)
	}
	wantA := []store.Event{putEvent(ax), putEvent(az), deleteEvent(ax, delX), putEvent(batch[0]), putEvent(sentA)}
	if diff := diffRecords(wantA, gotA); diff != "" {
		t.Errorf("kind A events (-want +got):\n%s", diff)
	}

	gotB := []store.Event{nextEvent(t, chB), nextEvent(t, chB), nextEvent(t, chB), nextEvent(t, chB)}
	delY := gotB[2].Record.Revision
	if delY <= batch[1].Revision || delY >= sentA.Revision {
		t.Errorf("delete event revision %d, want between %d and %d", delY, batch[1].Revision, sentA.Revision)
	}
	wantB := []store.Event{putEvent(by), putEvent(batch[1]), deleteEvent(by, delY), putEvent(sentB)}
	if diff := diffRecords(wantB, gotB); diff != "" {
		t.Errorf("kind B events (-want +got):\n%s", diff)
	}
	if gotA[2].Record.Data != nil || gotB[2].Record.Data != nil {
		t.Errorf("delete events carry data %q, %q; want nil", gotA[2].Record.Data, gotB[2].Record.Data)
	}
}

func testWatchAllKinds(t *testing.T, st store.Store) {
	ctx := testContext(t)
	ch := watch(ctx, t, st, "")
	a := mustPut(ctx, t, st, rec("A", "ns", "a", "1"))
	b := mustPut(ctx, t, st, rec("B", "ns", "b", "1"))
	batch := putAll(ctx, t, st, rec("C", "", "c", "1"), rec("A", "ns", "a", "2"))
	expectEvents(t, ch, []store.Event{putEvent(a), putEvent(b), putEvent(batch[0]), putEvent(batch[1])})
}

func testWatchOnlyAfterCall(t *testing.T, st store.Store) {
	ctx := testContext(t)
	mustPut(ctx, t, st, rec("A", "ns", "before", "1"))
	ch := watch(ctx, t, st, "A")
	after := mustPut(ctx, t, st, rec("A", "ns", "after", "1"))
	expectEvents(t, ch, []store.Event{putEvent(after)})
}

func testWatchEndsWithContext(t *testing.T, st store.Store) {
	ctx, cancel := context.WithCancel(testContext(t))
	ch := watch(ctx, t, st, "A")
	other := watch(testContext(t), t, st, "A")
	mustPut(ctx, t, st, rec("A", "ns", "x", "1"))
	cancel()
	waitClosed(t, ch)

	// Other watchers and writers carry on.
	after := mustPut(testContext(t), t, st, rec("A", "ns", "y", "1"))
	if ev := nextEvent(t, other); ev.Record.Name != "x" {
		t.Errorf("other watcher's first event is %q, want x", ev.Record.Name)
	}
	expectEvents(t, other, []store.Event{putEvent(after)})

	// A watch on a context that has already ended ends at once.
	ch, err := st.Watch(ctx, "A")
	if err == nil {
		waitClosed(t, ch)
	}
}

func testSlowWatcher(t *testing.T, st store.Store) {
	const batches, perBatch = 50, 100
	ctx := testContext(t)
	slow := watch(ctx, t, st, "")

	// The writes run in their own goroutine so that a backend that blocks on
	// the slow watcher fails this test instead of hanging it.
	writeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		for b := range batches {
			recs := make([]store.Record, perBatch)
			for i := range recs {
				recs[i] = rec("S", "ns", fmt.Sprintf("r-%03d-%03d", b, i), "payload")
			}
			if _, err := st.PutAll(writeCtx, recs); err != nil {
				done <- fmt.Errorf("batch %d: %w", b, err)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("writes with a slow watcher: %v", err)
		}
	case <-writeCtx.Done():
		t.Fatalf("writes blocked by a watcher that does not read")
	}

	// Now the slow watcher reads. It must see a gap-free prefix of the
	// events, then either every event or a closed channel (so it re-lists).
	var seen int
	var last uint64
	deadline := time.After(eventTimeout)
	for seen < batches*perBatch {
		select {
		case ev, ok := <-slow:
			if !ok {
				t.Logf("slow watcher closed after %d of %d events", seen, batches*perBatch)
				checkWatchAgain(t, st)
				return
			}
			if ev.Record.Revision <= last {
				t.Fatalf("event %d revision %d, not above %d", seen, ev.Record.Revision, last)
			}
			last = ev.Record.Revision
			seen++
		case <-deadline:
			t.Fatalf("slow watcher got %d of %d events and its channel is still open", seen, batches*perBatch)
		}
	}
	checkWatchAgain(t, st)
}

// checkWatchAgain checks that a new watch works after one was dropped.
func checkWatchAgain(t *testing.T, st store.Store) {
	t.Helper()
	ctx := testContext(t)
	ch := watch(ctx, t, st, "S")
	r := mustPut(ctx, t, st, rec("S", "ns", "again", "1"))
	expectEvents(t, ch, []store.Event{putEvent(r)})
}
