package e2e

import (
	"testing"
	"time"
)

// TestAttacks attacks a running mesh (docs/security.md, "Attacks and their
// tests"): each step checks that the attack fails closed with a clear
// answer, that nothing reaches the app, and that legitimate traffic still
// works. Steps share one mesh and leave it as they found it.
func TestAttacks(t *testing.T) {
	am := startAttackMesh(t)
	defer am.up.stop(10 * time.Second)
	defer am.control.stop(5 * time.Second)
	steps := []struct {
		name string
		run  func(*testing.T, *attackMesh)
	}{
		{"smuggling", testSmuggling},
		{"header-limits", testHeaderLimits},
		{"slowloris", testSlowloris},
		{"idle-timeout", testIdleTimeout},
		{"h2-rapid-reset", testRapidReset},
		{"h2-continuation-flood", testContinuationFlood},
		{"h2-smuggling", testH2Smuggling},
		{"oversized-bodies", testOversizedBodies},
		{"spoofed-identity", testSpoofedIdentity},
		{"mtls-leaves", testMTLSLeaves},
		{"control-plane-ports", testControlPlanePorts},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.run(t, am) }) {
			t.Logf("sidecar logs of the failed step:\n%s", tail(am.up.out.String(), 60))
		}
	}
}
