// Package storetest is the conformance suite every store.Store backend runs
// from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... fresh, empty store; t.Cleanup closes it ... })
//	}
//
// Run covers reads and writes, revision checks, PutAll atomicity, List order
// and watches. RunReopen covers persistence for backends whose data outlives
// a Store value.
package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/trellis-mesh/trellis/internal/store"
)

// eventTimeout bounds every wait for a watch event or channel close.
const eventTimeout = 5 * time.Second

// Run runs the conformance suite. newStore must return a fresh, empty store
// and arrange for it to be closed when t ends.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"ReplaceBumpsRevision", testReplace},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"InvalidRecord", testInvalidRecord},
		{"DataIsCopied", testDataIsCopied},
		{"CASConflict", testCASConflict},
		{"CASOnMissingRecord", testCASOnMissing},
		{"PutAllStoresEverything", testPutAll},
		{"PutAllIsAtomic", testPutAllAtomic},
		{"PutAllEmpty", testPutAllEmpty},
		{"CreateOnlyIfAbsent", testCreateOnlyIfAbsent},
		{"ListOrderAndKindFilter", testListOrder},
		{"RevisionsGrow", testRevisionsGrow},
		{"WatchKindInOrder", testWatchKind},
		{"WatchAllKinds", testWatchAllKinds},
		{"WatchOnlyAfterCall", testWatchOnlyAfterCall},
		{"WatchEndsWithContext", testWatchEndsWithContext},
		{"SlowWatcherDoesNotBlockWriters", testSlowWatcher},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// Opener opens the same underlying storage on every call.
type Opener func() (store.Store, error)

// RunReopen checks that records and the revision counter survive closing and
// reopening a store. newOpener must return an Opener for fresh, empty
// storage private to t.
func RunReopen(t *testing.T, newOpener func(t *testing.T) Opener) {
	t.Helper()
	t.Run("ReopenKeepsRecords", func(t *testing.T) {
		open := newOpener(t)
		ctx := testContext(t)
		st, err := open()
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		want := putAll(ctx, t, st, rec("A", "ns", "one", "1"), rec("B", "ns", "two", "2"))
		last := mustPut(ctx, t, st, rec("A", "ns", "gone", "x"))
		if err := st.Delete(ctx, "A", "ns", "gone"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}

		st, err = open()
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		got := mustList(ctx, t, st, "")
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("List after reopen (-want +got):\n%s", diff)
		}
		next := mustPut(ctx, t, st, rec("A", "ns", "three", "3"))
		if next.Revision <= last.Revision {
			t.Errorf("revision after reopen = %d, want > %d (the counter must persist)", next.Revision, last.Revision)
		}
	})
}

// rec builds a record with string data.
func rec(kind, namespace, name, data string) store.Record {
	return store.Record{Kind: kind, Namespace: namespace, Name: name, Data: []byte(data)}
}

// testContext is cancelled when t ends.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(ctx context.Context, t *testing.T, st store.Store, r store.Record) store.Record {
	t.Helper()
	out, err := st.Put(ctx, r)
	if err != nil {
		t.Fatalf("Put %s %s/%s: %v", r.Kind, r.Namespace, r.Name, err)
	}
	return out
}

func putAll(ctx context.Context, t *testing.T, st store.Store, recs ...store.Record) []store.Record {
	t.Helper()
	out, err := st.PutAll(ctx, recs)
	if err != nil {
		t.Fatalf("PutAll: %v", err)
	}
	return out
}

func mustGet(ctx context.Context, t *testing.T, st store.Store, kind, namespace, name string) store.Record {
	t.Helper()
	got, err := st.Get(ctx, kind, namespace, name)
	if err != nil {
		t.Fatalf("Get %s %s/%s: %v", kind, namespace, name, err)
	}
	return got
}

func mustList(ctx context.Context, t *testing.T, st store.Store, kind string) []store.Record {
	t.Helper()
	got, err := st.List(ctx, kind)
	if err != nil {
		t.Fatalf("List %q: %v", kind, err)
	}
	return got
}

func wantErrIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error = %v, want one wrapping %v", what, err, target)
	}
}

// diffRecords compares records, treating nil and empty data alike.
func diffRecords(want, got any) string {
	return cmp.Diff(want, got, cmpopts.EquateEmpty())
}
