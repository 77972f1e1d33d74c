// Package client is the sidecar's ADS client: one state-of-the-world stream
// to the control plane, kept open across failures.
//
//	Run ──► dial (keepalive, size caps) ──► stream ──► Recv ─► decode ─► candidate Set
//	 ▲ backoff 200ms…5s + jitter                 │                     │ Handler.Update
//	 └──────────── stream ends ◄─────────────────┘       ACK (new version) or NACK (old version + error_detail)
//	                                                     then EDS/RDS subscriptions follow CDS/LDS
//
// The last accepted resources of each type outlive the stream: while
// disconnected the handler sees nothing change, and on reconnect the
// subscriptions are resent with the last accepted versions. They are kept
// as the bytes the control plane sent, ~6× smaller than decoded, and
// decoded again for each Update.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// Reconnect backoff and connection limits.
const (
	backoffStart      = 200 * time.Millisecond
	backoffCap        = 5 * time.Second
	keepaliveTime     = 20 * time.Second // at least the server's enforcement MinTime (10s)
	keepaliveTimeout  = 10 * time.Second
	maxResponseBytes  = 64 << 20
	maxRequestBytes   = 4 << 20
	minConnectTimeout = 5 * time.Second
)

// Handler receives the configuration.
type Handler interface {
	// Update is called with the complete merged set each time a response is
	// received (and changes something). An error means NACK: the client keeps
	// its previous set for that type and sends error_detail with the message.
	// The set is decoded for this call and belongs to the handler: the
	// client keeps only the resources' wire encodings (config.go), so a
	// handler that keeps the set keeps the only decoded copy.
	Update(set *resources.Set) error
}

// EncodedHandler is a Handler that keeps the set in its wire form (the proxy
// does, for /config_dump): the client then calls UpdateEncoded instead of
// Update, with the encodings it keeps itself, so the handler shares them
// rather than encoding the set again.
type EncodedHandler interface {
	Handler
	// UpdateEncoded is Update with enc: type URL → resource name → the
	// resource's encoding as the control plane sent it, for every resource
	// of set. enc and the slices in it must not be modified.
	UpdateEncoded(set *resources.Set, enc map[string]map[string][]byte) error
}

// Options configure a Client.
type Options struct {
	Addr    string      // host:port of the control plane's xDS server
	NodeID  string      // workload name
	Cluster string      // service name
	Token   string      // join token, sent as "authorization: Bearer <token>"
	TLS     *tls.Config // nil = plaintext (loopback only)
	Logger  *slog.Logger
}

// State is a snapshot of the client's sync state.
type State struct {
	Connected bool              // a stream is open and the control plane accepted it
	Synced    bool              // the initial sync is done (see Synced)
	Versions  map[string]string // type URL → last accepted version
	LastError string            // last NACK reason or connection error
}

// Client is an ADS client. Run it once.
type Client struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	state   State
	running bool

	synced     chan struct{}
	syncedOnce sync.Once
}

// New returns a Client; nothing happens until Run.
func New(opts Options) *Client {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Client{
		opts:   opts,
		log:    logger.With("xds", opts.Addr, "node", opts.NodeID),
		state:  State{Versions: map[string]string{}},
		synced: make(chan struct{}),
	}
}

// State returns the client's current sync state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state
	s.Versions = maps.Clone(c.state.Versions)
	return s
}

// Synced returns a channel closed once the initial sync is done: CDS and LDS
// accepted, and the EDS and RDS resources they name all received.
func (c *Client) Synced() <-chan struct{} { return c.synced }

// Run keeps one ADS stream open until ctx ends, reconnecting with capped
// exponential backoff and jitter. It calls h from a single goroutine, in
// order. It returns nil once ctx ends, or an error if it cannot start.
func (c *Client) Run(ctx context.Context, h Handler) error {
	if c.opts.Addr == "" || c.opts.NodeID == "" {
		return errors.New("xds client: Addr and NodeID are required")
	}
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("xds client: Run called twice")
	}
	c.running = true
	c.mu.Unlock()

	conn, err := grpc.NewClient(c.opts.Addr, c.dialOptions()...)
	if err != nil {
		return fmt.Errorf("xds client: dial %s: %w", c.opts.Addr, err)
	}
	defer func() { _ = conn.Close() }()

	acc := newAccepted()
	delay := backoffStart
	for {
		progressed, err := c.runStream(ctx, conn, h, acc)
		if ctx.Err() != nil {
			c.setConnected(false, "")
			return nil
		}
		if progressed {
			delay = backoffStart
		}
		wait := jitter(delay)
		c.log.Warn("xDS stream ended; reconnecting", "err", err, "in", wait)
		c.setConnected(false, errString(err))
		delay = min(delay*2, backoffCap)

		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// jitter spreads d over [d/2, d].
func jitter(d time.Duration) time.Duration {
	half := d / 2
	return half + rand.N(half+1)
}

func (c *Client) dialOptions() []grpc.DialOption {
	creds := insecure.NewCredentials()
	if c.opts.TLS != nil {
		creds = credentials.NewTLS(c.opts.TLS)
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseBytes), grpc.MaxCallSendMsgSize(maxRequestBytes)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: backoffStart, Multiplier: 2, Jitter: 0.2, MaxDelay: backoffCap},
			MinConnectTimeout: minConnectTimeout,
		}),
	}
}

func (c *Client) setConnected(connected bool, lastErr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state.Connected = connected
	if lastErr != "" {
		c.state.LastError = lastErr
	}
}

func (c *Client) setAccepted(acc *accepted) {
	c.mu.Lock()
	c.state.Versions = maps.Clone(acc.versions)
	synced := acc.synced()
	if synced {
		c.state.Synced = true
	}
	c.mu.Unlock()
	if synced {
		c.syncedOnce.Do(func() {
			c.log.Info("xDS initial sync done")
			close(c.synced)
		})
	}
}

func (c *Client) setLastError(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state.LastError = msg
}

func errString(err error) string {
	if err == nil {
		return "stream closed by the server"
	}
	return err.Error()
}
