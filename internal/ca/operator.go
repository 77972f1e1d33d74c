package ca

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// OperatorFiles name an operator-supplied CA.
type OperatorFiles struct {
	// Cert holds the signing CA certificate first, then its parents: a
	// self-signed root alone, or an intermediate followed by the CAs above
	// it (the last may be the root).
	Cert string
	// Key is the private key of the first certificate of Cert.
	Key string
	// Bundle (optional) holds the root(s) to trust: the intermediate's root
	// when Cert does not end with it, and any other root to keep trusted
	// (the previous one, during a rotation).
	Bundle string
}

// LoadOperator builds a CA that signs with an operator's root or
// intermediate. It checks, naming the file at fault: the key is the
// certificate's; every CA certificate is CA:true with the CertSign usage,
// currently valid, and carries no SPIFFE ID of another trust domain; each
// certificate of the chain is signed by the next; the chain ends at a root
// of the bundle; and a leaf signed with it verifies as an SVID against the
// bundle. Leaves then carry [leaf, intermediates...]; the bundle holds the
// roots.
func LoadOperator(files OperatorFiles, opts Options) (*CA, error) {
	td, opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("operator CA: --ca-cert and --ca-key go together")
	}
	chain, err := readCerts("--ca-cert", files.Cert)
	if err != nil {
		return nil, err
	}
	key, err := readKey(files.Key)
	if err != nil {
		return nil, err
	}
	var bundle []*x509.Certificate
	if files.Bundle != "" {
		if bundle, err = readCerts("--ca-bundle", files.Bundle); err != nil {
			return nil, err
		}
	}
	now := opts.Now()
	iss, roots, err := operatorIssuer(files, chain, key, bundle, td, now)
	if err != nil {
		return nil, err
	}
	c := newCA(td, opts, nil, roots, 0)
	c.operator = iss
	if err := c.selfTest(now); err != nil {
		return nil, fmt.Errorf("--ca-cert %s: %w", files.Cert, err)
	}
	return c, nil
}

// operatorIssuer checks the files' certificates and returns the signer and
// the bundle's roots.
func operatorIssuer(files OperatorFiles, chain []*x509.Certificate, key crypto.Signer, bundle []*x509.Certificate,
	td spiffeid.TrustDomain, now time.Time) (*issuer, []root, error) {
	if err := keyMatches(key, chain[0]); err != nil {
		return nil, nil, fmt.Errorf("--ca-key %s: %w (the key must be that of the first certificate of --ca-cert %s)", files.Key, err, files.Cert)
	}
	for i, cert := range chain {
		if err := checkOperatorCert(cert, td, now); err != nil {
			return nil, nil, fmt.Errorf("--ca-cert %s: certificate %d (%s): %w", files.Cert, i+1, cert.Subject, err)
		}
		if i+1 < len(chain) {
			if err := cert.CheckSignatureFrom(chain[i+1]); err != nil {
				return nil, nil, fmt.Errorf("--ca-cert %s: certificate %d (%s) is not signed by certificate %d (%s): want the signing CA first, then its parents in order: %w",
					files.Cert, i+1, cert.Subject, i+2, chain[i+1].Subject, err)
			}
		}
	}
	for i, cert := range bundle {
		if err := checkOperatorCert(cert, td, now); err != nil {
			return nil, nil, fmt.Errorf("--ca-bundle %s: certificate %d (%s): %w", files.Bundle, i+1, cert.Subject, err)
		}
	}
	// A self-signed last certificate is a root: trusted, and not served
	// with the leaves (peers have it in the bundle).
	served := chain
	last := chain[len(chain)-1]
	if selfSigned(last) {
		if len(chain) > 1 {
			served = chain[:len(chain)-1]
		}
		if !containsCert(bundle, last) {
			bundle = append(bundle, last)
		}
	} else if len(bundle) == 0 {
		return nil, nil, fmt.Errorf("--ca-cert %s: the chain ends at %q, which is not self-signed, and no --ca-bundle names its root: give the root in --ca-bundle (or append it to --ca-cert)",
			files.Cert, last.Subject)
	}
	pool := x509.NewCertPool()
	for _, r := range bundle {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	verified, err := chain[0].Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		where := "it"
		if files.Bundle != "" {
			where = "--ca-bundle " + files.Bundle
		}
		return nil, nil, fmt.Errorf("--ca-cert %s: %q does not chain to a root of %s: %w", files.Cert, chain[0].Subject, where, err)
	}
	anchor := verified[0][len(verified[0])-1]
	notAfter := anchor.NotAfter
	for _, c := range slices.Concat(verified[0], chain) {
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	iss := &issuer{cert: chain[0], key: key, notAfter: notAfter, root: anchor}
	for _, c := range served {
		iss.chain = append(iss.chain, c.Raw)
	}
	roots := make([]root, 0, len(bundle))
	for _, r := range bundle {
		roots = append(roots, root{cert: r})
	}
	return iss, roots, nil
}

// checkOperatorCert: a CA of td, valid now.
func checkOperatorCert(cert *x509.Certificate, td spiffeid.TrustDomain, now time.Time) error {
	if err := checkCACert(cert, td); err != nil {
		return err
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("not valid before %s", cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(cert.NotAfter) {
		return fmt.Errorf("expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// selfTest signs a throwaway leaf and verifies it as an SVID against the
// bundle, as a peer sidecar would: this catches what the checks above do
// not (path length and name constraints, unusual key types).
func (c *CA) selfTest(now time.Time) error {
	key, err := NewKey()
	if err != nil {
		return err
	}
	id, err := WorkloadID(c.td, "trellis-system", "ca-self-test")
	if err != nil {
		return err
	}
	csr, err := NewCSR(key, id)
	if err != nil {
		return err
	}
	chain, err := c.Sign(csr, id, time.Minute)
	if err != nil {
		return fmt.Errorf("cannot sign a test certificate: %w", err)
	}
	got, _, err := x509svid.ParseAndVerify(chain, c.Bundle(), x509svid.WithTime(now))
	if err != nil {
		return fmt.Errorf("a certificate signed with it does not verify against the trust bundle: %w", err)
	}
	if got != id {
		return fmt.Errorf("a certificate signed with it verified as %s, want %s", got, id)
	}
	return nil
}

func readCerts(flag, path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	certs, err := ParseChainPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return certs, nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca-key: %w", err)
	}
	key, err := ParseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("--ca-key %s: %w", path, err)
	}
	return key, nil
}

func selfSigned(cert *x509.Certificate) bool {
	return cert.CheckSignatureFrom(cert) == nil
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if x.Equal(c) {
			return true
		}
	}
	return false
}
