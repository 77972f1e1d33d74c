// Package xds serves per-proxy Envoy v3 configuration over ADS (state of the
// world) with go-control-plane, and tracks each node's ACK/NACK state.
//
//	compile ──► SetResources(node, Set) ──► per-type content hash ──► Snapshot
//	                                                                   │
//	                                              go-control-plane SnapshotCache (ADS)
//	                                                                   │  (nackHold: a NACKed
//	                                                                   │   version is not resent)
//	sidecar ◄──── ADS stream ◄──── sotw server ◄─── auth interceptor ◄─┘
//	                                  │ callbacks
//	                                  ▼
//	                               tracker ──► NodeStatus, OnNodeConnect
//
// Equal resources given for different nodes, or again after a recompile,
// are held once (intern.go). The sidecar's side of the stream lives in the
// client sub-package.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// Limits and timers of the ADS gRPC server. A dead sidecar is noticed within
// KeepaliveTime+KeepaliveTimeout (about 25s).
const (
	KeepaliveTime      = 15 * time.Second
	KeepaliveTimeout   = 10 * time.Second
	KeepaliveMinTime   = 10 * time.Second // clients may not ping more often than this
	MaxRequestBytes    = 4 << 20          // a DiscoveryRequest (names, error detail)
	MaxResponseBytes   = 64 << 20         // a DiscoveryResponse (a type's full state)
	maxStreamsPerConn  = 64
	gracefulStopBudget = 5 * time.Second
)

// ServerOptions configure a Server.
type ServerOptions struct {
	Logger *slog.Logger
	// Authenticate checks the bearer token sent in gRPC metadata
	// "authorization: Bearer <token>". It is called when a stream opens
	// (refused with codes.Unauthenticated on error, before any resource is
	// sent) and again on the stream's first DiscoveryRequest with the claimed
	// node id in ctx (see NodeIDFromContext), so a token can be bound to one
	// node (refused with codes.PermissionDenied on error). A nil Authenticate
	// refuses every stream.
	Authenticate func(ctx context.Context, token string) error
	// OnNodeConnect is called, from a goroutine owned by Serve and never on a
	// stream's path, when a node opens its first stream. May be nil.
	OnNodeConnect func(node string)
}

// Server is the ADS server of the control plane. It is safe for concurrent
// use; Serve may be called again after a previous Serve returned.
type Server struct {
	log     *slog.Logger
	opts    ServerOptions
	cache   cachev3.SnapshotCache
	tracker *tracker
	table   *resourceTable // interned resources and their digests, shared by every node's snapshots
}

// NewServer returns a Server with an empty snapshot cache.
func NewServer(opts ServerOptions) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Server{
		log:     logger,
		opts:    opts,
		cache:   cachev3.NewSnapshotCache(true, cachev3.IDHash{}, gcpLogger{logger.With("lib", "go-control-plane")}),
		tracker: newTracker(logger),
		table:   newResourceTable(),
	}
}

// SetResources publishes a proxy's full configuration. Each type's version is
// a content hash of that type's resources, so a type whose resources did not
// change keeps its version and is not pushed again. The set must be
// consistent: every ClusterLoadAssignment is named by an EDS cluster and every
// RouteConfiguration by a listener's RDS, and the other way round.
// The set's resources must not be modified afterwards (the cache serves them
// as they are); the same resource may be given to several nodes. A resource
// equal to one already served (to any node) is replaced by that one, so
// equal content is held once (intern.go).
func (s *Server) SetResources(node string, set *resources.Set) error {
	if node == "" {
		return errors.New("xds: set resources: empty node id")
	}
	snap, err := buildSnapshotIn(set, s.table)
	if err != nil {
		return fmt.Errorf("xds: set resources for node %q: %w", node, err)
	}
	if err := s.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		return fmt.Errorf("xds: set resources for node %q: %w", node, err)
	}
	s.log.Debug("snapshot set", "node", node, "versions", combinedVersion(snapshotVersions(snap)))
	return nil
}

// ClearNode forgets a node's configuration and sync state. Streams the node
// still has open stay open and get nothing until SetResources is called again.
func (s *Server) ClearNode(node string) {
	s.cache.ClearSnapshot(node)
	s.tracker.forget(node)
}

// Serve runs the ADS gRPC server on lis until ctx ends, then stops gracefully
// (open streams are ended, GracefulStop with a bounded wait, then Stop). It
// returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	held := &nackHoldCache{SnapshotCache: s.cache, tracker: s.tracker}
	callbacks := &trackerCallbacks{tracker: s.tracker, authorize: s.authorizeNode}
	ads := &adsService{sotw: sotw.NewServer(ctx, held, callbacks,
		sotw.WithOrderedADS(), sotw.WithLogger(gcpLogger{s.log.With("lib", "go-control-plane")}))}

	gs := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.MaxSendMsgSize(MaxResponseBytes),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.StreamInterceptor(s.authStream),
		grpc.UnaryInterceptor(denyUnary),
	)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, ads)

	notified := make(chan struct{})
	go func() {
		defer close(notified)
		s.tracker.notifyLoop(ctx, s.opts.OnNodeConnect)
	}()
	defer func() {
		cancel()
		<-notified
	}()

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	s.log.Info("xDS server listening", "addr", lis.Addr().String())

	select {
	case err := <-errc:
		gs.Stop()
		if err != nil {
			return fmt.Errorf("xds: serve %s: %w", lis.Addr(), err)
		}
		return nil
	case <-ctx.Done():
	}
	// ctx is done: the sotw server ends every open stream, so GracefulStop
	// only has to wait for handlers to return.
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(gracefulStopBudget)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.log.Warn("xDS server graceful stop timed out; closing connections")
		gs.Stop()
		<-stopped
	}
	<-errc
	s.log.Info("xDS server stopped")
	return nil
}

// NodeStatus reports what the control plane knows of one node's config sync.
type NodeStatus struct {
	Connected bool
	// State is "SYNCED" (acked everything we have), "STALE" (a newer version
	// sent or pending and not yet acked, no configuration yet, or
	// disconnected) or "NACKED" (the last response of some type was rejected).
	State     string
	Version   string    // what the node last acked, per type: "lds=…,rds=…,cds=…,eds=…"
	LastError string    // the NACK error_detail message while NACKED (or disconnected after one)
	LastSeen  time.Time // the node's last request, or its disconnection
}

// Node sync states.
const (
	StateSynced = "SYNCED"
	StateStale  = "STALE"
	StateNacked = "NACKED"
)

// NodeStatus reports what the control plane knows of one node's config sync.
func (s *Server) NodeStatus(node string) NodeStatus {
	var snap cachev3.ResourceSnapshot
	if got, err := s.cache.GetSnapshot(node); err == nil {
		snap = got
	}
	return s.tracker.status(node, snap)
}

// adsService serves state-of-the-world ADS only; incremental (delta) ADS is
// answered with Unimplemented.
type adsService struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	sotw sotw.Server
}

func (a *adsService) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.sotw.StreamHandler(stream, resourcev3.AnyType)
}

func denyUnary(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
	return nil, errUnaryRefused
}
