package xds_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/trellis-mesh/trellis/internal/xds"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

var allTypes = []string{resources.ListenerType, resources.RouteType, resources.ClusterType, resources.EndpointType}

func TestInitialSyncThenEndpointOnlyPush(t *testing.T) {
	srv := newServer()
	addr, _ := serve(t, srv, "127.0.0.1:0")
	want := testSet(t, 9001)
	if err := srv.SetResources("node-a", want); err != nil {
		t.Fatal(err)
	}
	c := newClient(addr, "node-a", "token-a")
	h := &fakeHandler{}
	runClient(t, c, h)

	waitSynced(t, c)
	got, _ := h.last()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("initial set (-want +got):\n%s", diff)
	}
	eventually(t, "node SYNCED", nodeState(srv, "node-a", xds.StateSynced))
	before := c.State().Versions
	for _, typ := range allTypes {
		if before[typ] == "" {
			t.Fatalf("no version for %s: %v", typ, before)
		}
	}
	pushes := map[string]int{}
	for _, typ := range allTypes {
		pushes[typ] = srv.Pushes("node-a", typ)
	}
	_, updates := h.last()

	// Same content again: no version changes, nothing pushed.
	if err := srv.SetResources("node-a", testSet(t, 9001)); err != nil {
		t.Fatal(err)
	}
	// Only the endpoints change.
	want = testSet(t, 9002)
	if err := srv.SetResources("node-a", want); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new EDS version", func() bool {
		return c.State().Versions[resources.EndpointType] != before[resources.EndpointType]
	})
	eventually(t, "node SYNCED", nodeState(srv, "node-a", xds.StateSynced))
	after := c.State().Versions
	for _, typ := range []string{resources.ListenerType, resources.RouteType, resources.ClusterType} {
		if after[typ] != before[typ] {
			t.Errorf("%s version changed: %q → %q", typ, before[typ], after[typ])
		}
		if n := srv.Pushes("node-a", typ); n != pushes[typ] {
			t.Errorf("%s pushed again (%d → %d)", typ, pushes[typ], n)
		}
	}
	if n := srv.Pushes("node-a", resources.EndpointType); n != pushes[resources.EndpointType]+1 {
		t.Errorf("EDS pushes = %d, want %d", n, pushes[resources.EndpointType]+1)
	}
	got, n := h.last()
	if n != updates+1 {
		t.Errorf("handler updates = %d, want %d", n, updates+1)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("set after EDS change (-want +got):\n%s", diff)
	}
	st := srv.NodeStatus("node-a")
	if !strings.Contains(st.Version, "eds="+after[resources.EndpointType]) || st.LastError != "" {
		t.Errorf("NodeStatus = %+v", st)
	}
}

