package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
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
