package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

// Network rbac filters (envoy.filters.network.rbac) run before tcp_proxy,
// once per connection, after the TLS handshake: the peer's principal, the
// addresses, the destination port and the SNI are known; HTTP matchers
// never match. A denied connection is closed at once (after delay_deny
// when set) and counted as rbac_denied.

var typeNetworkRBAC = typeURL(&rbacnetv3.RBAC{})

// translateNetworkFilters translates the network rbac filters that lead a
// chain's filters and returns the filters after them (the terminal one).
func translateNetworkFilters(filters []*listenerv3.Filter) ([]*rbacFilter, []*listenerv3.Filter, error) {
	var out []*rbacFilter
	for i, f := range filters {
		if f.GetTypedConfig().GetTypeUrl() != typeNetworkRBAC {
			return out, filters[i:], nil
		}
		if f.GetConfigDiscovery() != nil {
			return nil, nil, fmt.Errorf("filters[%d] (%q).config_discovery: not supported", i, f.GetName())
		}
		var cfg rbacnetv3.RBAC
		if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
			return nil, nil, fmt.Errorf("filters[%d] (%q).typed_config: %w", i, f.GetName(), err)
		}
		rf, err := translateNetworkRBAC(f.GetName(), &cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("filters[%d] (%q).%w", i, f.GetName(), err)
		}
		out = append(out, rf)
	}
	return out, nil, nil
}

// translateNetworkRBAC translates one network rbac filter. The
// enforcement type makes no difference before tcp_proxy (nothing sets
// dynamic metadata that a later evaluation could see), so both are
// accepted and the connection is evaluated once.
func translateNetworkRBAC(name string, cfg *rbacnetv3.RBAC) (*rbacFilter, error) {
	if cfg.GetMatcher() != nil {
		return nil, fmt.Errorf("typed_config.matcher: the xDS matcher forms are not supported, use rules")
	}
	if cfg.GetShadowMatcher() != nil {
		return nil, fmt.Errorf("typed_config.shadow_matcher: the xDS matcher forms are not supported, use shadow_rules")
	}
	f, err := newRBACFilter(name, cfg.GetRules(), cfg.GetShadowRules())
	if err != nil {
		return nil, err
	}
	if d := cfg.GetDelayDeny(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return nil, fmt.Errorf("typed_config.delay_deny: invalid duration")
		}
		f.delayDeny = d.AsDuration()
	}
	return f, nil
}

// authorizeConn runs the listener chain's network rbac filters over a
// connection: false when it must be closed (after delay_deny, or ctx).
func (p *Proxy) authorizeConn(ctx context.Context, lc *listenerConfig, conn net.Conn, state *tls.ConnectionState, log *slog.Logger) bool {
	r := &tcpAuthz{state: state}
	r.direct, _ = addrPort(conn.RemoteAddr())
	r.local, r.localPort = addrPort(conn.LocalAddr())
	if state != nil {
		if id, err := tlsutil.PeerID(state); err == nil {
			r.peer = id.String()
		}
	}
	for _, f := range lc.netRBAC {
		if f.authorize(lc, log, r) {
			continue
		}
		if f.delayDeny > 0 {
			t := time.NewTimer(f.delayDeny)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		return false
	}
	return true
}

// tcpAuthz is a TCP connection as an rbac.Request.
type tcpAuthz struct {
	state     *tls.ConnectionState
	peer      string
	direct    netip.Addr
	local     netip.Addr
	localPort uint32
}

func (r *tcpAuthz) PeerPrincipal() (string, bool) { return r.peer, r.peer != "" }
func (r *tcpAuthz) DirectRemoteIP() netip.Addr    { return r.direct }
func (r *tcpAuthz) RemoteIP() netip.Addr          { return r.direct }
func (r *tcpAuthz) DestinationIP() netip.Addr     { return r.local }
func (r *tcpAuthz) DestinationPort() uint32       { return r.localPort }
func (r *tcpAuthz) HTTP() bool                    { return false }
func (r *tcpAuthz) URLPath() string               { return "" }

func (r *tcpAuthz) RequestedServerName() string {
	if r.state == nil {
		return ""
	}
	return r.state.ServerName
}

func (r *tcpAuthz) HeaderValue(string, int) (string, int, bool) { return "", 0, false }

func (r *tcpAuthz) AuthMetadata(string, []string) (any, bool) { return nil, false }
