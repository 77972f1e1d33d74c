package xds_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trellis-mesh/trellis/internal/xds"
	"github.com/trellis-mesh/trellis/internal/xds/client"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	svcName  = "outbound|9080|reviews"
	cluName  = "outbound|9080||reviews"
	waitTime = 15 * time.Second
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// tokens maps join tokens to the node they were issued for.
var testTokens = map[string]string{"token-a": "node-a", "token-b": "node-b"}

// authenticate accepts a known token, and checks the node it is bound to once
// the stream names one.
func authenticate(ctx context.Context, token string) error {
	node, ok := testTokens[token]
	if !ok {
		return errors.New("unknown token")
	}
	if claimed, ok := xds.NodeIDFromContext(ctx); ok && claimed != node {
		return fmt.Errorf("token issued to %q", node)
	}
	return nil
}

// testSet is the hand-built configuration of one proxy: an outbound listener
// using RDS, its route, an EDS cluster and its endpoints on port epPort.
func testSet(t *testing.T, epPort uint32) *resources.Set {
	t.Helper()
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: svcName,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: ads, RouteConfigName: svcName,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	set := resources.NewSet()
	set.Listeners[svcName] = &listenerv3.Listener{
		Name:    svcName,
		Address: socketAddr("127.0.0.1", 15001),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}}},
	}
	set.Routes[svcName] = &routev3.RouteConfiguration{Name: svcName, VirtualHosts: []*routev3.VirtualHost{{
		Name: "reviews", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluName}}},
		}},
	}}}
	set.Clusters[cluName] = &clusterv3.Cluster{
		Name:                 cluName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
		ConnectTimeout:       durationpb.New(10 * time.Second),
	}
	set.Endpoints[cluName] = &endpointv3.ClusterLoadAssignment{ClusterName: cluName, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: socketAddr("127.0.0.1", epPort),
		}}}},
	}}}
	return set
}

func socketAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// fakeHandler records accepted sets and rejects any with an endpoint port
// in reject.
type fakeHandler struct {
	mu       sync.Mutex
	accepted []*resources.Set
	reject   uint32
	calls    int
}

func (h *fakeHandler) Update(set *resources.Set) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	for _, cla := range set.Endpoints {
		for _, le := range cla.GetEndpoints() {
			for _, ep := range le.GetLbEndpoints() {
				if p := ep.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); p == h.reject {
					return fmt.Errorf("endpoint port %d is not allowed", p)
				}
			}
		}
	}
	h.accepted = append(h.accepted, set)
	return nil
}

func (h *fakeHandler) last() (*resources.Set, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.accepted) == 0 {
		return nil, 0
	}
	return h.accepted[len(h.accepted)-1], len(h.accepted)
}

// serve runs srv on addr ("127.0.0.1:0" for any port) and returns the address
// and a stop function that waits for Serve to return.
func serve(t *testing.T, srv *xds.Server, addr string) (string, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

// runClient runs c until the test ends and checks that Run returns nil.
func runClient(t *testing.T, c *client.Client, h client.Handler) (cancel func()) {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	var once sync.Once
	cancel = func() {
		once.Do(func() {
			cancelCtx()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(cancel)
	return cancel
}

func newServer() *xds.Server {
	return xds.NewServer(xds.ServerOptions{Logger: quietLogger(), Authenticate: authenticate})
}

func newClient(addr, node, token string) *client.Client {
	return client.New(client.Options{Addr: addr, NodeID: node, Cluster: "reviews", Token: token, Logger: quietLogger()})
}

// eventually polls cond until it holds or the wait ends.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitSynced(t *testing.T, c *client.Client) {
	t.Helper()
	select {
	case <-c.Synced():
	case <-time.After(waitTime):
		t.Fatalf("client not synced: %+v", c.State())
	}
}

func nodeState(srv *xds.Server, node, state string) func() bool {
	return func() bool {
		st := srv.NodeStatus(node)
		return st.Connected && st.State == state
	}
}

func (h *fakeHandler) callCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}
