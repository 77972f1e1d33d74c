package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// expiryDR keeps no pooled connection to sink idle for more than a second,
// so that after the expiry the caller must open new connections (see the
// "pooled connections" step for what happens to one kept busy).
const expiryDR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: sink
spec:
  host: sink
  trafficPolicy:
    connectionPool:
      http: {idleTimeout: 1s}
`

// TestAttackCertExpiry: with 10-second certificates and the control plane
// gone for longer than that, the sidecars' certificates expire and traffic
// fails closed: a connection opened before the expiry and kept busy stops
// carrying requests at it, new connections fail (503 from the caller's
// sidecar) and nothing reaches the app; the caller never falls back to
// plaintext (a tap endpoint of the service sees only TLS ClientHellos).
// With the control plane back, certificates are renewed and traffic
// recovers.
func TestAttackCertExpiry(t *testing.T) {
	am := startAttackMesh(t, "--cert-ttl", "10s")
	defer am.up.stop(10 * time.Second)
	applyYAML(t, am.mesh, "sink-dr.yaml", expiryDR)
	am.waitMeshReady(t)
	am.legitGet(t, "/expiry/before")

	// A second endpoint of sink that records what the caller sends it.
	tap := newTap(t)
	deregister := registerEndpoint(t, am.mesh, "sink-tap", "sink", tap.ln.Addr().String())
	eventually(t, 15*time.Second, "the tap endpoint is tried", func() error {
		_, _, _, _ = httpGet("http://" + am.clientOut + "/expiry/tap")
		if tap.conns.Load() == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	admins := map[string]string{"client-v1": am.workload("client-v1").Admin, "sink-v1": am.workload("sink-v1").Admin}
	// A caller that keeps one pooled connection busy across the expiry.
	keeper := startKeeper(am.clientOut + "/expiry/keeper")
	if !am.control.stop(5 * time.Second) {
		t.Fatal("the control plane did not stop")
	}
	stopped := time.Now()
	var expired time.Time
	eventually(t, 20*time.Second, "every sidecar's certificate expired", func() error {
		for name, admin := range admins {
			na := certNotAfter(t, admin)
			if time.Now().Before(na) {
				return fmt.Errorf("%s: certificate valid until %s", name, na.Format(time.RFC3339))
			}
			if na.After(expired) {
				expired = na
			}
		}
		return nil
	})
	t.Logf("certificates expired %v after the control plane stopped", expired.Sub(stopped).Round(100*time.Millisecond))
	time.Sleep(time.Second)
	servedBefore, servedAfter := keeper.stop(expired.Add(500 * time.Millisecond))

	t.Run("pooled connections die with their certificates", func(t *testing.T) {
		t.Logf("the busy caller was served %d times before the expiry, %d after", servedBefore, servedAfter)
		if servedBefore < 5 {
			t.Fatalf("the busy caller was served %d times before the expiry: the step proves nothing", servedBefore)
		}
		if servedAfter > 0 {
			t.Errorf("%d requests after the certificates expired were served on a connection opened before", servedAfter)
		}
	})

	time.Sleep(1500 * time.Millisecond) // past the pool's idle timeout
	started, tapConns := am.sink.started.Load(), tap.conns.Load()
	for i := range 20 {
		code, hdr, body, err := httpGet(fmt.Sprintf("http://%s/expiry/after/%d", am.clientOut, i))
		switch {
		case err != nil:
			// A failing connection is closed too.
		case code == http.StatusServiceUnavailable && hdr.Get("X-Trellis-Reason") == "upstream_connect_failure":
		default:
			t.Errorf("request %d with expired certificates: %d %q %q", i, code, hdr.Get("X-Trellis-Reason"), body)
		}
	}
	if n := am.sink.started.Load() - started; n != 0 {
		t.Errorf("%d requests reached the app with expired certificates", n)
	}
	if tap.conns.Load() == tapConns {
		t.Error("the tap endpoint was not tried after expiry: the plaintext check proves nothing")
	}
	if n := tap.plaintext.Load(); n != 0 {
		t.Errorf("the caller's sidecar sent plaintext %d times (first bytes %q)", n, tap.firstSeen.Load())
	}

	restarted := time.Now()
	am.startControl()
	deregister()
	eventually(t, 60*time.Second, "traffic recovers with renewed certificates", func() error {
		code, _, body, err := httpGet("http://" + am.clientOut + "/expiry/recovered")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %v %q", code, err, body)
		}
		return nil
	})
	t.Logf("recovered %v after the control plane restarted", time.Since(restarted).Round(100*time.Millisecond))
	for name, admin := range admins {
		if na := certNotAfter(t, admin); !time.Now().Before(na) {
			t.Errorf("%s: traffic recovered but the certificate was not renewed (not after %s)", name, na)
		}
	}
	if n := tap.plaintext.Load(); n != 0 {
		t.Errorf("the caller's sidecar sent plaintext %d times", n)
	}
}

// keeper sends a request every 200ms until stopped, recording when the app
// answered.
type keeper struct {
	mu     sync.Mutex
	served []time.Time
	done   chan struct{}
	quit   chan struct{}
}

func startKeeper(url string) *keeper {
	k := &keeper{done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(k.done)
		for {
			select {
			case <-k.quit:
				return
			case <-time.After(200 * time.Millisecond):
			}
			code, hdr, _, err := httpGet("http://" + url)
			if err == nil && code == http.StatusOK && hdr.Get("X-Served-By") == "sink-v1" {
				k.mu.Lock()
				k.served = append(k.served, time.Now())
				k.mu.Unlock()
			}
		}
	}()
	return k
}

// stop ends the keeper and counts the answers from the app before and
// after t.
func (k *keeper) stop(t time.Time) (before, after int) {
	close(k.quit)
	<-k.done
	for _, s := range k.served {
		if s.After(t) {
			after++
		} else {
			before++
		}
	}
	return before, after
}

// certNotAfter reads the end of validity of a sidecar's certificate from
// its admin /certs.
func certNotAfter(t testing.TB, admin string) time.Time {
	t.Helper()
	code, _, body, err := httpGet("http://" + admin + "/certs")
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s/certs: %d %v %s", admin, code, err, body)
	}
	var c struct {
		NotAfter time.Time `json:"notAfter"`
	}
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatalf("%s/certs: %v", admin, err)
	}
	return c.NotAfter
}
