package proxy

import (
	"net/http/httptest"
	"testing"
)

func BenchmarkRouteMatchAndPick(b *testing.B) {
	cfg, err := (&Proxy{stats: newStatsRegistry()}).build(validSet(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	table := cfg.routes[outName]
	r := httptest.NewRequest("GET", "/api/v2/items", nil)
	r.Header.Set("X-Canary", "1")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rt := table.matchRequest(r)
		c := cfg.clusters[rt.clusterName()]
		if c != nil {
			c.pick()
		}
	}
}
