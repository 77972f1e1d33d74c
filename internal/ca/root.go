package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	rootValidYears = 10
	pemPrivateKey  = "PRIVATE KEY"
)

// root is one root CA certificate the CA trusts, and may sign with.
type root struct {
	cert *x509.Certificate
	key  crypto.Signer // nil: trusted only (an operator's root, a superseded generated root)
	// activeFrom is when a generated root starts signing, until a later
	// root's activeFrom. Zero for roots that never sign.
	activeFrom time.Time
	// trustedUntil is when the root leaves the bundle; zero: at its expiry.
	trustedUntil time.Time
}

// trustEnd is when the root stops being trusted.
func (r root) trustEnd() time.Time {
	if r.trustedUntil.IsZero() || r.trustedUntil.After(r.cert.NotAfter) {
		return r.cert.NotAfter
	}
	return r.trustedUntil
}

func (r root) trusted(now time.Time) bool { return now.Before(r.trustEnd()) }

// storedRoots is the JSON of the CARoot record. Records written before
// rotation existed hold one root in Cert and Key, and no Roots.
type storedRoots struct {
	Roots []storedRoot `json:"roots,omitempty"`
	Cert  string       `json:"cert,omitempty"` // legacy single root: PEM CERTIFICATE
	Key   string       `json:"key,omitempty"`  // legacy single root: PEM PRIVATE KEY (PKCS#8)
}

type storedRoot struct {
	Cert         string    `json:"cert"`          // PEM CERTIFICATE
	Key          string    `json:"key,omitempty"` // PEM PRIVATE KEY (PKCS#8); absent once superseded
	ActiveFrom   time.Time `json:"activeFrom,omitzero"`
	TrustedUntil time.Time `json:"trustedUntil,omitzero"`
}

// newRoot makes a self-signed ECDSA P-256 root for td.
func newRoot(td spiffeid.TrustDomain, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := NewKey()
	if err != nil {
		return nil, nil, fmt.Errorf("create CA root: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("create CA root: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The creation time in the name tells rotated roots apart in tools
		// that show only the subject.
		Subject: pkix.Name{
			Organization: []string{"Trellis"},
			CommonName:   "Trellis root CA " + td.Name() + " " + now.UTC().Format("20060102T150405Z"),
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(rootValidYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA root: self-sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA root: parse: %w", err)
	}
	return cert, key, nil
}

// newSerial returns a random, non-zero 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// checkRoot verifies that a stored root is a CA of td and, when the CA
// holds its key, that the key is the certificate's. Expiry is the signer's
// business (issuerAt): an expired root that no longer signs is harmless.
func checkRoot(r root, td spiffeid.TrustDomain) error {
	if err := checkCACert(r.cert, td); err != nil {
		return err
	}
	if r.key != nil {
		return keyMatches(r.key, r.cert)
	}
	return nil
}

// checkCACert checks what every CA certificate of the mesh needs: CA:true,
// the CertSign key usage, and no SPIFFE ID of another trust domain.
func checkCACert(cert *x509.Certificate, td spiffeid.TrustDomain) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("certificate is not a CA (basic constraints CA:true missing)")
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("certificate lacks the CertSign key usage")
	}
	for _, u := range cert.URIs {
		id, err := spiffeid.FromURI(u)
		if err != nil {
			continue // not a SPIFFE ID: allowed on a brought-in CA
		}
		if id.TrustDomain() != td {
			return fmt.Errorf("certificate is for trust domain %q, this CA is configured for %q", id.TrustDomain(), td)
		}
	}
	return nil
}

func keyMatches(key crypto.Signer, cert *x509.Certificate) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("private key does not match the certificate")
	}
	return nil
}

func encodeRoots(roots []root) ([]byte, error) {
	out := storedRoots{Roots: make([]storedRoot, 0, len(roots))}
	for _, r := range roots {
		sr := storedRoot{
			Cert:         string(pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: r.cert.Raw})),
			ActiveFrom:   r.activeFrom.UTC(),
			TrustedUntil: r.trustedUntil.UTC(),
		}
		if r.key != nil {
			keyDER, err := x509.MarshalPKCS8PrivateKey(r.key)
			if err != nil {
				return nil, fmt.Errorf("encode CA root key: %w", err)
			}
			sr.Key = string(pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: keyDER}))
		}
		out.Roots = append(out.Roots, sr)
	}
	data, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode CA roots: %w", err)
	}
	return data, nil
}

// decodeRoots reads the CARoot record, either form.
func decodeRoots(data []byte) ([]root, error) {
	var sr storedRoots
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if len(sr.Roots) == 0 {
		// Written before rotation: one root, signing since it was made,
		// trusted until it expires.
		r, err := decodeRoot(storedRoot{Cert: sr.Cert, Key: sr.Key}, true)
		if err != nil {
			return nil, err
		}
		r.activeFrom = r.cert.NotBefore
		return []root{r}, nil
	}
	roots := make([]root, 0, len(sr.Roots))
	for i, s := range sr.Roots {
		r, err := decodeRoot(s, false)
		if err != nil {
			return nil, fmt.Errorf("root %d: %w", i+1, err)
		}
		roots = append(roots, r)
	}
	slices.SortStableFunc(roots, func(a, b root) int { return a.activeFrom.Compare(b.activeFrom) })
	return roots, nil
}

func decodeRoot(s storedRoot, needKey bool) (root, error) {
	certs, err := ParseChainPEM([]byte(s.Cert))
	if err != nil {
		return root{}, fmt.Errorf("cert: %w", err)
	}
	if len(certs) != 1 {
		return root{}, fmt.Errorf("cert: %d certificates, want 1", len(certs))
	}
	r := root{cert: certs[0], activeFrom: s.ActiveFrom, trustedUntil: s.TrustedUntil}
	if s.Key == "" && !needKey {
		return r, nil
	}
	block, rest := pem.Decode([]byte(s.Key))
	if block == nil {
		return root{}, errors.New("key: no PEM block")
	}
	if block.Type != pemPrivateKey {
		return root{}, fmt.Errorf("key: PEM block %q, want %q (PKCS#8)", block.Type, pemPrivateKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return root{}, errors.New("key: data after the PEM block")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return root{}, fmt.Errorf("key: %w", err)
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return root{}, fmt.Errorf("key: %T cannot sign", parsed)
	}
	r.key = signer
	return r, nil
}
