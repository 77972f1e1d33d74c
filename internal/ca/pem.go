package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const pemCertificate = "CERTIFICATE"

// NewKey makes an ECDSA P-256 private key, the only kind Sign accepts.
func NewKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	return key, nil
}

// NewCSR makes a DER certificate request for id, signed with key, carrying
// id as its URI SAN.
func NewCSR(key *ecdsa.PrivateKey, id spiffeid.ID) ([]byte, error) {
	if key == nil {
		return nil, errors.New("create CSR: key is nil")
	}
	if id.IsZero() {
		return nil, errors.New("create CSR: SPIFFE ID is empty")
	}
	tmpl := &x509.CertificateRequest{
		SignatureAlgorithm: x509.ECDSAWithSHA256,
		URIs:               []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR for %s: %w", id, err)
	}
	return der, nil
}

// WorkloadID is the SPIFFE ID of a workload:
// spiffe://<td>/ns/<namespace>/sa/<serviceAccount>.
func WorkloadID(td spiffeid.TrustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	id, err := spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("workload ID for namespace %q, service account %q: %w", namespace, serviceAccount, err)
	}
	return id, nil
}

// EncodeChainPEM encodes DER certificates as consecutive PEM CERTIFICATE
// blocks, in order.
func EncodeChainPEM(der [][]byte) []byte {
	var out []byte
	for _, c := range der {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: c})...)
	}
	return out
}

// ParseChainPEM parses PEM CERTIFICATE blocks, in order. A block of another
// type, text after the last block, or no certificate at all is an error;
// text between blocks is skipped, as PEM allows.
func ParseChainPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("parse PEM chain: certificate %d: not PEM", len(certs)+1)
		}
		if block.Type != pemCertificate {
			return nil, fmt.Errorf("parse PEM chain: block %d is %q, want %q", len(certs)+1, block.Type, pemCertificate)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PEM chain: certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("parse PEM chain: no certificate")
	}
	return certs, nil
}

// Fingerprint is the SHA-256 of a certificate's DER, in lowercase hex (what
// `openssl x509 -noout -fingerprint -sha256` prints, without the colons).
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseKeyPEM parses one PEM private key: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"), the forms openssl and
// cert-manager write. Parameters blocks ("EC PARAMETERS") before the key are
// skipped; anything else, or a second key, is an error.
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	var key crypto.Signer
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("not PEM (or text after the last PEM block)")
		}
		if block.Type == "EC PARAMETERS" {
			continue
		}
		if key != nil {
			return nil, fmt.Errorf("a second PEM block (%q) after the key: want one key", block.Type)
		}
		var parsed any
		var err error
		switch block.Type {
		case pemPrivateKey:
			parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			parsed, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted: give it decrypted (openssl pkcs8 -in key.pem -out plain.pem)")
		default:
			return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", block.Type, err)
		}
		signer, ok := parsed.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%T cannot sign", parsed)
		}
		key = signer
	}
	if key == nil {
		return nil, errors.New("no private key")
	}
	return key, nil
}
