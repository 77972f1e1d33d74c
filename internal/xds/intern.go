package xds

import (
	"crypto/sha256"
	"sync"
	"weak"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// digest is the SHA-256 of a resource's canonical encoding (canonical.go).
type digest [sha256.Size]byte

// resourceTable interns the resources given to SetResources, so that every
// node's snapshot holding equal content holds the same object:
//
//	compiled resource ──identity, or plain encoding──► canonical digest
//	                                                        │
//	                                                        ▼
//	                                  the one object served for that content
//
// A compiler builds a service's clusters and endpoints once per rebuild and
// an upstream's route configuration once per caller, so without it a mesh's
// snapshots hold one copy of equal content per caller and per rebuild that
// produced it. The maps hold weak pointers: an entry never keeps a resource
// alive, and entries of collected resources are swept as the maps grow.
// The digest also feeds each type's version, so a resource is encoded at
// most once per object, not once per node.
type resourceTable struct {
	anys      *anyMemo
	listeners internTable[listenerv3.Listener]
	routes    internTable[routev3.RouteConfiguration]
	clusters  internTable[clusterv3.Cluster]
	endpoints internTable[endpointv3.ClusterLoadAssignment]
}

func newResourceTable() *resourceTable {
	return &resourceTable{anys: newAnyMemo()}
}

// The accessors of a nil table return nil: nothing interned or remembered.
func (r *resourceTable) anyMemo() *anyMemo {
	if r == nil {
		return nil
	}
	return r.anys
}

func (r *resourceTable) listenerTable() *internTable[listenerv3.Listener] {
	if r == nil {
		return nil
	}
	return &r.listeners
}

func (r *resourceTable) routeTable() *internTable[routev3.RouteConfiguration] {
	if r == nil {
		return nil
	}
	return &r.routes
}

func (r *resourceTable) clusterTable() *internTable[clusterv3.Cluster] {
	if r == nil {
		return nil
	}
	return &r.clusters
}

func (r *resourceTable) endpointTable() *internTable[endpointv3.ClusterLoadAssignment] {
	if r == nil {
		return nil
	}
	return &r.endpoints
}

// internTable is a resourceTable for one resource type.
type internTable[T any] struct {
	mu      sync.Mutex
	digests map[weak.Pointer[T]]digest // every live object seen → its (canonical) digest
	shared  map[digest]weak.Pointer[T] // canonical digest → the object served for it
	byPlain map[digest]weak.Pointer[T] // digest of a plain deterministic encoding → the object served for it
	sweepAt int                        // sweep collected entries when digests grows to this
}

// minSweep is the size below which an internTable is not swept.
const minSweep = 1024

// encodeBufs are scratch buffers for plain encodings.
var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// intern returns the object to serve for res (res itself, or an earlier
// object with equal canonical encoding) and the digest of that encoding.
// A nil table interns nothing. Resources given to it must never be modified
// afterwards.
//
// Three ways, cheapest first: res was seen before (a service's cluster
// given to every caller); res has the plain deterministic encoding of an
// object served already (a recompiled node's unchanged resources: one
// encoding and one SHA-256, no Any decoded); else its canonical encoding is
// worked out (canonical.go), which decodes and re-encodes its Anys.
func intern[T any, M interface {
	*T
	proto.Message
}](t *internTable[T], anys *anyMemo, res M) (M, digest, error) {
	if t == nil {
		b, err := anys.canonicalBytes(res)
		if err != nil {
			return nil, digest{}, err
		}
		return res, sha256.Sum256(b), nil
	}
	key := weak.Make((*T)(res))
	t.mu.Lock()
	if d, ok := t.digests[key]; ok {
		served := t.servedLocked(d, key, res)
		t.mu.Unlock()
		return served, d, nil
	}
	t.mu.Unlock()

	bp := encodeBufs.Get().(*[]byte)
	defer encodeBufs.Put(bp)
	plain, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend((*bp)[:0], res)
	if err != nil {
		return nil, digest{}, err
	}
	*bp = plain[:0]
	pd := digest(sha256.Sum256(plain))
	t.mu.Lock()
	if p := t.byPlain[pd].Value(); p != nil {
		if d, ok := t.digests[weak.Make(p)]; ok {
			t.digests[key] = d // res may be given to other nodes too
			t.mu.Unlock()
			return M(p), d, nil
		}
	}
	t.mu.Unlock()

	d, err := anys.canonicalDigest(res, plain)
	if err != nil {
		return nil, digest{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.digests == nil {
		t.digests, t.shared, t.byPlain = map[weak.Pointer[T]]digest{}, map[digest]weak.Pointer[T]{}, map[digest]weak.Pointer[T]{}
	}
	t.digests[key] = d
	served := t.servedLocked(d, key, res)
	t.byPlain[pd] = weak.Make((*T)(served))
	if len(t.digests) >= t.sweepAt {
		t.sweep()
	}
	return served, d, nil
}

// servedLocked returns the object served for digest d, making res (whose
// weak pointer is key) that object if there is none alive; t.mu is held.
func (t *internTable[T]) servedLocked(d digest, key weak.Pointer[T], res *T) *T {
	if p := t.shared[d].Value(); p != nil {
		return p
	}
	t.shared[d] = key
	return res
}

// sweep drops the entries of collected objects; t.mu is held. The next
// sweep comes when the table has doubled, so sweeping costs O(1) per entry.
func (t *internTable[T]) sweep() {
	for k := range t.digests {
		if k.Value() == nil {
			delete(t.digests, k)
		}
	}
	for _, m := range []map[digest]weak.Pointer[T]{t.shared, t.byPlain} {
		for d, k := range m {
			if k.Value() == nil {
				delete(m, d)
			}
		}
	}
	t.sweepAt = max(2*len(t.digests), minSweep)
}

// size reports how many objects and contents t holds entries for (tests).
func (t *internTable[T]) size() (objects, contents int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.digests), len(t.shared)
}
