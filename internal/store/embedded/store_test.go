package embedded

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trellis-mesh/trellis/internal/store"
	"github.com/trellis-mesh/trellis/internal/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func openTemp(t *testing.T) *Store {
	t.Helper()
	st, err := Open(filepath.Join(t.TempDir(), "data", "trellis.db"), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func TestConformanceSmallWatchBuffer(t *testing.T) {
	// A tiny buffer makes the suite's slow watcher overflow and be closed.
	storetest.Run(t, func(t *testing.T) store.Store {
		st := openTemp(t)
		st.watchBuffer = 8
		return st
	})
}

func TestReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "trellis.db")
		return func() (store.Store, error) { return Open(path, nil) }
	})
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trellis.db")
	first, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer first.Close()
	start := time.Now()
	second, err := Open(path, nil)
	if err == nil {
		second.Close()
		t.Fatalf("second Open of a held file succeeded")
	}
	if !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("error = %q, want it to say the file is locked", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("second Open took %v, want about %v", took, lockTimeout)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("", nil); err == nil {
		t.Errorf("Open(\"\"): no error")
	}
	// A directory where the file should be.
	if _, err := Open(t.TempDir(), nil); err == nil {
		t.Errorf("Open(directory): no error")
	}
}

func TestCloseEndsWatchesAndOperations(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "trellis.db"), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx := context.Background()
	ch, err := st.Watch(ctx, "")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Errorf("got an event after Close, want a closed channel")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("watch channel still open after Close")
	}
	if err := st.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	rec := store.Record{Kind: "A", Namespace: "ns", Name: "x"}
	checks := map[string]error{
		"Put":    func() error { _, err := st.Put(ctx, rec); return err }(),
		"Create": func() error { _, err := st.Create(ctx, rec); return err }(),
		"Delete": st.Delete(ctx, "A", "ns", "x"),
		"Get":    func() error { _, err := st.Get(ctx, "A", "ns", "x"); return err }(),
		"List":   func() error { _, err := st.List(ctx, ""); return err }(),
		"Watch":  func() error { _, err := st.Watch(ctx, ""); return err }(),
	}
	for op, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: error = %v, want ErrClosed", op, err)
		}
	}
}

func TestCreate(t *testing.T) {
	st := openTemp(t)
	ctx := context.Background()
	first, err := st.Create(ctx, store.Record{Kind: "CARoot", Namespace: "trellis-system", Name: "root", Data: []byte("a")})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	_, err = st.Create(ctx, store.Record{Kind: "CARoot", Namespace: "trellis-system", Name: "root", Data: []byte("b")})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("second Create: error = %v, want ErrConflict", err)
	}
	got, err := st.Get(ctx, "CARoot", "trellis-system", "root")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Revision != first.Revision || string(got.Data) != "a" {
		t.Errorf("Get = rev %d %q, want rev %d %q", got.Revision, got.Data, first.Revision, "a")
	}
}

func TestCancelledContext(t *testing.T) {
	st := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := store.Record{Kind: "A", Namespace: "ns", Name: "x"}
	if _, err := st.Put(ctx, rec); !errors.Is(err, context.Canceled) {
		t.Errorf("Put: error = %v, want context.Canceled", err)
	}
	if _, err := st.Get(ctx, "A", "ns", "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: error = %v, want context.Canceled", err)
	}
	if _, err := st.Watch(ctx, "A"); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch: error = %v, want context.Canceled", err)
	}
}

func TestInvalidKeys(t *testing.T) {
	st := openTemp(t)
	ctx := context.Background()
	for _, rec := range []store.Record{
		{Kind: "A\x00B", Namespace: "ns", Name: "x"},
		{Kind: "A", Namespace: "n\x00s", Name: "x"},
		{Kind: "A", Namespace: "ns", Name: strings.Repeat("x", 40000)},
	} {
		if _, err := st.Put(ctx, rec); err == nil {
			t.Errorf("Put %q: no error", rec.Kind+"/"+rec.Namespace)
		}
	}
}
