package proxy

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// FuzzTranslate feeds arbitrary protobuf bytes as each resource kind through
// the translators: they must return an error or a config, never panic.
func FuzzTranslate(f *testing.F) {
	set := validSet(f)
	for _, l := range set.Listeners {
		b, _ := proto.Marshal(l)
		f.Add(uint8(0), b)
	}
	for _, r := range set.Routes {
		b, _ := proto.Marshal(r)
		f.Add(uint8(1), b)
	}
	for _, c := range set.Clusters {
		b, _ := proto.Marshal(c)
		f.Add(uint8(2), b)
	}
	stats := newStatsRegistry()
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		switch kind % 3 {
		case 0:
			var l listenerv3.Listener
			if proto.Unmarshal(data, &l) == nil {
				_, _ = translateListener(&l, stats)
			}
		case 1:
			var r routev3.RouteConfiguration
			if proto.Unmarshal(data, &r) == nil {
				_, _ = translateRouteConfig(&r)
			}
		case 2:
			var c clusterv3.Cluster
			if proto.Unmarshal(data, &c) == nil {
				_, _ = translateCluster(&c, resources.NewSet().Endpoints)
			}
		}
	})
}
