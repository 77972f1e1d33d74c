package xds

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// tracker follows every ADS stream through go-control-plane's callbacks and
// keeps, per node and type, what was sent and what was ACKed or NACKed.
type tracker struct {
	log *slog.Logger

	mu      sync.Mutex
	streams map[int64]*streamInfo
	nodes   map[string]*nodeInfo
	// connected holds nodes whose first stream opened and that OnNodeConnect
	// has not been told about yet; wake signals notifyLoop.
	connected map[string]struct{}
	wake      chan struct{}
}

type streamInfo struct {
	ctx  context.Context
	node string                   // set by the first request
	sent map[string]*sentResponse // by type URL: the last response sent on this stream
}

type sentResponse struct {
	nonce, version string
	answered       bool // an ACK or NACK for this nonce was seen
}

type nodeInfo struct {
	streams  int
	lastSeen time.Time
	types    map[string]*typeStatus
	pushes   map[string]int // type URL → responses sent
}

type typeStatus struct {
	subscribed  bool
	acked       string
	nacked      bool
	nackVersion string // the version that was rejected
	nackMsg     string
}

func newTracker(log *slog.Logger) *tracker {
	return &tracker{
		log:       log,
		streams:   map[int64]*streamInfo{},
		nodes:     map[string]*nodeInfo{},
		connected: map[string]struct{}{},
		wake:      make(chan struct{}, 1),
	}
}

// trackerCallbacks are the go-control-plane sotw callbacks; authorize is
// called on a stream's first request with the node it claims.
type trackerCallbacks struct {
	tracker   *tracker
	authorize func(ctx context.Context, node string) error
}

var _ sotw.Callbacks = (*trackerCallbacks)(nil)

func (c *trackerCallbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	c.tracker.mu.Lock()
	defer c.tracker.mu.Unlock()
	c.tracker.streams[id] = &streamInfo{ctx: ctx, sent: map[string]*sentResponse{}}
	return nil
}

func (c *trackerCallbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.tracker.onClosed(id) }

func (c *trackerCallbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	return c.tracker.onRequest(id, req, c.authorize)
}

func (c *trackerCallbacks) OnStreamResponse(ctx context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.tracker.onResponse(ctx, id, req, resp)
}

func (t *tracker) node(id string) *nodeInfo {
	n, ok := t.nodes[id]
	if !ok {
		n = &nodeInfo{types: map[string]*typeStatus{}, pushes: map[string]int{}}
		t.nodes[id] = n
	}
	return n
}

func (n *nodeInfo) typ(url string) *typeStatus {
	ts, ok := n.types[url]
	if !ok {
		ts = &typeStatus{}
		n.types[url] = ts
	}
	return ts
}

func (t *tracker) onRequest(id int64, req *discoveryv3.DiscoveryRequest, authorize func(context.Context, string) error) error {
	nodeID := req.GetNode().GetId()
	t.mu.Lock()
	st, ok := t.streams[id]
	if !ok {
		t.mu.Unlock()
		return status.Error(codes.Internal, "xds: request on an unknown stream")
	}
	first := st.node == ""
	ctx := st.ctx
	t.mu.Unlock()

	if first {
		if nodeID == "" {
			return status.Error(codes.InvalidArgument, "xds: the first request must carry node.id")
		}
		if err := authorize(ctx, nodeID); err != nil {
			return err
		}
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if first {
		st.node = nodeID
		n := t.node(nodeID)
		n.streams++
		if n.streams == 1 {
			t.connected[nodeID] = struct{}{}
			select {
			case t.wake <- struct{}{}:
			default:
			}
		}
		t.log.Info("xDS node connected", "node", nodeID, "cluster", req.GetNode().GetCluster(), "peer", peerAddr(ctx))
	} else if nodeID != st.node {
		return status.Errorf(codes.InvalidArgument, "xds: stream of node %q claims node %q", st.node, nodeID)
	}
	n := t.node(st.node)
	n.lastSeen = time.Now()
	ts := n.typ(req.GetTypeUrl())
	ts.subscribed = true

	sent := st.sent[req.GetTypeUrl()]
	if sent == nil && req.GetResponseNonce() == "" && req.GetVersionInfo() != "" {
		// The first request of a stream carries the version the node last
		// accepted (after a reconnect, or a control plane restart). If the
		// snapshot set later has that version, go-control-plane sends
		// nothing, and no ACK would ever say the node is in sync.
		ts.acked = req.GetVersionInfo()
		return nil
	}
	if sent == nil || sent.answered || req.GetResponseNonce() != sent.nonce {
		return nil // an initial request, a subscription change, or a stale nonce
	}
	sent.answered = true
	if detail := req.GetErrorDetail(); detail != nil {
		ts.nacked, ts.nackVersion, ts.nackMsg = true, sent.version, detail.GetMessage()
		t.log.Warn("xDS NACK", "node", st.node, "type", req.GetTypeUrl(), "version", sent.version, "error", detail.GetMessage())
		return nil
	}
	ts.acked, ts.nacked, ts.nackVersion, ts.nackMsg = req.GetVersionInfo(), false, "", ""
	t.log.Debug("xDS ACK", "node", st.node, "type", req.GetTypeUrl(), "version", req.GetVersionInfo())
	return nil
}

func (t *tracker) onResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok {
		return
	}
	st.sent[resp.GetTypeUrl()] = &sentResponse{nonce: resp.GetNonce(), version: resp.GetVersionInfo()}
	if st.node != "" {
		t.node(st.node).pushes[resp.GetTypeUrl()]++
	}
}

