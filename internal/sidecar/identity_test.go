package sidecar

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestRenewAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name          string
		notBefore     time.Time
		notAfter      time.Time
		received      time.Time
		earliest, end time.Time // renewal must fall in [earliest, end]
	}{
		{"24h cert", now, now.Add(24 * time.Hour), now, now.Add(12 * time.Hour), now.Add(12*time.Hour + 144*time.Minute)},
		{"backdated 30s cert renews at 15s after arrival, not at once", now.Add(-time.Minute), now.Add(30 * time.Second), now,
			now.Add(15 * time.Second), now.Add(18 * time.Second)},
		{"expired cert renews now", now.Add(-time.Hour), now.Add(-time.Minute), now, now, now},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 100 { // jitter
				got := renewAt(&x509.Certificate{NotBefore: tc.notBefore, NotAfter: tc.notAfter}, tc.received)
				if got.Before(tc.earliest) || got.After(tc.end) {
					t.Fatalf("renewAt = %v, want within [%v, %v]", got, tc.earliest, tc.end)
				}
			}
		})
	}
}
