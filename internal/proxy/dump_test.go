package proxy

import (
	"testing"
	"unsafe"

	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// encodedSet is what the xDS client passes to UpdateEncoded: every resource
// of set encoded, by type URL and name.
func encodedSet(t *testing.T, set *resources.Set) map[string]map[string][]byte {
	t.Helper()
	enc := map[string]map[string][]byte{}
	add := func(typeURL, name string, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if enc[typeURL] == nil {
			enc[typeURL] = map[string][]byte{}
		}
		enc[typeURL][name] = b
	}
	for n, m := range set.Listeners {
		add(resources.ListenerType, n, m)
	}
	for n, m := range set.Routes {
		add(resources.RouteType, n, m)
	}
	for n, m := range set.Clusters {
		add(resources.ClusterType, n, m)
	}
	for n, m := range set.Endpoints {
		add(resources.EndpointType, n, m)
	}
	return enc
}

func freshAddrs(t *testing.T, set *resources.Set) *resources.Set {
	t.Helper()
	for _, l := range set.Listeners {
		l.Address = proxytest.Addr(t, proxytest.FreeAddr(t))
	}
	return set
}

// TestUpdateEncodedSharesEncodings: the proxy keeps the caller's encodings
// for /config_dump rather than the decoded set or a copy, and dumps the
// same as when it encodes the set itself.
func TestUpdateEncodedSharesEncodings(t *testing.T) {
	id := proxytest.NewCA(t, trustDomain).Identity(t, clientID)
	set := freshAddrs(t, validSet(t))
	enc := encodedSet(t, set)

	shared := newProxy(t, id)
	if err := shared.UpdateEncoded(set, enc); err != nil {
		t.Fatal(err)
	}
	for name, b := range enc[resources.ClusterType] {
		if got := shared.cfg.Load().applied.clusters[name]; &got[0] != &b[0] {
			t.Errorf("cluster %q: the proxy keeps a copy of the encoding", name)
		}
	}
	own := newProxy(t, id)
	if err := own.Update(freshAddrs(t, validSet(t))); err != nil {
		t.Fatal(err)
	}
	a, err := shared.ConfigDump()
	if err != nil {
		t.Fatal(err)
	}
	b, err := own.ConfigDump()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfigDump(a)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseConfigDump(b)
	if err != nil {
		t.Fatal(err)
	}
	// Listener addresses differ between the two proxies; the rest is equal.
	got.Listeners, want.Listeners = nil, nil
	if len(got.Clusters) == 0 || !proto.Equal(got.Clusters[outCluster], want.Clusters[outCluster]) ||
		!proto.Equal(got.Routes[outName], want.Routes[outName]) || len(got.Endpoints) != len(want.Endpoints) {
		t.Errorf("dumps differ:\nencoded: %s\nown: %s", a, b)
	}
}

// TestAppliedFromMismatch: encodings that are not exactly the set's are not
// trusted; the set is encoded instead.
func TestAppliedFromMismatch(t *testing.T) {
	set := validSet(t)
	cases := map[string]func(map[string]map[string][]byte){
		"missing type":     func(enc map[string]map[string][]byte) { delete(enc, resources.RouteType) },
		"missing resource": func(enc map[string]map[string][]byte) { delete(enc[resources.ClusterType], outCluster) },
		"extra resource":   func(enc map[string]map[string][]byte) { enc[resources.ListenerType]["other"] = []byte{} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			enc := encodedSet(t, set)
			mutate(enc)
			a, err := appliedFrom(set, enc)
			if err != nil {
				t.Fatal(err)
			}
			back, err := a.decode()
			if err != nil {
				t.Fatal(err)
			}
			for n, c := range set.Clusters {
				if !proto.Equal(c, back.Clusters[n]) {
					t.Errorf("cluster %q not as applied", n)
				}
			}
			if len(back.Listeners) != len(set.Listeners) || len(back.Routes) != len(set.Routes) || len(back.Endpoints) != len(set.Endpoints) {
				t.Errorf("decoded %d/%d/%d listeners/routes/endpoints, want %d/%d/%d", len(back.Listeners), len(back.Routes),
					len(back.Endpoints), len(set.Listeners), len(set.Routes), len(set.Endpoints))
			}
		})
	}
}

// TestEncodeSetPacksOneBlockPerType: the encodings of a type lie end to end
// in one allocation, each capped at its length, and decode to the set.
func TestEncodeSetPacksOneBlockPerType(t *testing.T) {
	set := validSet(t)
	a, err := encodeSet(set)
	if err != nil {
		t.Fatal(err)
	}
	names := resources.SortedKeys(a.clusters)
	if len(names) < 2 {
		t.Fatalf("validSet has %d clusters, the test needs two", len(names))
	}
	for i, name := range names {
		b := a.clusters[name]
		if len(b) == 0 || cap(b) != len(b) {
			t.Fatalf("cluster %q: len %d cap %d (appending to one would overwrite the next)", name, len(b), cap(b))
		}
		if i > 0 {
			prev := a.clusters[names[i-1]]
			if uintptr(unsafe.Pointer(unsafe.SliceData(prev)))+uintptr(len(prev)) != uintptr(unsafe.Pointer(unsafe.SliceData(b))) {
				t.Errorf("clusters %q and %q are not in one block", names[i-1], name)
			}
		}
	}
	back, err := a.decode()
	if err != nil {
		t.Fatal(err)
	}
	for n, c := range set.Clusters {
		if !proto.Equal(c, back.Clusters[n]) {
			t.Errorf("cluster %q does not decode to what was applied", n)
		}
	}
}
