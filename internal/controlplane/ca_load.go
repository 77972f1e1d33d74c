package controlplane

import (
	"context"
	"errors"
	"fmt"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/store"
)

// loadCA builds the CA: the operator's files when given, else the generated
// roots kept in the store (made on first start).
func (cp *ControlPlane) loadCA(ctx context.Context) (*ca.CA, error) {
	opts := ca.Options{TrustDomain: cp.cfg.TrustDomain, TTL: cp.cfg.CertTTL, BundleRefresh: cp.cfg.BundleRefresh}
	files := cp.cfg.CA
	if files == (ca.OperatorFiles{}) {
		return ca.LoadOrCreate(ctx, cp.store, opts)
	}
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("--ca-cert and --ca-key go together (--ca-bundle is optional)")
	}
	c, err := ca.LoadOperator(files, opts)
	if err != nil {
		return nil, err
	}
	signer, chain, err := c.Signer()
	if err != nil {
		return nil, err
	}
	served := make([]string, len(chain))
	for i, cert := range chain {
		served[i] = cert.Subject.String()
	}
	attrs := []any{"cert", files.Cert, "signer", signer.Subject.String(), "fingerprint", ca.Fingerprint(signer),
		"servedWithLeaves", served, "roots", len(c.Roots()), "notAfter", signer.NotAfter}
	// Say when the operator's CA takes over from a generated root: sidecars
	// that trusted the old root get the new bundle on their next refresh.
	_, err = cp.store.Get(ctx, ca.RootKind, ca.RootNamespace, ca.RootName)
	switch {
	case err == nil:
		cp.logger.Warn("operator-supplied CA in use: it replaces the generated root kept in the store, which is neither used nor trusted while --ca-cert is given", attrs...)
	case errors.Is(err, store.ErrNotFound):
		cp.logger.Info("operator-supplied CA in use", attrs...)
	default:
		return nil, fmt.Errorf("look for a generated root: %w", err)
	}
	return c, nil
}
