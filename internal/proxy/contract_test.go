package proxy

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	// Register the typed configs the compiler packs in Anys.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// TestCompilerGoldenSetsAccepted applies every resource set the compiler's
// golden files hold (internal/compile/testdata, the other side of the xDS
// contract) and expects no NACK. Only data is read; proxy does not import
// compile.
func TestCompilerGoldenSetsAccepted(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "compile", "testdata", "*.golden.json"))
	if len(files) == 0 {
		t.Skip("no compiler golden files")
	}
	p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
	// Translation only: remote JWKS in the sets (mesh.example.com) are not
	// fetched by a key cache whose context has ended.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	p.jwtKeys = jwtauthn.NewKeyCache(done, nil, nil)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			set := loadGoldenSet(t, f)
			if _, err := p.build(set, nil); err != nil {
				t.Errorf("compiler output NACKed: %v", err)
			}
		})
	}
}

func loadGoldenSet(t *testing.T, path string) *resources.Set {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Listeners, Routes, Clusters, Endpoints []json.RawMessage
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	set := resources.NewSet()
	for _, raw := range doc.Listeners {
		var m listenerv3.Listener
		mustUnmarshal(t, raw, &m)
		set.Listeners[m.GetName()] = &m
	}
	for _, raw := range doc.Routes {
		var m routev3.RouteConfiguration
		mustUnmarshal(t, raw, &m)
		set.Routes[m.GetName()] = &m
	}
	for _, raw := range doc.Clusters {
		var m clusterv3.Cluster
		mustUnmarshal(t, raw, &m)
		set.Clusters[m.GetName()] = &m
	}
	for _, raw := range doc.Endpoints {
		var m endpointv3.ClusterLoadAssignment
		mustUnmarshal(t, raw, &m)
		set.Endpoints[m.GetClusterName()] = &m
	}
	return set
}

func mustUnmarshal(t *testing.T, raw []byte, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal(raw, m); err != nil {
		t.Fatalf("decode golden resource: %v", err)
	}
}
