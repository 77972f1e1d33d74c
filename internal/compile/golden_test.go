package compile

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// goldenCases name a golden file, the input files it is compiled from and the proxy.
var goldenCases = []struct {
	name     string
	files    []string
	workload string
}{
	{"productpage", []string{"bookinfo.yaml"}, "productpage-v1"},
	{"reviews-v2-ratings", []string{"bookinfo.yaml"}, "reviews-v2"},
	{"split-90-10", []string{"bookinfo.yaml", "split.yaml"}, "productpage-v1"},
	{"header-match", []string{"bookinfo.yaml", "header-match.yaml"}, "productpage-v1"},
	{"cross-service", []string{"bookinfo.yaml", "cross-service.yaml"}, "productpage-v1"},
	{"tcp", []string{"tcp.yaml"}, "inventory-v1"},
	{"tcp-server", []string{"tcp.yaml"}, "mongodb-0"},
	{"grpc", []string{"grpc.yaml"}, "frontend-v1"},
	{"grpc-server", []string{"grpc.yaml"}, "stars-v1"},
	// Front ends and local rate limits (frontends.go, ratelimit.go).
	{"rl-ratelimit", []string{"bookinfo.yaml", "rl-ratelimit.yaml"}, "ratings-v1"},
	{"rl-envoyfilter", []string{"bookinfo.yaml", "rl-envoyfilter.yaml"}, "reviews-v2"},
	{"buf-envoyfilter", []string{"bookinfo.yaml", "rl-envoyfilter.yaml", "buf-envoyfilter.yaml"}, "reviews-v2"},
	{"buf-disabled", []string{"bookinfo.yaml", "buf-envoyfilter.yaml"}, "reviews-v3"},
	{"ts-split", []string{"bookinfo.yaml", "ts-split.yaml"}, "productpage-v1"},
	{"sp-profile", []string{"bookinfo.yaml", "sp-profile.yaml"}, "productpage-v1"},
	{"gw-httproute", []string{"bookinfo.yaml", "gw-httproute.yaml"}, "productpage-v1"},
	// VirtualService features (routes.go, route_*.go), one family per case.
	{"vs-matches", []string{"vs-mesh.yaml", "vs-matches.yaml"}, "frontend-v1"},
	{"vs-headers", []string{"vs-mesh.yaml", "vs-headers.yaml"}, "frontend-v1"},
	{"vs-retries", []string{"vs-mesh.yaml", "vs-retries.yaml"}, "frontend-v1"},
	{"vs-fault", []string{"vs-mesh.yaml", "vs-fault.yaml"}, "frontend-v1"},
	{"vs-mirror", []string{"vs-mesh.yaml", "vs-mirror.yaml"}, "frontend-v1"},
	{"vs-rewrite", []string{"vs-mesh.yaml", "vs-rewrite.yaml"}, "frontend-v1"},
	{"vs-hash", []string{"vs-mesh.yaml", "vs-hash.yaml"}, "frontend-v1"},
	{"vs-tcp", []string{"vs-mesh.yaml", "vs-tcp.yaml"}, "frontend-v1"},
	{"vs-tcp-v2", []string{"vs-mesh.yaml", "vs-tcp.yaml"}, "frontend-v2"},
	{"vs-source-v1", []string{"vs-mesh.yaml", "vs-source.yaml"}, "frontend-v1"},
	{"vs-source-v2", []string{"vs-mesh.yaml", "vs-source.yaml"}, "frontend-v2"},
	// DestinationRule policies (cluster_*.go).
	{"dr-lb-simple", []string{"bookinfo.yaml", "dr-lb-simple.yaml"}, "productpage-v1"},
	{"dr-ring-hash", []string{"bookinfo.yaml", "dr-ring-hash.yaml"}, "productpage-v1"},
	{"dr-maglev", []string{"bookinfo.yaml", "dr-maglev.yaml"}, "productpage-v1"},
	{"dr-connection-pool", []string{"bookinfo.yaml", "dr-connection-pool.yaml"}, "productpage-v1"},
	{"dr-connection-pool-grpc", []string{"grpc.yaml", "dr-connection-pool-grpc.yaml"}, "frontend-v1"},
	{"dr-connection-pool-tcp", []string{"tcp.yaml", "dr-connection-pool-tcp.yaml"}, "inventory-v1"},
	{"dr-outlier", []string{"bookinfo.yaml", "dr-outlier.yaml"}, "productpage-v1"},
	{"dr-subset-override", []string{"bookinfo.yaml", "dr-subset-override.yaml"}, "productpage-v1"},
	{"dr-retry-budget", []string{"bookinfo.yaml", "dr-retry-budget.yaml"}, "productpage-v1"},
	// Security policies (security*.go, ADR 002).
	{"sec-strict", []string{"sec-mesh.yaml"}, "backend-v1"},
	{"sec-peer-permissive", []string{"sec-mesh.yaml", "sec-peer.yaml"}, "backend-v1"},
	{"sec-peer-disable", []string{"sec-mesh.yaml", "sec-peer.yaml"}, "legacy-v1"},
	{"sec-peer-tcp", []string{"sec-mesh.yaml", "sec-peer.yaml"}, "db-0"},
	{"sec-client-plaintext", []string{"sec-mesh.yaml", "sec-peer.yaml"}, "frontend-v1"},
	{"sec-authz-http", []string{"sec-mesh.yaml", "sec-authz.yaml"}, "backend-v1"},
	{"sec-authz-deny-all", []string{"sec-mesh.yaml", "sec-authz-forms.yaml"}, "legacy-v1"},
	{"sec-authz-allow-all", []string{"sec-mesh.yaml", "sec-authz-forms.yaml"}, "frontend-v1"},
	{"sec-authz-tcp", []string{"sec-mesh.yaml", "sec-authz-tcp.yaml"}, "db-0"},
	{"sec-jwt", []string{"sec-mesh.yaml", "sec-jwt.yaml"}, "backend-v1"},
	{"sec-all", []string{"sec-mesh.yaml", "sec-peer.yaml", "sec-authz.yaml", "sec-jwt.yaml", "sec-ratelimit.yaml"}, "backend-v1"},
}

