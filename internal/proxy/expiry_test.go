package proxy

import (
	"net/http"
	"testing"
	"time"
)

// TestConnectionsCloseAtCertExpiry: a pooled keep-alive connection does not
// outlive the certificates of its handshake. Once the server's certificate
// expires, requests fail closed (the caller's sidecar refuses the expired
// certificate on the new handshake) instead of riding the old connection,
// and traffic recovers when a valid certificate is back.
func TestConnectionsCloseAtCertExpiry(t *testing.T) {
	m := newMesh(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), false)
	c := httpClient(t)
	get := func() (int, string) {
		t.Helper()
		res, err := c.Get(m.url("/x"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode, res.Header.Get("X-Trellis-Reason")
	}
	m.serverIdentity.Rotate(m.ca.SVIDUntil(t, serverID, time.Now().Add(1500*time.Millisecond)))
	if code, reason := get(); code != 200 {
		t.Fatalf("before expiry: %d %s", code, reason)
	}
	if code, reason := get(); code != 200 { // on the pooled connection
		t.Fatalf("before expiry, again: %d %s", code, reason)
	}
	time.Sleep(2 * time.Second)
	if code, reason := get(); code != http.StatusServiceUnavailable || reason != reasonConnectFailure {
		t.Errorf("after the server's certificate expired: %d %s, want 503 %s (no request on the old connection)", code, reason, reasonConnectFailure)
	}
	m.serverIdentity.Rotate(m.ca.SVID(t, serverID))
	if code, reason := get(); code != 200 {
		t.Errorf("after renewal: %d %s, want 200", code, reason)
	}
}
