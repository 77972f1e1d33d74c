package xds

import (
	"crypto/sha256"
	"runtime"
	"strconv"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// TestInternSharesEqualContent checks that equal resources given for
// different nodes are served as one object, that different content is not
// merged, and that digests match the canonical encoding.
func TestInternSharesEqualContent(t *testing.T) {
	table := newResourceTable()
	first, second := listenerWithMap(t), listenerWithMap(t)
	changed := listenerWithMap(t)
	changed.StatPrefix = "changed"
	canon, err := canonicalBytes(first)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		res       *listenerv3.Listener
		want      *listenerv3.Listener
		sameBytes bool
	}{
		{"first object is served as is", first, first, true},
		{"same object again", first, first, true},
		{"equal content, another object: the first is served", second, first, true},
		{"second object again: still the first", second, first, true},
		{"different content is kept apart", changed, changed, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, d, err := intern(table.listenerTable(), table.anyMemo(), tc.res)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("served %p, want %p", got, tc.want)
			}
			if same := d == sha256.Sum256(canon); same != tc.sameBytes {
				t.Errorf("digest equals the canonical encoding's: %v, want %v", same, tc.sameBytes)
			}
		})
	}
	runtime.KeepAlive(first)
	runtime.KeepAlive(second)
	runtime.KeepAlive(changed)
}

// TestInternSnapshotsShareResources checks that two nodes' snapshots of
// equal, separately built sets hold the same objects and versions.
func TestInternSnapshotsShareResources(t *testing.T) {
	table := newResourceTable()
	build := func() *resources.Set {
		set := resources.NewSet()
		set.Listeners["inbound|9080"] = listenerWithMap(t)
		return set
	}
	a, err := buildSnapshotIn(build(), table)
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildSnapshotIn(build(), table)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := buildSnapshot(build())
	if err != nil {
		t.Fatal(err)
	}
	la := a.GetResources(resources.ListenerType)["inbound|9080"]
	lb := b.GetResources(resources.ListenerType)["inbound|9080"]
	if la == nil || la != lb {
		t.Errorf("equal listeners of two nodes: %p and %p, want one object", la, lb)
	}
	for _, snap := range []interface{ GetVersion(string) string }{b, plain} {
		if got, want := snap.GetVersion(resources.ListenerType), a.GetVersion(resources.ListenerType); got != want {
			t.Errorf("version %q, want %q (interning must not change versions)", got, want)
		}
	}
}

// TestInternForgetsCollected checks that the table holds no resource alive:
// once no snapshot refers to them, their entries are swept.
func TestInternForgetsCollected(t *testing.T) {
	table := newResourceTable()
	tl := table.listenerTable()
	keep := listenerWithMap(t)
	keep.Name = "kept"
	if _, _, err := intern(tl, table.anyMemo(), keep); err != nil {
		t.Fatal(err)
	}
	for i := range 3 * minSweep {
		l := &listenerv3.Listener{Name: "l", StatPrefix: strconv.Itoa(i)}
		if _, _, err := intern(tl, table.anyMemo(), l); err != nil {
			t.Fatal(err)
		}
		if i%minSweep == 0 {
			runtime.GC()
		}
	}
	runtime.GC()
	tl.mu.Lock()
	tl.sweep()
	tl.mu.Unlock()
	objects, contents := tl.size()
	if objects > 2 || contents > 2 { // the kept one, and at most the loop's last
		t.Errorf("after GC the table holds %d objects and %d contents, want the collected ones swept", objects, contents)
	}
	got, _, err := intern(tl, table.anyMemo(), keep)
	if err != nil {
		t.Fatal(err)
	}
	if got != keep {
		t.Error("a live resource was forgotten")
	}
}

// TestInternPlainEncoding: a recompiled resource (another object, equal
// content) is found by its plain encoding, and one whose Anys are not
// canonical still gets the canonical digest and the served object.
func TestInternPlainEncoding(t *testing.T) {
	table := newResourceTable()
	tl := table.listenerTable()
	first, d0, err := intern(tl, table.anyMemo(), listenerWithMap(t))
	if err != nil {
		t.Fatal(err)
	}
	canon, err := canonicalBytes(first)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 { // listenerWithMap packs its Anys with random map order
		got, d, err := intern(tl, table.anyMemo(), listenerWithMap(t))
		if err != nil {
			t.Fatal(err)
		}
		if got != first || d != d0 || d != sha256.Sum256(canon) {
			t.Fatalf("pass %d: served %p (want %p), digest equal to the first's: %v, to the canonical encoding's: %v", i, got, first, d == d0, d == sha256.Sum256(canon))
		}
	}
	_, objects := tl.size()
	if objects != 1 {
		t.Errorf("one content, %d served objects", objects)
	}
}
