package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

// The connection-level steps of an inbound listener, shared by the HTTP and
// TCP servers (ADR 002):
//
//	accept ─► tls_inspector? ─ peek the first bytes ─► TLS record: the TLS chain
//	   │                                           └─► anything else: the plaintext chain
//	   └─ no inspector: the listener's only chain
//	chain with a TLS transport socket ─► mTLS handshake (client SVID verified)
//
// A connection that matches no chain (plaintext on a STRICT listener with
// tls_inspector, TLS on a DISABLE one) is closed, as Envoy does.

// errNoChain: no filter chain of the listener takes the connection.
var errNoChain = errors.New("no filter chain matches the connection's transport")

// tlsRecordHandshake and tlsRecordMajor start every TLS ClientHello record.
const (
	tlsRecordHandshake = 0x16
	tlsRecordMajor     = 0x03
)

// downstream is an accepted connection after its listener's connection-level
// steps.
type downstream struct {
	conn  net.Conn             // the TLS connection, or the plaintext one
	pre   []byte               // plaintext bytes read while sniffing (not in conn any more)
	chain *listenerConfig      // the filter chain serving it
	state *tls.ConnectionState // nil: plaintext
}

// replayed returns the connection with the sniffed bytes put back in front.
func (d *downstream) replayed() net.Conn {
	if len(d.pre) == 0 {
		return d.conn
	}
	return &prefixConn{Conn: d.conn, pre: d.pre}
}

// acceptDownstream picks the filter chain of a new connection on listener
// lc and runs its transport: sniffing with tls_inspector, then the mTLS
// handshake on a TLS chain, both within timeout (a client that sends
// nothing is closed) and ctx. The connection's deadline is cleared after.
func (p *Proxy) acceptDownstream(ctx context.Context, lc *listenerConfig, c net.Conn, tc *serverTLS, timeout time.Duration) (downstream, error) {
	isTLS := lc.tls != nil
	var pre []byte
	if lc.inspect {
		limit := timeout
		if lc.sniffTimeout > 0 && lc.sniffTimeout < limit {
			limit = lc.sniffTimeout // listener_filters_timeout
		}
		_ = c.SetDeadline(time.Now().Add(limit))
		var err error
		if isTLS, pre, err = sniffTLS(ctx, c); err != nil {
			return downstream{}, fmt.Errorf("tls_inspector: %w", err)
		}
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	d := downstream{conn: c, pre: pre, chain: lc.chain(isTLS)}
	if d.chain == nil {
		return downstream{}, errNoChain
	}
	if isTLS {
		ec := &expiringConn{Conn: d.replayed()}
		tconn := tls.Server(ec, tc.get(p.id, d.chain.tls.alpn))
		if err := tconn.HandshakeContext(ctx); err != nil {
			lc.stats.tlsFailures.Add(1)
			return downstream{}, fmt.Errorf("tls handshake: %w", err)
		}
		cs := tconn.ConnectionState()
		ec.closeAt(certExpiry(&cs, p.id)) // expiry.go
		d.conn, d.pre, d.state = tconn, nil, &cs
	}
	_ = c.SetDeadline(time.Time{})
	return d, nil
}

// sniffTLS reads the first bytes of a connection, enough to tell a TLS
// handshake record (0x16 0x03) from anything else, and returns them.
func sniffTLS(ctx context.Context, c net.Conn) (isTLS bool, pre []byte, err error) {
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(aLongTimeAgo) })
	defer stop()
	buf := make([]byte, 16)
	n := 0
	for n == 0 || n == 1 && buf[0] == tlsRecordHandshake {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil && (n == 0 || n == 1 && buf[0] == tlsRecordHandshake) {
			return false, nil, err
		}
	}
	return buf[0] == tlsRecordHandshake && buf[1] == tlsRecordMajor, buf[:n], nil
}

// serverTLS keeps the TLS server config of a listener's TLS chain across
// connections (so session tickets stay valid), rebuilt when the chain's
// ALPN list changes.
type serverTLS struct {
	cur atomic.Pointer[serverTLSConfig]
}

type serverTLSConfig struct {
	alpn []string
	cfg  *tls.Config
}

func (s *serverTLS) get(id tlsutil.Identity, alpn []string) *tls.Config {
	if c := s.cur.Load(); c != nil && slices.Equal(c.alpn, alpn) {
		return c.cfg
	}
	c := &serverTLSConfig{alpn: slices.Clone(alpn), cfg: tlsutil.ServerConfig(id, alpn)}
	s.cur.Store(c)
	return c.cfg
}

// connIP returns the address of a connection's peer without its port.
func connIP(addr net.Addr) string {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case nil:
		return ""
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}
