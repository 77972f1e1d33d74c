package proxy

import (
	"bufio"
	"net"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

// BenchmarkMeshRequestResilience is BenchmarkMeshRequest/fast with what an
// Istio user typically has in force: the default retry policy (idempotent
// methods, connect-failure/refused-stream/unavailable/cancelled/503),
// LEAST_REQUEST or RING_HASH with a header hash policy, outlier detection
// and circuit breakers. The proxies should still allocate nothing.
func BenchmarkMeshRequestResilience(b *testing.B) {
	for _, policy := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_LEAST_REQUEST, clusterv3.Cluster_RING_HASH} {
		b.Run(policy.String(), func(b *testing.B) {
			ca := proxytest.NewCA(b, trustDomain)
			m := &mesh{ca: ca, allowed: []string{serverID}}
			m.appAddr = rawApp(b, "hello, mesh\n")
			m.client = newProxyOpts(b, Options{Identity: ca.Identity(b, clientID), Logger: testLogger(b)})
			m.server = newProxyOpts(b, Options{Identity: ca.Identity(b, serverID), Logger: testLogger(b)})
			m.inAddr, m.outAddr = proxytest.FreeAddr(b), proxytest.FreeAddr(b)
			if err := m.server.Update(m.serverSet(b)); err != nil {
				b.Fatal(err)
			}
			set := m.buildClientSet(b)
			c := set.Clusters[outCluster]
			c.LbPolicy = policy
			c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(5), EnforcingSuccessRate: wrapperspb.UInt32(0)}
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxRequests: wrapperspb.UInt32(100)}}}
			for _, r := range set.Routes[outName].VirtualHosts[0].Routes {
				a := r.GetRoute()
				retryPolicy("connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", 2, func(p *routev3.RetryPolicy) {
					p.RetriableStatusCodes = []uint32{503}
					p.PerTryTimeout = durationpb.New(5 * time.Second)
					previousHosts(b, 5)(p)
					idempotentOnly(p)
				})(a)
				a.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
					Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"},
				}}}
			}
			if err := m.client.Update(set); err != nil {
				b.Fatal(err)
			}
			conn, err := net.Dial("tcp", m.outAddr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 16<<10)
			req := []byte("GET /bench HTTP/1.1\r\nHost: server\r\nX-User: jason\r\n\r\n")
			roundTrip := func() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				if err := readRawResponse(br); err != nil {
					b.Fatal(err)
				}
			}
			roundTrip()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				roundTrip()
			}
		})
	}
}
