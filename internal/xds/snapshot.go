package xds

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// typeOrder is the order in which types are reported in combined versions.
var typeOrder = []struct{ url, short string }{
	{resources.ListenerType, "lds"},
	{resources.RouteType, "rds"},
	{resources.ClusterType, "cds"},
	{resources.EndpointType, "eds"},
}

// buildSnapshot turns a Set into a go-control-plane snapshot whose per-type
// version is a content hash of that type's resources.
func buildSnapshot(set *resources.Set) (*cachev3.Snapshot, error) { return buildSnapshotIn(set, nil) }

// buildSnapshotIn is buildSnapshot with resources interned in table (nil:
// none): the snapshot may hold, instead of a resource of set, an equal one
// given earlier.
func buildSnapshotIn(set *resources.Set, table *resourceTable) (*cachev3.Snapshot, error) {
	if set == nil {
		return nil, errors.New("nil resource set")
	}
	snap := &cachev3.Snapshot{}
	add := func(index types.ResponseType, typeURL string, items []types.Resource, version string, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", typeURL, err)
		}
		snap.Resources[index] = cachev3.NewResources(version, items)
		return nil
	}
	items, version, err := hashed(table.listenerTable(), table.anyMemo(), set.Listeners)
	if err := add(types.Listener, resources.ListenerType, items, version, err); err != nil {
		return nil, err
	}
	items, version, err = hashed(table.routeTable(), table.anyMemo(), set.Routes)
	if err := add(types.Route, resources.RouteType, items, version, err); err != nil {
		return nil, err
	}
	items, version, err = hashed(table.clusterTable(), table.anyMemo(), set.Clusters)
	if err := add(types.Cluster, resources.ClusterType, items, version, err); err != nil {
		return nil, err
	}
	items, version, err = hashed(table.endpointTable(), table.anyMemo(), set.Endpoints)
	if err := add(types.Endpoint, resources.EndpointType, items, version, err); err != nil {
		return nil, err
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("inconsistent set (every EDS/RDS resource must be referenced, and every reference present): %w", err)
	}
	return snap, nil
}

// hashed returns the resources of one type in name order, interned in t,
// and their version: the first 16 hex digits of a SHA-256 over each name and the
// digest of its canonical proto encoding. Equal contents give equal
// versions.
func hashed[T any, M interface {
	*T
	proto.Message
}](t *internTable[T], anys *anyMemo, m map[string]M) ([]types.Resource, string, error) {
	h := sha256.New()
	items := make([]types.Resource, 0, len(m))
	for _, name := range resources.SortedKeys(m) {
		res := m[name]
		if res == nil || !res.ProtoReflect().IsValid() {
			return nil, "", fmt.Errorf("resource %q is nil", name)
		}
		if got := cachev3.GetResourceName(res); got != name {
			return nil, "", fmt.Errorf("resource keyed %q is named %q", name, got)
		}
		served, d, err := intern(t, anys, res)
		if err != nil {
			return nil, "", fmt.Errorf("resource %q: marshal: %w", name, err)
		}
		writeField(h, []byte(name))
		writeField(h, d[:])
		items = append(items, served)
	}
	return items, hex.EncodeToString(h.Sum(nil)[:8]), nil
}

func writeField(h interface{ Write([]byte) (int, error) }, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	_, _ = h.Write(n[:])
	_, _ = h.Write(b)
}

// snapshotVersions returns the version of each type of snap, by type URL.
func snapshotVersions(snap cachev3.ResourceSnapshot) map[string]string {
	out := make(map[string]string, len(typeOrder))
	for _, t := range typeOrder {
		out[t.url] = snap.GetVersion(t.url)
	}
	return out
}

// combinedVersion joins per-type versions: "lds=…,rds=…,cds=…,eds=…",
// leaving out types without a version.
func combinedVersion(versions map[string]string) string {
	parts := make([]string, 0, len(typeOrder))
	for _, t := range typeOrder {
		if v := versions[t.url]; v != "" {
			parts = append(parts, t.short+"="+v)
		}
	}
	return strings.Join(parts, ",")
}
