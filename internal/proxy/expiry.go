package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

// Certificates bound the life of a mutual TLS connection: a connection is
// closed when the earliest certificate of its handshake expires, its own
// or the peer's, on both sides. A pooled keep-alive connection therefore
// never carries traffic on an expired certificate (the control plane away
// longer than the certificates' TTL fails closed), and a rotated
// certificate takes effect on long-lived connections by the old one's
// expiry at the latest. Sidecars renew at half-life, so in normal
// operation the new handshake uses the renewed certificate and nothing
// fails.

// certExpiry is the earliest NotAfter of the peer's chain and of the local
// certificate; zero when neither is known.
func certExpiry(cs *tls.ConnectionState, own tlsutil.Identity) time.Time {
	var t time.Time
	earliest := func(c *x509.Certificate) {
		if c != nil && (t.IsZero() || c.NotAfter.Before(t)) {
			t = c.NotAfter
		}
	}
	if cs != nil {
		for _, c := range cs.PeerCertificates {
			earliest(c)
		}
	}
	if own != nil {
		if cert, err := own.Certificate(); err == nil && cert != nil {
			leaf := cert.Leaf
			if leaf == nil && len(cert.Certificate) > 0 {
				leaf, _ = x509.ParseCertificate(cert.Certificate[0])
			}
			earliest(leaf)
		}
	}
	return t
}

// expiringConn closes the connection under a TLS session at the session's
// certificate expiry (closeAt). Its timer stops when the connection
// closes first, so a closed connection leaves nothing behind.
type expiringConn struct {
	net.Conn
	mu     sync.Mutex
	at     time.Time
	timer  *time.Timer
	closed bool
}

// expiry is the time closeAt set (zero: none).
func (c *expiringConn) expiry() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

// closeAt arranges for the connection to close at t (now, if t has passed;
// never, if t is zero).
func (c *expiringConn) closeAt(t time.Time) {
	if t.IsZero() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.at = t
	c.timer = time.AfterFunc(time.Until(t), func() { _ = c.Conn.Close() })
}

func (c *expiringConn) Close() error {
	c.mu.Lock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// CloseWrite half-closes the connection underneath.
func (c *expiringConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
