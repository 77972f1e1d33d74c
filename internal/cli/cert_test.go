package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
)

var certNow = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

func TestPrintCert(t *testing.T) {
	leafFP, rootFP := strings.Repeat("a", 64), strings.Repeat("b", 64)
	rep := &certReport{Workload: "web-1", Namespace: "default", SidecarCerts: &api.SidecarCerts{
		Identity: "spiffe://cluster.local/ns/default/sa/web", NotAfter: certNow.Add(30 * time.Minute), Rotations: 2,
		LastRotation: certNow.Add(-10 * time.Second), NextRotation: certNow.Add(20 * time.Minute),
		Chain: []api.CertInfo{
			{Issuer: "CN=Root", SPIFFEID: "spiffe://cluster.local/ns/default/sa/web", Serial: "1f", Fingerprint: leafFP, NotAfter: certNow.Add(30 * time.Minute)},
			{Subject: "CN=Root", Issuer: "CN=Root", Serial: "2", Fingerprint: rootFP, NotAfter: certNow.AddDate(10, 0, 0), IsCA: true},
		},
		Bundle:        []api.CertInfo{{Subject: "CN=Root", Fingerprint: rootFP, NotAfter: certNow.AddDate(10, 0, 0)}},
		Signer:        strings.Repeat("c", 64),
		BundleRefresh: api.Duration(30 * time.Second),
	}}
	var out bytes.Buffer
	if err := printCert(&out, rep, certNow); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Workload   default/web-1",
		"Identity   spiffe://cluster.local/ns/default/sa/web",
		"Expires    2026-11-22T05:30:00Z (in 30m0s)",
		"Rotations  2; last 2026-11-22T04:59:50Z (10s ago); next 2026-11-22T05:20:00Z (in 20m0s)",
		"leaf   -",
		"3653d",
		"CA signer  cccccccccccccccc (not the leaf's issuer",
		"bbbbbbbbbbbbbbbb  CN=Root",
		"fetched every 30s",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	rep.Chain[0].NotAfter = certNow.Add(-time.Second)
	out.Reset()
	_ = printCert(&out, rep, certNow)
	if !strings.Contains(out.String(), "expired") {
		t.Errorf("an expired leaf is not shown as expired:\n%s", out.String())
	}
}

func TestRootState(t *testing.T) {
	later := certNow.Add(time.Minute)
	tests := []struct {
		root api.CARoot
		want string
	}{
		{api.CARoot{Active: true, Trusted: true}, "signing"},
		{api.CARoot{Trusted: true, ActiveFrom: later}, "trusted; signs in 1m0s"},
		{api.CARoot{CertInfo: api.CertInfo{NotAfter: certNow.AddDate(1, 0, 0)}, Trusted: true, ActiveFrom: certNow.Add(-time.Hour), TrustedUntil: certNow.Add(25 * time.Hour)},
			"trusted for 25h0m0s (superseded)"},
		{api.CARoot{Trusted: false}, "no longer trusted"},
		{api.CARoot{CertInfo: api.CertInfo{NotAfter: later}, Trusted: true, TrustedUntil: later}, "trusted"},
	}
	for _, tt := range tests {
		if got := rootState(tt.root, certNow); got != tt.want {
			t.Errorf("rootState(%+v) = %q, want %q", tt.root, got, tt.want)
		}
	}
}

func TestPrintCAStatus(t *testing.T) {
	st := &api.CAStatus{
		TrustDomain: "cluster.local", Source: api.CASourceOperator, LeafTTL: api.Duration(time.Hour), BundleRefresh: api.Duration(30 * time.Second),
		Signer: api.CertInfo{Subject: "CN=Intermediate", Fingerprint: strings.Repeat("1", 64), NotAfter: certNow.Add(time.Hour)},
		Chain:  []api.CertInfo{{Subject: "CN=Intermediate", Fingerprint: strings.Repeat("1", 64)}},
		Roots:  []api.CARoot{{CertInfo: api.CertInfo{Subject: "CN=Root", Fingerprint: strings.Repeat("2", 64), NotAfter: certNow.AddDate(1, 0, 0)}, Active: true, Trusted: true, TrustedUntil: certNow.AddDate(1, 0, 0)}},
	}
	var out bytes.Buffer
	if err := printCAStatus(&out, st, certNow); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"operator-supplied", "1111111111111111  CN=Intermediate", "2222222222222222  CN=Root", "signing", "live 1h0m0s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
