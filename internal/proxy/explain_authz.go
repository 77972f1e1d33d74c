package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/jwtauthn"
)

// explainAuthz evaluates the jwt_authn and rbac filters of an inbound
// listener for r as the sidecar would, in filter order, and fills their
// details; it returns the status of the local reply that stops the request
// (401, 403), or 0. peer is the caller's SPIFFE ID ("" over plaintext).
// Remote JWKS are not fetched: a token of such a provider is reported "not
// evaluated".
func explainAuthz(lc *listenerConfig, r *http.Request, view *request[string], peer string, details []FilterDetail) int {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a key cache that never fetches
	keys := jwtauthn.NewKeyCache(ctx, nil, slog.New(slog.DiscardHandler))
	az := &explainRequest{httpAuthz: newHTTPAuthz(r, view, lc), peer: peer, listener: lc.address}
	for i := range lc.filters.chain {
		f := &lc.filters.chain[i]
		d := &details[i]
		if d.Filter != f.name {
			continue // details follow the chain one to one; be safe
		}
		switch {
		case f.jwt != nil:
			d.Reason = ""
			filter, err := jwtauthn.Translate(f.jwt.cfg, keys)
			if err != nil {
				d.JWT = &JWTDetail{Result: "not evaluated", Error: err.Error()}
				continue
			}
			out, err := filter.Verify(time.Now(), az)
			switch {
			case errors.Is(err, jwtauthn.ErrNoKeys):
				d.JWT = &JWTDetail{Result: "not evaluated", Error: "the provider's keys come from its jwksUri, which only the sidecar fetches"}
			case err != nil:
				d.Applies = true
				d.JWT = &JWTDetail{Result: "invalid", Error: err.Error()}
				return http.StatusUnauthorized
			case !out.Authenticated:
				d.JWT = &JWTDetail{Result: "no token", Error: "passes authentication; authorization decides"}
			default:
				d.Applies = true
				d.JWT = &JWTDetail{Result: "verified", Principal: out.Principal, Audiences: out.Audiences}
				az.jwt = out
			}
		case f.rbac != nil:
			d.Reason = ""
			if f.rbac.rules == nil {
				d.Reason = "no rules (shadow rules only are counted, never deny)"
				continue
			}
			allowed, _, policy := f.rbac.rules.Allowed(az)
			d.Applies = true
			d.RBAC = &RBACDetail{Action: f.rbac.rules.Action().String(), Policies: f.rbac.rules.Policies(), Allowed: allowed, Policy: policy}
			if !allowed {
				return http.StatusForbidden
			}
		}
	}
	return 0
}

// explainRequest is the view of an explained request for the authz
// filters: the caller's identity comes from the mesh status rather than a
// TLS connection, and the destination is the listener's address.
type explainRequest struct {
	*httpAuthz
	peer     string
	listener string
}

func (e *explainRequest) PeerPrincipal() (string, bool) { return e.peer, e.peer != "" }

func (e *explainRequest) RemoteIP() netip.Addr { return e.DirectRemoteIP() }

func (e *explainRequest) DestinationIP() netip.Addr {
	ip, _ := e.destination()
	return ip
}

func (e *explainRequest) DestinationPort() uint32 {
	_, port := e.destination()
	return port
}

func (e *explainRequest) destination() (netip.Addr, uint32) {
	host, port, err := net.SplitHostPort(e.listener)
	if err != nil {
		return netip.Addr{}, 0
	}
	ip, _ := netip.ParseAddr(host)
	p, _ := strconv.ParseUint(port, 10, 16)
	return ip, uint32(p)
}
