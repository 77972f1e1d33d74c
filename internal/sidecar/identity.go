package sidecar

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
)

// identity owns the sidecar's private key and its current SVID. It implements
// proxy.Identity: the proxy asks for the certificate and bundle on every
// handshake, so a rotation never touches open connections.
type identity struct {
	client    *api.Client
	namespace string
	workload  string
	logger    *slog.Logger

	key *ecdsa.PrivateKey

	mu        sync.RWMutex
	cert      *tls.Certificate
	leaf      *x509.Certificate
	received  time.Time // when leaf was installed
	bundle    *x509bundle.Bundle
	rotations int
}

func newIdentity(client *api.Client, namespace, workload string, logger *slog.Logger) (*identity, error) {
	key, err := ca.NewKey()
	if err != nil {
		return nil, fmt.Errorf("make key: %w", err)
	}
	return &identity{client: client, namespace: namespace, workload: workload, logger: logger, key: key}, nil
}

// Certificate implements proxy.Identity.
func (id *identity) Certificate() (*tls.Certificate, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.cert == nil {
		return nil, errors.New("no certificate yet")
	}
	return id.cert, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (id *identity) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.bundle == nil {
		return nil, errors.New("no trust bundle yet")
	}
	return id.bundle.GetX509BundleForTrustDomain(td)
}

// Leaf returns the current leaf certificate, or nil.
func (id *identity) Leaf() *x509.Certificate {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.leaf
}

// Rotations counts certificates obtained after the first.
func (id *identity) Rotations() int {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.rotations
}

// fetch sends a CSR for the workload's identity and installs the answer.
func (id *identity) fetch(ctx context.Context, spiffeID spiffeid.ID) error {
	csr, err := ca.NewCSR(id.key, spiffeID)
	if err != nil {
		return fmt.Errorf("make CSR: %w", err)
	}
	resp, err := id.client.Sign(ctx, api.CertificateRequest{
		Namespace: id.namespace,
		Workload:  id.workload,
		CSR:       string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
	})
	if err != nil {
		return fmt.Errorf("sign CSR: %w", err)
	}
	chain, err := ca.ParseChainPEM([]byte(resp.Chain))
	if err != nil || len(chain) == 0 {
		return fmt.Errorf("parse issued chain: %w", errors.Join(err, errors.New("empty chain")))
	}
	if chain[0].URIs == nil || len(chain[0].URIs) != 1 || chain[0].URIs[0].String() != spiffeID.String() {
		return fmt.Errorf("issued certificate does not carry %s", spiffeID)
	}
	roots, err := ca.ParseChainPEM([]byte(resp.Bundle))
	if err != nil || len(roots) == 0 {
		return fmt.Errorf("parse trust bundle: %w", errors.Join(err, errors.New("empty bundle")))
	}
	cert := &tls.Certificate{PrivateKey: id.key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	id.mu.Lock()
	if id.cert != nil {
		id.rotations++
	}
	id.cert, id.leaf, id.received = cert, chain[0], time.Now()
	id.bundle = x509bundle.FromX509Authorities(spiffeID.TrustDomain(), roots)
	id.mu.Unlock()
	id.logger.Info("certificate installed", "identity", spiffeID.String(), "serial", chain[0].SerialNumber.Text(16), "notAfter", chain[0].NotAfter)
	return nil
}

// renewAt is when to ask for the next certificate: at about half-life, with
// jitter so that a fleet issued together does not renew together. The life
// counts from when the certificate arrived, not from NotBefore: CAs backdate
// NotBefore for clock skew, which would make a short-lived certificate look
// half-used on arrival.
func renewAt(leaf *x509.Certificate, received time.Time) time.Time {
	start := received
	if leaf.NotBefore.After(start) {
		start = leaf.NotBefore
	}
	life := leaf.NotAfter.Sub(start)
	if life <= 0 {
		return received // already expired: renew now
	}
	jitter := time.Duration(rand.Int64N(int64(life/10) + 1))
	return start.Add(life/2 + jitter)
}

func (id *identity) nextRenewal() time.Time {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return renewAt(id.leaf, id.received)
}

// rotate renews the certificate at about half-life until ctx ends. A failed
// renewal is retried with backoff; the old certificate stays in use until it
// expires, after which handshakes fail closed (never plaintext).
func (id *identity) rotate(ctx context.Context, spiffeID spiffeid.ID) {
	for {
		wait := time.Until(id.nextRenewal())
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		}
		backoff := 500 * time.Millisecond
		for {
			err := id.fetch(ctx, spiffeID)
			if err == nil {
				break
			}
			id.logger.Warn("certificate renewal failed; retrying", "err", err, "in", backoff, "expires", id.Leaf().NotAfter)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}
