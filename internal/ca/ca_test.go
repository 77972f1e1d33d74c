package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trellis-mesh/trellis/internal/store"
)

func newTestCA(t testing.TB, opts Options) *CA {
	t.Helper()
	c, err := LoadOrCreate(context.Background(), openStore(t, t.TempDir()), opts)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	return c
}

func TestRootShape(t *testing.T) {
	c := newTestCA(t, Options{Now: fixedNow(t0)})
	root := activeRoot(t, c)
	if got := c.TrustDomain().Name(); got != "cluster.local" {
		t.Errorf("trust domain = %q, want cluster.local", got)
	}
	if !root.BasicConstraintsValid || !root.IsCA || root.MaxPathLen != 1 || root.MaxPathLenZero {
		t.Errorf("basic constraints: valid=%v CA=%v pathlen=%d, want CA with pathlen 1",
			root.BasicConstraintsValid, root.IsCA, root.MaxPathLen)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; root.KeyUsage != want {
		t.Errorf("key usage = %v, want %v", root.KeyUsage, want)
	}
	if len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://cluster.local" {
		t.Errorf("URI SANs = %v, want [spiffe://cluster.local]", root.URIs)
	}
	pub, ok := root.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("root key = %T, want ECDSA P-256", root.PublicKey)
	}
	if want := t0.AddDate(10, 0, 0); !root.NotAfter.Equal(want) {
		t.Errorf("root NotAfter = %v, want %v", root.NotAfter, want)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	certs, err := ParseChainPEM(c.BundlePEM())
	if err != nil || len(certs) != 1 || !certs[0].Equal(root) {
		t.Errorf("BundlePEM does not hold the root: %v", err)
	}
	if got := c.Bundle().X509Authorities(); len(got) != 1 || !got[0].Equal(root) {
		t.Errorf("Bundle authorities = %d certs, want the root", len(got))
	}
}

