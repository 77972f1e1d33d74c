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
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	rootValidYears = 10
	pemPrivateKey  = "PRIVATE KEY"
)

// rootRecord is the JSON stored as the CARoot record's data.
type rootRecord struct {
	Cert string `json:"cert"` // PEM CERTIFICATE
	Key  string `json:"key"`  // PEM PRIVATE KEY (PKCS#8)
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
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Trellis"}, CommonName: "Trellis root CA " + td.Name()},
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

func encodeRoot(cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode CA root key: %w", err)
	}
	data, err := json.Marshal(rootRecord{
		Cert: string(pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw})),
		Key:  string(pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: keyDER})),
	})
	if err != nil {
		return nil, fmt.Errorf("encode CA root: %w", err)
	}
	return data, nil
}

func decodeRoot(data []byte) (*x509.Certificate, crypto.Signer, error) {
	var rr rootRecord
	if err := json.Unmarshal(data, &rr); err != nil {
		return nil, nil, fmt.Errorf("decode JSON: %w", err)
	}
	certs, err := ParseChainPEM([]byte(rr.Cert))
	if err != nil {
		return nil, nil, fmt.Errorf("cert: %w", err)
	}
	if len(certs) != 1 {
		return nil, nil, fmt.Errorf("cert: %d certificates, want 1", len(certs))
	}
	block, rest := pem.Decode([]byte(rr.Key))
	if block == nil {
		return nil, nil, errors.New("key: no PEM block")
	}
	if block.Type != pemPrivateKey {
		return nil, nil, fmt.Errorf("key: PEM block %q, want %q (PKCS#8)", block.Type, pemPrivateKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, errors.New("key: data after the PEM block")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("key: %T cannot sign", parsed)
	}
	return certs[0], signer, nil
}
