package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// tcpMesh is client outbound TCP → server inbound mTLS TCP → echo app;
// setServer replaces the inbound's network filters before tcp_proxy.
type tcpMesh struct {
	client, server  *Proxy
	inAddr, outAddr string
	app             string
}

const (
	tcpIn      = "inbound|9000"
	tcpOut     = "outbound|9000|echo"
	tcpCluster = "outbound|9000||echo"
)

func newTCPMesh(t *testing.T) *tcpMesh {
	t.Helper()
	ca := proxytest.NewCA(t, trustDomain)
	m := &tcpMesh{app: serveEcho(t), inAddr: proxytest.FreeAddr(t), outAddr: proxytest.FreeAddr(t)}
	m.client = newProxy(t, ca.Identity(t, clientID))
	m.server = newProxy(t, ca.Identity(t, serverID))
	m.setServer(t)
	cs := resources.NewSet()
	cs.Listeners[tcpOut] = proxytest.Listener(t, tcpOut, m.outAddr, proxytest.TCPProxy(t, tcpCluster), nil)
	cs.Clusters[tcpCluster] = proxytest.EDSCluster(t, tcpCluster, []string{serverID}, false, "trellis-tcp")
	cs.Endpoints[tcpCluster] = proxytest.CLA(t, tcpCluster, []string{m.inAddr})
	if err := m.client.Update(cs); err != nil {
		t.Fatalf("client Update: %v", err)
	}
	return m
}

func (m *tcpMesh) setServer(t *testing.T, filters ...*listenerv3.Filter) {
	t.Helper()
	ss := resources.NewSet()
	l := proxytest.Listener(t, tcpIn, m.inAddr, proxytest.TCPProxy(t, tcpIn), proxytest.DownstreamTLS(t, "trellis-tcp"))
	l.FilterChains[0].Filters = append(filters, l.FilterChains[0].Filters...)
	ss.Listeners[tcpIn] = l
	ss.Clusters[tcpIn] = proxytest.StaticCluster(t, tcpIn, m.app, false)
	if err := m.server.Update(ss); err != nil {
		t.Fatalf("server Update: %v", err)
	}
}

// echo reports whether a message comes back through both sidecars; false
// when the connection is closed without it.
func (m *tcpMesh) echo(t *testing.T) bool {
	t.Helper()
	conn, err := net.Dial("tcp", m.outAddr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("ping")
	if _, err := conn.Write(msg); err != nil {
		return false
	}
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(conn, buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("no answer and no close within the deadline")
	}
	return err == nil && string(buf) == "ping"
}

func networkRBAC(t testing.TB, name string, cfg *rbacnetv3.RBAC) *listenerv3.Filter {
	cfg.StatPrefix = name
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.Any(t, cfg)}}
}

func tcpRules(action rbacv3.RBAC_Action, prin *rbacv3.Principal, perm *rbacv3.Permission) *rbacv3.RBAC {
	return &rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{"ns.default.p.rule.0": rbacPolicy(perm, prin)}}
}