func TestNACKKeepsPreviousSet(t *testing.T) {
	srv := newServer()
	addr, _ := serve(t, srv, "127.0.0.1:0")
	good := testSet(t, 9001)
	if err := srv.SetResources("node-a", good); err != nil {
		t.Fatal(err)
	}
	c := newClient(addr, "node-a", "token-a")
	h := &fakeHandler{reject: 666}
	runClient(t, c, h)
	waitSynced(t, c)
	eventually(t, "node SYNCED", nodeState(srv, "node-a", xds.StateSynced))
	before := c.State().Versions
	edsPushes := srv.Pushes("node-a", resources.EndpointType)

	if err := srv.SetResources("node-a", testSet(t, 666)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node NACKED", nodeState(srv, "node-a", xds.StateNacked))
	st := srv.NodeStatus("node-a")
	if !strings.Contains(st.LastError, "endpoint port 666 is not allowed") {
		t.Errorf("NodeStatus.LastError = %q", st.LastError)
	}
	cs := c.State()
	if !strings.Contains(cs.LastError, "port 666") {
		t.Errorf("client LastError = %q", cs.LastError)
	}
	if diff := cmp.Diff(before, cs.Versions); diff != "" {
		t.Errorf("client versions changed after NACK (-before +after):\n%s", diff)
	}
	got, _ := h.last()
	if diff := cmp.Diff(good, got, protocmp.Transform()); diff != "" {
		t.Errorf("handler set after NACK (-want +got):\n%s", diff)
	}
	// The rejected version is not resent in a loop.
	time.Sleep(300 * time.Millisecond)
	if n := srv.Pushes("node-a", resources.EndpointType); n != edsPushes+1 {
		t.Errorf("EDS pushes after NACK = %d, want %d", n, edsPushes+1)
	}

	fixed := testSet(t, 9003)
	if err := srv.SetResources("node-a", fixed); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node SYNCED again", nodeState(srv, "node-a", xds.StateSynced))
	if st := srv.NodeStatus("node-a"); st.LastError != "" {
		t.Errorf("LastError after recovery = %q", st.LastError)
	}
	got, _ = h.last()
	if diff := cmp.Diff(fixed, got, protocmp.Transform()); diff != "" {
		t.Errorf("handler set after fix (-want +got):\n%s", diff)
	}
}

func TestRefusedWithoutValidToken(t *testing.T) {
	srv := newServer()
	addr, _ := serve(t, srv, "127.0.0.1:0")
	for _, node := range []string{"node-a", "node-b"} {
		if err := srv.SetResources(node, testSet(t, 9001)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, node, token, want string
	}{
		{"missing token", "node-a", "", "Unauthenticated"},
		{"unknown token", "node-a", "nope", "Unauthenticated"},
		{"token of another node", "node-a", "token-b", "PermissionDenied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(addr, tc.node, tc.token)
			h := &fakeHandler{}
			cancel := runClient(t, c, h)
			eventually(t, "a refusal", func() bool { return strings.Contains(c.State().LastError, tc.want) })
			time.Sleep(200 * time.Millisecond)
			cancel()
			if _, n := h.last(); n != 0 || h.callCount() != 0 {
				t.Errorf("handler got %d updates", n)
			}
			if st := c.State(); st.Connected || st.Synced || len(st.Versions) != 0 {
				t.Errorf("client state = %+v", st)
			}
			for _, typ := range allTypes {
				if n := srv.Pushes(tc.node, typ); n != 0 {
					t.Errorf("%d %s responses sent", n, typ)
				}
			}
		})
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	srv := newServer()
	addr, stop := serve(t, srv, "127.0.0.1:0")
	set := testSet(t, 9001)
	if err := srv.SetResources("node-a", set); err != nil {
		t.Fatal(err)
	}
	c := newClient(addr, "node-a", "token-a")
	h := &fakeHandler{}
	runClient(t, c, h)
	waitSynced(t, c)
	eventually(t, "node SYNCED", nodeState(srv, "node-a", xds.StateSynced))
	_, updates := h.last()
	versions := c.State().Versions

	stop()
	eventually(t, "client disconnected", func() bool { return !c.State().Connected })
	if st := srv.NodeStatus("node-a"); st.Connected || st.State != xds.StateStale {
		t.Errorf("NodeStatus after stop = %+v", st)
	}

	// A fresh control plane process on the same address, same content.
	srv2 := newServer()
	if err := srv2.SetResources("node-a", testSet(t, 9001)); err != nil {
		t.Fatal(err)
	}
	serve(t, srv2, addr)
	eventually(t, "node SYNCED after restart", nodeState(srv2, "node-a", xds.StateSynced))
	eventually(t, "client connected", func() bool { return c.State().Connected })
	if _, n := h.last(); n != updates {
		t.Errorf("handler updated %d times for unchanged config", n-updates)
	}
	if diff := cmp.Diff(versions, c.State().Versions); diff != "" {
		t.Errorf("versions changed (-before +after):\n%s", diff)
	}
}

// TestReconnectBeforeSnapshot is a control plane restart where the node's
// configuration is compiled only once it reconnects, unchanged: nothing is
// sent, and the version the node claims makes it SYNCED.
func TestReconnectBeforeSnapshot(t *testing.T) {
	srv := newServer()
	addr, stop := serve(t, srv, "127.0.0.1:0")
	if err := srv.SetResources("node-a", testSet(t, 9001)); err != nil {
		t.Fatal(err)
	}
	c := newClient(addr, "node-a", "token-a")
	runClient(t, c, &fakeHandler{})
	waitSynced(t, c)
	stop()
	eventually(t, "client disconnected", func() bool { return !c.State().Connected })

	srv2 := newServer()
	serve(t, srv2, addr)
	eventually(t, "client connected", func() bool { return c.State().Connected })
	if st := srv2.NodeStatus("node-a"); st.State == xds.StateSynced {
		t.Errorf("SYNCED before any snapshot: %+v", st)
	}
	if err := srv2.SetResources("node-a", testSet(t, 9001)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node SYNCED after restart", nodeState(srv2, "node-a", xds.StateSynced))
	if err := srv2.SetResources("node-a", testSet(t, 9002)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node SYNCED after a change", nodeState(srv2, "node-a", xds.StateSynced))
	if st := srv2.NodeStatus("node-a"); st.Connected != true {
		t.Errorf("status %+v", st)
	}
}

func TestOnNodeConnect(t *testing.T) {
	connected := make(chan string, 4)
	var srv *xds.Server
	srv = xds.NewServer(xds.ServerOptions{
		Logger:       quietLogger(),
		Authenticate: authenticate,
		OnNodeConnect: func(node string) {
			// The control plane compiles the node's config on demand.
			if err := srv.SetResources(node, testSet(t, 9001)); err != nil {
				t.Errorf("SetResources: %v", err)
			}
			connected <- node
		},
	})
	addr, _ := serve(t, srv, "127.0.0.1:0")
	c := newClient(addr, "node-b", "token-b")
	runClient(t, c, &fakeHandler{})
	select {
	case n := <-connected:
		if n != "node-b" {
			t.Errorf("OnNodeConnect(%q)", n)
		}
	case <-time.After(waitTime):
		t.Fatal("OnNodeConnect not called")
	}
	waitSynced(t, c)
	eventually(t, "node SYNCED", nodeState(srv, "node-b", xds.StateSynced))
}

func TestSetResourcesRejectsInconsistentSet(t *testing.T) {
	srv := newServer()
	set := testSet(t, 9001)
	delete(set.Endpoints, cluName)
	set.Endpoints["orphan"] = testSet(t, 9001).Endpoints[cluName]
	set.Endpoints["orphan"].ClusterName = "orphan"
	if err := srv.SetResources("node-a", set); err == nil {
		t.Error("SetResources accepted an unreferenced ClusterLoadAssignment")
	}
	bad := testSet(t, 9001)
	bad.Routes["other"] = bad.Routes[svcName]
	if err := srv.SetResources("node-a", bad); err == nil {
		t.Error("SetResources accepted a route keyed under another name")
	}
	if err := srv.SetResources("node-a", nil); err == nil {
		t.Error("SetResources accepted a nil set")
	}
}

func TestNewClusterIsFollowedByItsEndpoints(t *testing.T) {
	srv := newServer()
	addr, _ := serve(t, srv, "127.0.0.1:0")
	if err := srv.SetResources("node-a", testSet(t, 9001)); err != nil {
		t.Fatal(err)
	}
	c := newClient(addr, "node-a", "token-a")
	h := &fakeHandler{}
	runClient(t, c, h)
	waitSynced(t, c)

	// A second EDS cluster and its endpoints; then the first one removed.
	grown := testSet(t, 9001)
	extra := testSet(t, 9100)
	const name = "outbound|9080|v2|reviews"
	grown.Clusters[name] = extra.Clusters[cluName]
	grown.Clusters[name].Name = name
	grown.Endpoints[name] = extra.Endpoints[cluName]
	grown.Endpoints[name].ClusterName = name
	if err := srv.SetResources("node-a", grown); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both clusters' endpoints", func() bool {
		got, _ := h.last()
		return len(got.Endpoints) == 2
	})
	eventually(t, "node SYNCED", nodeState(srv, "node-a", xds.StateSynced))
	got, _ := h.last()
	if diff := cmp.Diff(grown, got, protocmp.Transform()); diff != "" {
		t.Errorf("grown set (-want +got):\n%s", diff)
	}

	shrunk := testSet(t, 9001)
	delete(shrunk.Clusters, cluName)
	delete(shrunk.Endpoints, cluName)
	shrunk.Clusters[name] = grown.Clusters[name]
	shrunk.Endpoints[name] = grown.Endpoints[name]
	if err := srv.SetResources("node-a", shrunk); err != nil {
		t.Fatal(err)
	}
	eventually(t, "old cluster's endpoints dropped", func() bool {
		got, _ := h.last()
		return len(got.Endpoints) == 1 && got.Endpoints[name] != nil
	})
	eventually(t, "node SYNCED", nodeState(srv, "node-a", xds.StateSynced))
}

func TestUndecodableListenerIsNACKed(t *testing.T) {
	srv := newServer()
	addr, _ := serve(t, srv, "127.0.0.1:0")
	good := testSet(t, 9001)
	if err := srv.SetResources("node-a", good); err != nil {
		t.Fatal(err)
	}
	c := newClient(addr, "node-a", "token-a")
	h := &fakeHandler{}
	runClient(t, c, h)
	waitSynced(t, c)
	_, updates := h.last()

	bad := testSet(t, 9001)
	delete(bad.Routes, svcName) // the broken listener references no route
	bad.Listeners[svcName].FilterChains[0].Filters[0].GetTypedConfig().Value = []byte{0xff, 0xff}
	if err := srv.SetResources("node-a", bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node NACKED", nodeState(srv, "node-a", xds.StateNacked))
	if st := srv.NodeStatus("node-a"); !strings.Contains(st.LastError, svcName) {
		t.Errorf("LastError = %q, want it to name the listener", st.LastError)
	}
	if got, n := h.last(); n != updates || !cmp.Equal(good, got, protocmp.Transform()) {
		t.Errorf("handler changed after a NACK (%d → %d updates)", updates, n)
	}

	srv.ClearNode("node-a")
	if st := srv.NodeStatus("node-a"); st.State != xds.StateStale || st.Version != "" {
		t.Errorf("NodeStatus after ClearNode = %+v", st)
	}
}
