package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

func TestConfigDumpShapeAndOrder(t *testing.T) {
	p := newProxy(t, proxytest.NewCA(t, trustDomain).Identity(t, clientID))
	if p.Ready() {
		t.Fatal("Ready before the first Update")
	}
	set := validSet(t)
	for _, l := range set.Listeners {
		l.Address = proxytest.Addr(t, proxytest.FreeAddr(t))
	}
	if err := p.Update(set); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if !p.Ready() {
		t.Fatal("not Ready after Update")
	}
	a, err := p.ConfigDump()
	if err != nil {
		t.Fatalf("ConfigDump: %v", err)
	}
	b, _ := p.ConfigDump()
	if string(a) != string(b) {
		t.Error("ConfigDump is not deterministic")
	}
	var dump struct {
		Configs []struct {
			Type             string `json:"@type"`
			DynamicListeners []struct {
				Name string `json:"name"`
			} `json:"dynamic_listeners"`
		} `json:"configs"`
	}
	if err := json.Unmarshal(a, &dump); err != nil {
		t.Fatalf("dump is not JSON: %v\n%s", err, a)
	}
	var types []string
	for _, c := range dump.Configs {
		types = append(types, c.Type)
	}
	want := "type.googleapis.com/envoy.admin.v3.ListenersConfigDump,type.googleapis.com/envoy.admin.v3.RoutesConfigDump," +
		"type.googleapis.com/envoy.admin.v3.ClustersConfigDump,type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"
	if got := strings.Join(types, ","); got != want {
		t.Errorf("config types = %s", got)
	}
	var names []string
	for _, l := range dump.Configs[0].DynamicListeners {
		names = append(names, l.Name)
	}
	if len(names) != 3 || !sort.StringsAreSorted(names) {
		t.Errorf("listener names = %v, want 3 sorted", names)
	}
}

func TestStatsSortedAndCounted(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	c := httpClient(t)
	for range 3 {
		get(t, c, m.url("/ok"), nil)
	}
	get(t, c, m.url("/missing"), nil)
	var sb strings.Builder
	m.client.WriteStats(&sb)
	lines := strings.Split(strings.TrimSuffix(sb.String(), "\n"), "\n")
	if !sort.StringsAreSorted(lines) {
		t.Error("stats not sorted")
	}
	for _, want := range []string{
		"listener." + outName + ".requests 4",
		"listener." + outName + ".responses_2xx 3",
		"listener." + outName + ".responses_5xx 1",
		"cluster." + outCluster + ".responses_2xx 3",
		"cluster." + outCluster + ".active_connections 1", // pooled and reused
	} {
		if !strings.Contains(sb.String(), want+"\n") {
			t.Errorf("stats lack %q:\n%s", want, sb.String())
		}
	}
	// A foreign client's handshake failure is counted on the inbound listener.
	foreign := proxytest.NewCA(t, trustDomain)
	if res, err := tlsClient(t, proxytest.ClientTLS(foreign.SVID(t, clientID), m.ca)).Get("https://" + m.inAddr + "/"); err == nil {
		res.Body.Close()
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		sb.Reset()
		m.server.WriteStats(&sb)
		if strings.Contains(sb.String(), "listener."+inName+".tls_handshake_failures 1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inbound handshake failure not counted:\n%s", sb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRotationKeepsServing(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	c := httpClient(t)
	get(t, c, m.url("/before"), nil)
	m.clientIdentity.Rotate(m.ca.SVID(t, clientID))
	// New upstream connections pick up the new SVID; force one.
	m.client.cfg.Load().clusters[outCluster].up.closeIdle()
	res, body := get(t, c, m.url("/after"), nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "URI="+clientID) {
		t.Fatalf("after rotation: %d %q", res.StatusCode, body)
	}
}

func TestShutdownDrainsInFlight(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	c := httpClient(t)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Get(m.url("/slow"))
		if err != nil {
			done <- result{err: err}
			return
		}
		_, _ = io.ReadAll(res.Body)
		res.Body.Close()
		done <- result{code: res.StatusCode}
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.client.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	r := <-done
	if r.err != nil || r.code != http.StatusOK {
		t.Fatalf("in-flight request during shutdown: %d %v", r.code, r.err)
	}
	if err := m.client.Update(m.buildClientSet(t)); err == nil {
		t.Error("Update after Shutdown succeeded")
	}
}

// A caller that hangs up mid-request is counted as downstream_cancelled,
// not as an upstream 5xx: otherwise every load generator that stops with
// requests in flight would show the upstream as failing.
func TestCallerHangUpIsNotA5xx(t *testing.T) {
	m := newMesh(t, echoApp(), false)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.url("/slow"), nil)
	if res, err := httpClient(t).Do(req); err == nil {
		res.Body.Close()
		t.Fatal("the slow request finished before the caller's deadline; the test proves nothing")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		var sb strings.Builder
		m.client.WriteStats(&sb)
		s := sb.String()
		if strings.Contains(s, "listener."+outName+".downstream_cancelled 1\n") {
			if !strings.Contains(s, "listener."+outName+".responses_5xx 0\n") {
				t.Fatalf("hang-up counted as 5xx:\n%s", s)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hang-up not counted as downstream_cancelled:\n%s", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