func TestRBACTCP(t *testing.T) {
	m := newTCPMesh(t)
	if !m.echo(t) {
		t.Fatal("no echo without rbac")
	}
	_, port, _ := net.SplitHostPort(m.inAddr)
	loopback := &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: &corev3.CidrRange{AddressPrefix: "127.0.0.0", PrefixLen: wrapperspb.UInt32(8)}}}
	denied := 0
	for _, tc := range []struct {
		name    string
		filters []*listenerv3.Filter
		want    bool
	}{
		{"allow the client", []*listenerv3.Filter{networkRBAC(t, "trellis.rbac.allow", &rbacnetv3.RBAC{Rules: tcpRules(rbacv3.RBAC_ALLOW, prinPeer(smExact(clientID)), nil)})}, true},
		{"allow another principal", []*listenerv3.Filter{networkRBAC(t, "trellis.rbac.allow", &rbacnetv3.RBAC{Rules: tcpRules(rbacv3.RBAC_ALLOW, prinPeer(smExact(otherID)), nil)})}, false},
		{"deny the client", []*listenerv3.Filter{networkRBAC(t, "trellis.rbac.deny", &rbacnetv3.RBAC{Rules: tcpRules(rbacv3.RBAC_DENY, prinPeer(smPrefix("spiffe://test.local/")), nil)})}, false},
		{"deny loopback sources on the port", []*listenerv3.Filter{networkRBAC(t, "trellis.rbac.deny", &rbacnetv3.RBAC{Rules: tcpRules(rbacv3.RBAC_DENY, loopback, permPort(t, port))})}, false},
		{"HTTP matchers never match", []*listenerv3.Filter{networkRBAC(t, "trellis.rbac.deny", &rbacnetv3.RBAC{Rules: tcpRules(rbacv3.RBAC_DENY, nil, permURLPath(smPrefix("/")))})}, true},
		{"deny then allow", []*listenerv3.Filter{
			networkRBAC(t, "trellis.rbac.deny", &rbacnetv3.RBAC{Rules: tcpRules(rbacv3.RBAC_DENY, prinPeer(smExact(otherID)), nil)}),
			networkRBAC(t, "trellis.rbac.allow", &rbacnetv3.RBAC{Rules: tcpRules(rbacv3.RBAC_ALLOW, prinPeer(smExact(clientID)), nil)}),
		}, true},
		{"delay_deny", []*listenerv3.Filter{networkRBAC(t, "trellis.rbac.deny", &rbacnetv3.RBAC{DelayDeny: durationpb.New(50 * time.Millisecond),
			Rules: tcpRules(rbacv3.RBAC_DENY, nil, nil)})}, false},
		{"shadow rules never deny", []*listenerv3.Filter{networkRBAC(t, "shadow", &rbacnetv3.RBAC{ShadowRules: tcpRules(rbacv3.RBAC_DENY, nil, nil)})}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.setServer(t, tc.filters...)
			if got := m.echo(t); got != tc.want {
				t.Fatalf("echo = %v, want %v", got, tc.want)
			}
			if !tc.want {
				denied++
			}
			waitStat(t, m.server, statLine(tcpIn, "rbac_denied", denied))
		})
	}
}

func permPort(t *testing.T, port string) *rbacv3.Permission {
	var p uint32
	for _, c := range port {
		p = p*10 + uint32(c-'0')
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: p}}
}

func TestTranslateNetworkRBAC(t *testing.T) {
	tcp := func(filters ...*listenerv3.Filter) *listenerv3.Listener {
		l := proxytest.Listener(t, tcpIn, "127.0.0.1:1", proxytest.TCPProxy(t, tcpIn), nil)
		l.FilterChains[0].Filters = append(filters, l.FilterChains[0].Filters...)
		return l
	}
	ok := networkRBAC(t, "r", &rbacnetv3.RBAC{Rules: tcpRules(rbacv3.RBAC_DENY, nil, nil)})
	for _, tc := range []struct {
		name string
		l    *listenerv3.Listener
		want string
	}{
		{"accepted", tcp(ok, ok), ""},
		{"bad rules", tcp(networkRBAC(t, "r", &rbacnetv3.RBAC{Rules: &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {}}}})),
			`filters[0] ("r").typed_config.rules.policies["p"].permissions: empty`},
		{"shadow matcher", tcp(networkRBAC(t, "r", &rbacnetv3.RBAC{ShadowMatcher: matcherTree()})), `filters[0] ("r").typed_config.shadow_matcher: the xDS matcher forms are not supported`},
		{"rbac after tcp_proxy", func() *listenerv3.Listener {
			l := tcp()
			l.FilterChains[0].Filters = append(l.FilterChains[0].Filters, ok)
			return l
		}(), "filters: 2 filters, want exactly 1"},
		{"rbac before the HCM", func() *listenerv3.Listener {
			l := proxytest.Listener(t, inName, "127.0.0.1:1", proxytest.HCM(t, "r", nil, false), nil)
			l.FilterChains[0].Filters = append([]*listenerv3.Filter{ok}, l.FilterChains[0].Filters...)
			return l
		}(), "network rbac filters are supported before tcp_proxy only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc, err := translateListener(tc.l, newStatsRegistry())
			if tc.want == "" {
				if err != nil || len(lc.netRBAC) != 2 {
					t.Fatalf("translateListener: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
