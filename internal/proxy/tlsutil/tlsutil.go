// Package tlsutil builds the TLS 1.3 configurations used between Trellis
// sidecars. Certificates and trust bundles are read from an Identity on every
// handshake, so a rotated SVID or bundle takes effect on the next connection
// without restarting listeners or dropping established connections.
//
// Peer verification is SPIFFE X.509-SVID verification (go-spiffe's
// x509svid.Verify) against the current bundle: exactly one URI SAN, a
// leaf that is not a CA, a chain to the bundle of the peer's trust domain,
// within its validity period. Trellis is stricter than go-spiffe on two
// points (VerifySVID): the SPIFFE ID must name a workload (a path, not the
// bare trust domain), and a DNS SAN, which the SPIFFE spec allows beside
// the ID, must not be a wildcard: Trellis's CA never issues DNS SANs, so a
// leaf with "*.example" was made to be accepted by something that checks
// names, and is refused. Clients additionally enforce secure naming: the
// server's SPIFFE ID must be one of the IDs allowed to serve the cluster.
package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Identity supplies the local SVID and the trust bundle.
type Identity interface {
	Certificate() (*tls.Certificate, error)
	x509bundle.Source
}

// ALPN protocol identifiers used in the mesh.
const (
	ALPNH2    = "h2"
	ALPNHTTP1 = "http/1.1"
	ALPNTCP   = "trellis-tcp"
)

// ErrNotAllowed reports a server whose SPIFFE ID is valid but not allowed to
// serve the cluster (secure naming).
var ErrNotAllowed = errors.New("server spiffe id not allowed for cluster")

// ServerConfig returns a TLS 1.3 server config that requires and verifies a
// client SVID. alpn lists the protocols offered, in preference order.
func ServerConfig(id Identity, alpn []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		NextProtos: slices.Clone(alpn),
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return certificate(id)
		},
		// VerifyConnection, unlike VerifyPeerCertificate, also runs on
		// resumed sessions, so a ticket never outlives a bundle change.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if _, err := VerifySVID(cs.PeerCertificates, id); err != nil {
				return fmt.Errorf("verify client svid: %w", err)
			}
			return nil
		},
	}
}

// ClientConfig returns a TLS 1.3 client config that presents the local SVID
// and accepts only servers whose SPIFFE ID is in allowed. An empty allowed
// list accepts any SVID of a trusted domain. Go's hostname verification is
// replaced (InsecureSkipVerify) by the SPIFFE verification below, which is
// always installed.
func ClientConfig(id Identity, allowed []spiffeid.ID, alpn []string) *tls.Config {
	allowed = slices.Clone(allowed)
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		NextProtos:         slices.Clone(alpn),
		InsecureSkipVerify: true, // replaced by VerifyConnection: SPIFFE + secure naming.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return certificate(id)
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			peer, err := VerifySVID(cs.PeerCertificates, id)
			if err != nil {
				return fmt.Errorf("verify server svid: %w", err)
			}
			if len(allowed) > 0 && !slices.Contains(allowed, peer) {
				return fmt.Errorf("%w: %s", ErrNotAllowed, peer)
			}
			return nil
		},
	}
}

// VerifySVID verifies a peer's X.509-SVID chain (leaf first) against the
// bundles and returns its SPIFFE ID: go-spiffe's checks, then Trellis's
// (see the package doc).
func VerifySVID(certs []*x509.Certificate, bundles x509bundle.Source) (spiffeid.ID, error) {
	id, _, err := x509svid.Verify(certs, bundles)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if id.Path() == "" {
		return spiffeid.ID{}, fmt.Errorf("svid: %s names a trust domain, not a workload", id)
	}
	for _, name := range certs[0].DNSNames {
		if strings.Contains(name, "*") {
			return spiffeid.ID{}, fmt.Errorf("svid: wildcard DNS SAN %q", name)
		}
	}
	return id, nil
}

// PeerID returns the SPIFFE ID of the verified peer of a TLS connection.
func PeerID(cs *tls.ConnectionState) (spiffeid.ID, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("no peer certificate")
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("peer spiffe id: %w", err)
	}
	return id, nil
}

// OwnID returns the SPIFFE ID of a certificate's leaf.
func OwnID(cert *tls.Certificate) (spiffeid.ID, error) {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return spiffeid.ID{}, errors.New("empty certificate")
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return spiffeid.ID{}, fmt.Errorf("parse leaf: %w", err)
		}
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("own spiffe id: %w", err)
	}
	return id, nil
}

// Handshake runs a TLS handshake bounded by ctx.
func Handshake(ctx context.Context, c *tls.Conn) error {
	if err := c.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	return nil
}

func certificate(id Identity) (*tls.Certificate, error) {
	c, err := id.Certificate()
	if err != nil {
		return nil, fmt.Errorf("local svid: %w", err)
	}
	return c, nil
}