func TestRootPersisted(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st := openStore(t, dir)
	first, err := LoadOrCreate(ctx, st, Options{})
	if err != nil {
		t.Fatalf("first LoadOrCreate: %v", err)
	}
	second, err := LoadOrCreate(ctx, st, Options{TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatalf("second LoadOrCreate: %v", err)
	}
	if !bytes.Equal(first.BundlePEM(), second.BundlePEM()) {
		t.Errorf("second LoadOrCreate made a new root")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	third, err := LoadOrCreate(ctx, openStore(t, dir), Options{})
	if err != nil {
		t.Fatalf("LoadOrCreate after reopening the store: %v", err)
	}
	if !bytes.Equal(first.BundlePEM(), third.BundlePEM()) {
		t.Errorf("root changed across a store reopen")
	}
	// The reloaded key signs leaves the first CA's bundle trusts.
	id := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	chain, err := third.Sign(mustCSR(t, mustKey(t), id), id, 0)
	if err != nil {
		t.Fatalf("Sign with the reloaded root: %v", err)
	}
	verifySVID(t, chain, first, id)
}

// noCreate hides the embedded store's Create, as a backend without it would.
type noCreate struct{ store.Store }

func TestConcurrentStartsAgree(t *testing.T) {
	tests := []struct {
		name string
		wrap func(store.Store) store.Store
	}{
		{"with Create", func(s store.Store) store.Store { return s }},
		{"Put fallback", func(s store.Store) store.Store { return noCreate{s} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.wrap(openStore(t, t.TempDir()))
			const n = 8
			cas := make([]*CA, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { cas[i], errs[i] = LoadOrCreate(context.Background(), st, Options{}) })
			}
			wg.Wait()
			rec, err := st.Get(context.Background(), RootKind, RootNamespace, RootName)
			if err != nil {
				t.Fatalf("get stored root: %v", err)
			}
			stored, err := fromRecord(rec, st, cas[0].td, Options{Now: time.Now, TTL: DefaultTTL})
			if err != nil {
				t.Fatalf("stored root: %v", err)
			}
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("LoadOrCreate %d: %v", i, errs[i])
				}
				// Only Create guarantees agreement under a race; the Put
				// fallback is checked for errors alone.
				if tt.name == "with Create" && !bytes.Equal(cas[i].BundlePEM(), stored.BundlePEM()) {
					t.Errorf("control plane %d has a root other than the stored one", i)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		data    func(t *testing.T) []byte
		opts    Options
		wantErr string
	}{
		{"not JSON", func(*testing.T) []byte { return []byte("{") }, Options{}, "decode JSON"},
		{"no certificate", func(*testing.T) []byte { return []byte(`{"cert":"","key":""}`) }, Options{}, "no certificate"},
		{"other trust domain", func(t *testing.T) []byte { return legacyRootData(t, "a.test", t0) }, Options{TrustDomain: "b.test"}, `configured for "b.test"`},
		{"expired root", func(t *testing.T) []byte { return legacyRootData(t, "cluster.local", t0) }, Options{Now: fixedNow(t0.AddDate(11, 0, 0))}, "root expired"},
		{"key of another root", func(t *testing.T) []byte {
			var a, b storedRoots
			mustUnmarshal(t, legacyRootData(t, "cluster.local", t0), &a)
			mustUnmarshal(t, legacyRootData(t, "cluster.local", t0), &b)
			return mustMarshal(t, storedRoots{Cert: a.Cert, Key: b.Key})
		}, Options{}, "does not match"},
		{"key not PKCS#8", func(t *testing.T) []byte {
			var r storedRoots
			mustUnmarshal(t, legacyRootData(t, "cluster.local", t0), &r)
			r.Key = strings.ReplaceAll(r.Key, "PRIVATE KEY", "EC PRIVATE KEY")
			return mustMarshal(t, r)
		}, Options{}, "PKCS#8"},
		{"key missing", func(t *testing.T) []byte {
			var r storedRoots
			mustUnmarshal(t, legacyRootData(t, "cluster.local", t0), &r)
			r.Key = ""
			return mustMarshal(t, r)
		}, Options{}, "key: no PEM block"},
		{"list: key of another root", func(t *testing.T) []byte {
			var a, b storedRoots
			mustUnmarshal(t, legacyRootData(t, "cluster.local", t0), &a)
			mustUnmarshal(t, legacyRootData(t, "cluster.local", t0), &b)
			return mustMarshal(t, storedRoots{Roots: []storedRoot{{Cert: a.Cert, Key: b.Key, ActiveFrom: t0}}})
		}, Options{}, "root 1 ("},
		{"list: no root signs", func(t *testing.T) []byte {
			var a storedRoots
			mustUnmarshal(t, legacyRootData(t, "cluster.local", t0), &a)
			return mustMarshal(t, storedRoots{Roots: []storedRoot{{Cert: a.Cert, Key: a.Key}}})
		}, Options{}, "none is active"},
		{"list: the signer's key was dropped", func(t *testing.T) []byte {
			var a storedRoots
			mustUnmarshal(t, legacyRootData(t, "cluster.local", t0), &a)
			return mustMarshal(t, storedRoots{Roots: []storedRoot{{Cert: a.Cert, ActiveFrom: t0}}})
		}, Options{}, "key is missing"},
		{"bad trust domain option", nil, Options{TrustDomain: "Not A Domain"}, "trust domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, t.TempDir())
			if tt.data != nil {
				rec := store.Record{Kind: RootKind, Namespace: RootNamespace, Name: RootName, Data: tt.data(t)}
				if _, err := st.Put(ctx, rec); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadOrCreate(ctx, st, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadOrCreate error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseChainPEM(t *testing.T) {
	c := newTestCA(t, Options{})
	id := mustID(t, "spiffe://cluster.local/ns/default/sa/web")
	chain, err := c.Sign(mustCSR(t, mustKey(t), id), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	pemChain := EncodeChainPEM(chain)
	certs, err := ParseChainPEM(pemChain)
	if err != nil {
		t.Fatalf("ParseChainPEM: %v", err)
	}
	var got [][]byte
	for _, cert := range certs {
		got = append(got, cert.Raw)
	}
	if diff := cmp.Diff(chain, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	bad := []struct{ name, in, wantErr string }{
		{"empty", "", "no certificate"},
		{"blank", " \n", "no certificate"},
		{"key block", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", `"PRIVATE KEY"`},
		{"trailing garbage", string(pemChain) + "garbage", "not PEM"},
		{"not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1"},
	}
	for _, tt := range bad {
		if _, err := ParseChainPEM([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error = %v, want one containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestWorkloadID(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	id, err := WorkloadID(td, "default", "reviews")
	if err != nil || id.String() != "spiffe://cluster.local/ns/default/sa/reviews" {
		t.Errorf("WorkloadID = %v, %v", id, err)
	}
	if _, err := WorkloadID(td, "", "reviews"); err == nil {
		t.Errorf("WorkloadID with an empty namespace: no error")
	}
}