func (t *tracker) onClosed(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok {
		return
	}
	delete(t.streams, id)
	if st.node == "" {
		return
	}
	if n, ok := t.nodes[st.node]; ok {
		n.streams--
		n.lastSeen = time.Now()
		if n.streams == 0 {
			t.log.Info("xDS node disconnected", "node", st.node)
		}
	}
}

// forget drops what is known of a node's sync, keeping its open streams.
func (t *tracker) forget(node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.nodes[node]
	switch {
	case !ok:
	case n.streams == 0:
		delete(t.nodes, node)
	default:
		n.types = map[string]*typeStatus{}
	}
}

// rejected returns the version of typeURL that node last NACKed, if the type
// is still NACKed.
func (t *tracker) rejected(node, typeURL string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.nodes[node]
	if !ok {
		return "", false
	}
	ts, ok := n.types[typeURL]
	if !ok || !ts.nacked {
		return "", false
	}
	return ts.nackVersion, true
}

// notifyLoop calls onConnect for every node whose first stream opened, until
// ctx ends.
func (t *tracker) notifyLoop(ctx context.Context, onConnect func(node string)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		}
		t.mu.Lock()
		nodes := make([]string, 0, len(t.connected))
		for n := range t.connected {
			nodes = append(nodes, n)
		}
		clear(t.connected)
		t.mu.Unlock()
		if onConnect == nil {
			continue
		}
		for _, n := range nodes {
			onConnect(n)
		}
	}
}

// status computes a node's NodeStatus against its current snapshot (nil if
// it has none).
func (t *tracker) status(node string, snap cachev3.ResourceSnapshot) NodeStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.nodes[node]
	if !ok {
		return NodeStatus{State: StateStale}
	}
	out := NodeStatus{Connected: n.streams > 0, LastSeen: n.lastSeen}
	acked := map[string]string{}
	stale, nacked := snap == nil, false
	for _, typ := range typeOrder {
		ts := n.types[typ.url]
		if ts == nil {
			ts = &typeStatus{}
		}
		acked[typ.url] = ts.acked
		if ts.nacked {
			nacked = true
			out.LastError = ts.nackMsg
		}
		if snap == nil {
			continue
		}
		// A type matters once the node subscribed to it or we have some.
		if (ts.subscribed || len(snap.GetResources(typ.url)) > 0) && ts.acked != snap.GetVersion(typ.url) {
			stale = true
		}
	}
	out.Version = combinedVersion(acked)
	switch {
	case !out.Connected:
		out.State = StateStale
	case nacked:
		out.State = StateNacked
	case stale:
		out.State = StateStale
	default:
		out.State = StateSynced
	}
	return out
}

// nackHoldCache keeps go-control-plane from answering a NACK with the very
// version that was just rejected: a NACK carries the previous version, which
// differs from the snapshot's, so the cache would resend at once, forever.
// While a type is NACKed, its watches are opened as if the node had the
// rejected version, so the next response is the next snapshot.
type nackHoldCache struct {
	cachev3.SnapshotCache
	tracker *tracker
}

func (c *nackHoldCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	if v, ok := c.tracker.rejected(req.GetNode().GetId(), req.GetTypeUrl()); ok && req.GetVersionInfo() != v {
		held := proto.CloneOf(req)
		held.VersionInfo = v
		req = held
	}
	return c.SnapshotCache.CreateWatch(req, sub, out)
}