// loadInput decodes testdata files into an Input.
func loadInput(t *testing.T, files ...string) *Input {
	t.Helper()
	in := &Input{TrustDomain: "cluster.local"}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := model.Decode(data, f)
		if err != nil {
			t.Fatalf("decode %s: %v", f, err)
		}
		for _, o := range objs {
			in.Add(o)
		}
	}
	return in
}

// renderSet renders a Set as stable, indented JSON: each type's resources in name order.
func renderSet(s *resources.Set) ([]byte, error) {
	type doc struct {
		Listeners []json.RawMessage `json:"listeners"`
		Routes    []json.RawMessage `json:"routes"`
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
	}
	var d doc
	add := func(dst *[]json.RawMessage, m proto.Message) error {
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
		if err != nil {
			return err
		}
		var compact bytes.Buffer // protojson's whitespace is deliberately unstable
		if err := json.Compact(&compact, b); err != nil {
			return err
		}
		*dst = append(*dst, compact.Bytes())
		return nil
	}
	for _, k := range resources.SortedKeys(s.Listeners) {
		if err := add(&d.Listeners, s.Listeners[k]); err != nil {
			return nil, err
		}
	}
	for _, k := range resources.SortedKeys(s.Routes) {
		if err := add(&d.Routes, s.Routes[k]); err != nil {
			return nil, err
		}
	}
	for _, k := range resources.SortedKeys(s.Clusters) {
		if err := add(&d.Clusters, s.Clusters[k]); err != nil {
			return nil, err
		}
	}
	for _, k := range resources.SortedKeys(s.Endpoints) {
		if err := add(&d.Endpoints, s.Endpoints[k]); err != nil {
			return nil, err
		}
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	return append(b, '\n'), nil
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Proxy(loadInput(t, tc.files...), tc.workload)
			if err != nil {
				t.Fatal(err)
			}
			got, err := renderSet(set)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/compile -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s mismatch (-want +got), run with -update if intended:\n%s", path, diff)
			}
		})
	}
}

// TestDeterministic compiles the same input, shuffled, many times.
func TestDeterministic(t *testing.T) {
	in := loadInput(t, "bookinfo.yaml", "header-match.yaml")
	first, err := Proxy(in, "productpage-v1")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := renderSet(first)
	for i := 0; i < 20; i++ {
		ws := in.Workloads
		ws[0], ws[len(ws)-1-i%len(ws)] = ws[len(ws)-1-i%len(ws)], ws[0]
		set, err := Proxy(in, "productpage-v1")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := renderSet(set)
		if !bytes.Equal(got, want) {
			t.Fatalf("output changed with input order (iteration %d)", i)
		}
	}
}

// TestGoldenFilesDecode reads every golden file back into typed Envoy
// resources and checks the parts other packages rely on.
func TestGoldenFilesDecode(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.name+".golden.json"))
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string][]json.RawMessage
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			plaintextOK := strings.HasPrefix(tc.name, "sec-")
			for _, raw := range doc["listeners"] {
				var l listenerv3.Listener
				if err := protojson.Unmarshal(raw, &l); err != nil {
					t.Fatal(err)
				}
				if l.GetAddress().GetSocketAddress().GetPortValue() == 0 {
					t.Errorf("listener %s has no port", l.GetName())
				}
				inbound := strings.HasPrefix(l.GetName(), "inbound|")
				for i, fc := range l.GetFilterChains() {
					// Only a PeerAuthentication (sec-* cases) makes an inbound chain plaintext.
					if hasTLS := fc.GetTransportSocket() != nil; hasTLS != inbound && (hasTLS || !plaintextOK) {
						t.Errorf("listener %s chain %d: TLS %v, want %v", l.GetName(), i, hasTLS, inbound)
					}
				}
			}
			for _, raw := range doc["clusters"] {
				var c clusterv3.Cluster
				if err := protojson.Unmarshal(raw, &c); err != nil {
					t.Fatal(err)
				}
				if strings.HasPrefix(c.GetName(), "outbound|") && (c.GetTransportSocket() != nil || !plaintextOK) {
					sans := upstreamSANs(t, &c)
					if len(sans) == 0 || !strings.HasPrefix(sans[0], "spiffe://cluster.local/ns/default/sa/") {
						t.Errorf("cluster %s: SANs %v", c.GetName(), sans)
					}
				}
			}
			for _, raw := range doc["endpoints"] {
				var cla endpointv3.ClusterLoadAssignment
				if err := protojson.Unmarshal(raw, &cla); err != nil {
					t.Fatal(err)
				}
			}
			for _, raw := range doc["routes"] {
				var rc routev3.RouteConfiguration
				if err := protojson.Unmarshal(raw, &rc); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
