package proxy

import (
	"bufio"
	"net"
	"testing"

	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

// BenchmarkRBACFilterFast is one 10-policy rbac filter on the fast path's
// request view (the last policy allows): the filter's own cost.
func BenchmarkRBACFilterFast(b *testing.B) {
	dc, f := fastAuthzBench(b)
	lc, log := dc.ra.authz.lc, dc.s.p.log
	b.ReportAllocs()
	for b.Loop() {
		if !f.rbac.authorize(lc, log, &dc.ra.authz) {
			b.Fatal("denied")
		}
	}
}

// BenchmarkMeshRequestRBAC sends keep-alive GETs through both sidecars on
// the fast path, without and with a 10-policy ALLOW rbac filter on the
// server's inbound listener whose last policy allows the client: the
// difference is what rbac adds to a request.
func BenchmarkMeshRequestRBAC(b *testing.B) {
	get := "GET /svc-j/items HTTP/1.1\r\nHost: server-j\r\nX-Tenant: t-j\r\n\r\n"
	b.Run("none", func(b *testing.B) { benchMeshFilters(b, get) })
	b.Run("rbac10", func(b *testing.B) {
		rules := tenPolicies()
		// The client is spiffe://test.local/ns/default/sa/client.
		rules.Policies["ns.default.pj.rule.0"].Principals[0] = prinPeer(smExact(clientID))
		benchMeshFilters(b, get, httpFilterEntry(b, "trellis.rbac.allow", &rbachttpv3.RBAC{Rules: rules}))
	})
}

func benchMeshFilters(b *testing.B, request string, filters ...*hcmv3.HttpFilter) {
	ca := proxytest.NewCA(b, trustDomain)
	m := &mesh{ca: ca, allowed: []string{serverID}}
	m.appAddr = rawApp(b, "hello, mesh\n")
	m.client = newProxy(b, ca.Identity(b, clientID))
	m.server = newProxy(b, ca.Identity(b, serverID))
	m.inAddr, m.outAddr = proxytest.FreeAddr(b), proxytest.FreeAddr(b)
	m.setServerFilters(b, filters...)
	if err := m.client.Update(m.buildClientSet(b)); err != nil {
		b.Fatal(err)
	}
	conn, err := net.Dial("tcp", m.outAddr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 16<<10)
	req := []byte(request)
	roundTrip := func() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readRawResponse(br); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
	if len(filters) > 0 {
		if s := statsOf(m.server); !containsLine(s, statLine(inName, "rbac_denied", 0)) {
			b.Fatalf("requests were denied:\n%s", s)
		}
	}
}

func containsLine(s, line string) bool {
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		if s[:i] == line {
			return true
		}
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return false
}
