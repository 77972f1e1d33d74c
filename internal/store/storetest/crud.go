package storetest

import (
	"testing"

	"github.com/trellis-mesh/trellis/internal/store"
)

func testCreateAndGet(t *testing.T, st store.Store) {
	ctx := testContext(t)
	tests := []store.Record{
		rec("Workload", "default", "reviews-v1", `{"service":"reviews"}`),
		rec("CARoot", "trellis-system", "root", `{}`),
		rec("MeshConfig", "", "mesh", `{"a":1}`), // cluster-scoped: empty namespace
		{Kind: "Empty", Namespace: "default", Name: "nodata"},
	}
	for _, in := range tests {
		out := mustPut(ctx, t, st, in)
		if out.Revision == 0 {
			t.Errorf("Put %s/%s returned revision 0, want a revision", in.Namespace, in.Name)
		}
		want := in
		want.Revision = out.Revision
		if diff := diffRecords(want, out); diff != "" {
			t.Errorf("Put returned (-want +got):\n%s", diff)
		}
		got := mustGet(ctx, t, st, in.Kind, in.Namespace, in.Name)
		if diff := diffRecords(want, got); diff != "" {
			t.Errorf("Get (-want +got):\n%s", diff)
		}
	}
}

func testReplace(t *testing.T, st store.Store) {
	ctx := testContext(t)
	first := mustPut(ctx, t, st, rec("A", "ns", "x", "v1"))
	second := mustPut(ctx, t, st, rec("A", "ns", "x", "v2"))
	if second.Revision <= first.Revision {
		t.Errorf("second Put revision = %d, want > %d", second.Revision, first.Revision)
	}
	got := mustGet(ctx, t, st, "A", "ns", "x")
	if diff := diffRecords(second, got); diff != "" {
		t.Errorf("Get after replace (-want +got):\n%s", diff)
	}
	if n := len(mustList(ctx, t, st, "A")); n != 1 {
		t.Errorf("List after replace has %d records, want 1", n)
	}
}

func testNotFound(t *testing.T, st store.Store) {
	ctx := testContext(t)
	mustPut(ctx, t, st, rec("A", "ns", "x", "v"))
	tests := []struct{ kind, ns, name string }{
		{"A", "ns", "y"},
		{"A", "other", "x"},
		{"B", "ns", "x"},
	}
	for _, tt := range tests {
		_, err := st.Get(ctx, tt.kind, tt.ns, tt.name)
		wantErrIs(t, "Get "+tt.kind+" "+tt.ns+"/"+tt.name, err, store.ErrNotFound)
		err = st.Delete(ctx, tt.kind, tt.ns, tt.name)
		wantErrIs(t, "Delete "+tt.kind+" "+tt.ns+"/"+tt.name, err, store.ErrNotFound)
	}
	if got := mustList(ctx, t, st, "B"); len(got) != 0 {
		t.Errorf("List of an unused kind = %v, want none", got)
	}
}

func testDelete(t *testing.T, st store.Store) {
	ctx := testContext(t)
	mustPut(ctx, t, st, rec("A", "ns", "x", "v"))
	keep := mustPut(ctx, t, st, rec("A", "ns", "y", "v"))
	if err := st.Delete(ctx, "A", "ns", "x"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := st.Get(ctx, "A", "ns", "x")
	wantErrIs(t, "Get after Delete", err, store.ErrNotFound)
	wantErrIs(t, "second Delete", st.Delete(ctx, "A", "ns", "x"), store.ErrNotFound)
	if diff := diffRecords([]store.Record{keep}, mustList(ctx, t, st, "A")); diff != "" {
		t.Errorf("List after Delete (-want +got):\n%s", diff)
	}
}

func testInvalidRecord(t *testing.T, st store.Store) {
	ctx := testContext(t)
	tests := []struct {
		name string
		rec  store.Record
	}{
		{"empty kind", rec("", "ns", "x", "v")},
		{"empty name", rec("A", "ns", "", "v")},
	}
	for _, tt := range tests {
		if _, err := st.Put(ctx, tt.rec); err == nil {
			t.Errorf("Put with %s: no error, want one", tt.name)
		}
	}
	if got := mustList(ctx, t, st, ""); len(got) != 0 {
		t.Errorf("invalid Puts stored %v, want nothing", got)
	}
}

func testDataIsCopied(t *testing.T, st store.Store) {
	ctx := testContext(t)
	in := rec("A", "ns", "x", "original")
	mustPut(ctx, t, st, in)
	in.Data[0] = 'X' // the caller reuses its buffer
	got := mustGet(ctx, t, st, "A", "ns", "x")
	if string(got.Data) != "original" {
		t.Errorf("stored data changed with the caller's buffer: %q", got.Data)
	}
	got.Data[0] = 'Y' // the caller scribbles on what it read
	if again := mustGet(ctx, t, st, "A", "ns", "x"); string(again.Data) != "original" {
		t.Errorf("stored data changed with a returned buffer: %q", again.Data)
	}
}

func testCASConflict(t *testing.T, st store.Store) {
	ctx := testContext(t)
	v1 := mustPut(ctx, t, st, rec("A", "ns", "x", "v1"))
	v2 := mustPut(ctx, t, st, store.Record{Kind: "A", Namespace: "ns", Name: "x", Revision: v1.Revision, Data: []byte("v2")})
	if v2.Revision <= v1.Revision {
		t.Errorf("CAS Put revision = %d, want > %d", v2.Revision, v1.Revision)
	}
	stale := store.Record{Kind: "A", Namespace: "ns", Name: "x", Revision: v1.Revision, Data: []byte("stale")}
	_, err := st.Put(ctx, stale)
	wantErrIs(t, "Put with a stale revision", err, store.ErrConflict)
	if diff := diffRecords(v2, mustGet(ctx, t, st, "A", "ns", "x")); diff != "" {
		t.Errorf("record after a failed CAS (-want +got):\n%s", diff)
	}
}

func testCASOnMissing(t *testing.T, st store.Store) {
	ctx := testContext(t)
	_, err := st.Put(ctx, store.Record{Kind: "A", Namespace: "ns", Name: "x", Revision: 7, Data: []byte("v")})
	wantErrIs(t, "Put with a revision on a missing record", err, store.ErrConflict)
	_, err = st.Get(ctx, "A", "ns", "x")
	wantErrIs(t, "Get after the failed Put", err, store.ErrNotFound)
}

func testPutAll(t *testing.T, st store.Store) {
	ctx := testContext(t)
	before := mustPut(ctx, t, st, rec("A", "ns", "old", "v"))
	in := []store.Record{rec("B", "ns", "b", "1"), rec("A", "ns", "a", "2"), rec("A", "ns", "old", "3")}
	out := putAll(ctx, t, st, in...)
	if len(out) != len(in) {
		t.Fatalf("PutAll returned %d records, want %d", len(out), len(in))
	}
	for i, got := range out {
		if got.Revision <= before.Revision {
			t.Errorf("PutAll record %d revision = %d, want > %d", i, got.Revision, before.Revision)
		}
		if i > 0 && got.Revision < out[i-1].Revision {
			t.Errorf("PutAll record %d revision = %d, less than record %d's %d", i, got.Revision, i-1, out[i-1].Revision)
		}
		want := in[i]
		want.Revision = got.Revision
		if diff := diffRecords(want, got); diff != "" {
			t.Errorf("PutAll record %d (-want +got):\n%s", i, diff)
		}
		if diff := diffRecords(got, mustGet(ctx, t, st, got.Kind, got.Namespace, got.Name)); diff != "" {
			t.Errorf("Get record %d after PutAll (-want +got):\n%s", i, diff)
		}
	}
}

func testPutAllAtomic(t *testing.T, st store.Store) {
	ctx := testContext(t)
	v1 := mustPut(ctx, t, st, rec("A", "ns", "x", "v1"))
	v2 := mustPut(ctx, t, st, store.Record{Kind: "A", Namespace: "ns", Name: "x", Revision: v1.Revision, Data: []byte("v2")})
	before := mustList(ctx, t, st, "")
	tests := []struct {
		name  string
		batch []store.Record
	}{
		{"stale CAS last", []store.Record{
			rec("A", "ns", "new", "n"),
			rec("B", "ns", "other", "o"),
			{Kind: "A", Namespace: "ns", Name: "x", Revision: v1.Revision, Data: []byte("stale")},
		}},
		{"stale CAS first", []store.Record{
			{Kind: "A", Namespace: "ns", Name: "x", Revision: v1.Revision, Data: []byte("stale")},
			rec("A", "ns", "new", "n"),
		}},
		{"CAS on a missing record", []store.Record{
			rec("A", "ns", "x", "overwrite"),
			{Kind: "A", Namespace: "ns", Name: "missing", Revision: v2.Revision, Data: []byte("m")},
		}},
	}
	for _, tt := range tests {
		_, err := st.PutAll(ctx, tt.batch)
		wantErrIs(t, "PutAll with "+tt.name, err, store.ErrConflict)
		if diff := diffRecords(before, mustList(ctx, t, st, "")); diff != "" {
			t.Errorf("PutAll with %s stored something (-want +got):\n%s", tt.name, diff)
		}
	}
	_, err := st.PutAll(ctx, []store.Record{rec("A", "ns", "new", "n"), rec("", "ns", "bad", "b")})
	if err == nil {
		t.Errorf("PutAll with an invalid record: no error, want one")
	}
	if diff := diffRecords(before, mustList(ctx, t, st, "")); diff != "" {
		t.Errorf("PutAll with an invalid record stored something (-want +got):\n%s", diff)
	}
}

func testPutAllEmpty(t *testing.T, st store.Store) {
	ctx := testContext(t)
	out, err := st.PutAll(ctx, nil)
	if err != nil {
		t.Fatalf("PutAll(nil): %v", err)
	}
	if len(out) != 0 {
		t.Errorf("PutAll(nil) = %v, want none", out)
	}
}

func testListOrder(t *testing.T, st store.Store) {
	ctx := testContext(t)
	// Written out of order on purpose; "ab" sorts after "a" as a kind and
	// must not be listed with it.
	for _, r := range []store.Record{
		rec("b", "ns2", "a", ""), rec("a", "ns2", "a", ""), rec("ab", "ns", "a", ""),
		rec("a", "ns1", "z", ""), rec("a", "ns1", "b", ""), rec("b", "ns1", "c", ""),
		rec("a", "", "cluster", ""), rec("a", "ns1", "a", ""),
	} {
		mustPut(ctx, t, st, r)
	}
	type key struct{ Kind, Namespace, Name string }
	keys := func(recs []store.Record) []key {
		out := make([]key, 0, len(recs))
		for _, r := range recs {
			out = append(out, key{r.Kind, r.Namespace, r.Name})
		}
		return out
	}
	tests := []struct {
		kind string
		want []key
	}{
		{"", []key{
			{"a", "", "cluster"}, {"a", "ns1", "a"}, {"a", "ns1", "b"}, {"a", "ns1", "z"}, {"a", "ns2", "a"},
			{"ab", "ns", "a"}, {"b", "ns1", "c"}, {"b", "ns2", "a"},
		}},
		{"a", []key{{"a", "", "cluster"}, {"a", "ns1", "a"}, {"a", "ns1", "b"}, {"a", "ns1", "z"}, {"a", "ns2", "a"}}},
		{"ab", []key{{"ab", "ns", "a"}}},
		{"b", []key{{"b", "ns1", "c"}, {"b", "ns2", "a"}}},
		{"c", nil},
	}
	for _, tt := range tests {
		if diff := diffRecords(tt.want, keys(mustList(ctx, t, st, tt.kind))); diff != "" {
			t.Errorf("List(%q) (-want +got):\n%s", tt.kind, diff)
		}
	}
}

func testRevisionsGrow(t *testing.T, st store.Store) {
	ctx := testContext(t)
	var last uint64
	check := func(what string, rev uint64) {
		t.Helper()
		if rev <= last {
			t.Errorf("%s: revision %d, want > %d", what, rev, last)
		}
		last = rev
	}
	check("put a", mustPut(ctx, t, st, rec("A", "ns", "a", "1")).Revision)
	check("put b (other kind)", mustPut(ctx, t, st, rec("B", "ns", "b", "1")).Revision)
	check("replace a", mustPut(ctx, t, st, rec("A", "ns", "a", "2")).Revision)
	if err := st.Delete(ctx, "A", "ns", "a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	check("recreate a after delete", mustPut(ctx, t, st, rec("A", "ns", "a", "3")).Revision)
	for i, r := range putAll(ctx, t, st, rec("A", "ns", "c", ""), rec("B", "ns", "d", "")) {
		if r.Revision < last || (i == 0 && r.Revision == last) {
			t.Errorf("PutAll record %d: revision %d, want > %d", i, r.Revision, last)
		}
		last = r.Revision
	}
}

func testCreateOnlyIfAbsent(t *testing.T, st store.Store) {
	c := st
	ctx := testContext(t)
	first, err := c.Create(ctx, rec("A", "ns", "x", "first"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if first.Revision == 0 {
		t.Errorf("Create returned revision 0")
	}
	_, err = c.Create(ctx, rec("A", "ns", "x", "second"))
	wantErrIs(t, "Create of an existing record", err, store.ErrConflict)
	if diff := diffRecords(first, mustGet(ctx, t, st, "A", "ns", "x")); diff != "" {
		t.Errorf("record after a refused Create (-want +got):\n%s", diff)
	}
	if err := st.Delete(ctx, "A", "ns", "x"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	again, err := c.Create(ctx, rec("A", "ns", "x", "again"))
	if err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	if again.Revision <= first.Revision {
		t.Errorf("Create after Delete revision = %d, want > %d", again.Revision, first.Revision)
	}
}
