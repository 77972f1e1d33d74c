package proxy

import (
	"net/netip"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellis-mesh/trellis/internal/proxy/rbac"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

// h1Authz is the fast path's view of the current request for the jwt_authn
// and rbac filters (rbac.Request, jwtauthn.Request). It lives in the
// connection's routeState, so evaluating rbac allocates nothing; jwt
// allocates only for a token that is present.
type h1Authz struct {
	dc *downConn
	lc *listenerConfig

	// The connection's addresses, read at its first request.
	addrs     bool
	direct    netip.Addr
	local     netip.Addr
	localPort uint32

	// The current request: the jwt outcome (zero: no jwt filter ran or no
	// token), the target without a removed token parameter, the realm of
	// a 401.
	jwt    jwtauthn.Outcome
	target []byte
	realm  []byte
}

// resetRequest forgets the previous request's jwt outcome.
func (a *h1Authz) resetRequest() {
	if a.jwt.Authenticated || a.jwt.RemoveHeaders != nil || a.jwt.SetHeaders != nil {
		a.jwt = jwtauthn.Outcome{}
	}
}

// disabledOn reports a per-route FilterConfig that disables an authz
// filter for rt (Envoy honours it for jwt_authn and rbac too).
func (f *httpFilter) disabledOn(rt *route) bool {
	if rt == nil {
		return false
	}
	for i := range rt.filters {
		if fc := &rt.filters[i]; fc.name == f.name {
			return fc.disabled
		}
	}
	return false
}

// runAuthz runs the jwt_authn or rbac filter f on the current request
// (head of n bytes). done: the filter answered; keep is then the
// connection's fate.
func (dc *downConn) runAuthz(lc *listenerConfig, f *httpFilter, n int, hasBody bool) (done, keep bool) {
	az := &dc.ra.authz
	az.dc, az.lc = dc, lc
	switch {
	case f.jwt != nil:
		var out jwtauthn.Outcome
		err := errNoJWTFilter
		if f.jwt.filter != nil {
			out, err = f.jwt.filter.Verify(time.Now(), az)
		}
		if err != nil {
			lc.stats.jwtAuthnFailed.Add(1)
			dc.s.p.log.Debug("jwt_authn refused a request", "listener", lc.name, "filter", f.name, "error", err)
			az.realm = appendAuthenticate(az.realm[:0], lc.scheme(), dc.req.host, dc.req.path)
			lr := jwtInvalidReply(f.jwt.filter, dc.grpcRequest(), az.realm)
			return true, dc.answer(lc, n, &lr, hasBody)
		}
		az.jwt = out
		dc.applyJWT(&az.jwt)
	case f.rbac != nil:
		if !f.rbac.authorize(lc, dc.s.p.log, az) {
			lr := rbacDeniedReply(dc.grpcRequest())
			return true, dc.answer(lc, n, &lr, hasBody)
		}
	}
	return false, false
}

// applyJWT applies a verified request's header removals and additions and
// the token query parameter's removal to the head forwarded.
func (dc *downConn) applyJWT(o *jwtauthn.Outcome) {
	rs, req := &dc.ra, &dc.req
	for _, name := range o.RemoveHeaders {
		removeRawFold(req.fields, &rs.reqAdd, name)
	}
	if o.RemoveQueryParam != "" {
		if t, ok := withoutQueryParam(req.target, o.RemoveQueryParam, rs.authz.target[:0]); ok {
			rs.authz.target, req.target = t, t
			rs.view.target, rs.view.query = t, splitQuery(t)
		}
	}
	for _, kv := range o.SetHeaders {
		a := jwtHeaderLine(kv[0], kv[1])
		if a == nil {
			continue
		}
		removeRawFold(req.fields, &rs.reqAdd, kv[0])
		rs.reqAdd = append(rs.reqAdd, a)
	}
}

// removeRawFold drops the fields and added lines named name (any case).
func removeRawFold(fields []hdrField, added *[]*headerAdd, name string) {
	for i := range fields {
		if f := &fields[i]; !f.drop && equalFold(f.name, name) {
			f.drop = true
		}
	}
	kept := (*added)[:0]
	for _, a := range *added {
		if !equalFold(a.name, name) {
			kept = append(kept, a)
		}
	}
	*added = kept
}

func (a *h1Authz) connAddrs() {
	if !a.addrs {
		a.direct, _ = addrPort(a.dc.nc.RemoteAddr())
		a.local, a.localPort = addrPort(a.dc.nc.LocalAddr())
		a.addrs = true
	}
}

// rbac.Request

func (a *h1Authz) PeerPrincipal() (string, bool) {
	dc := a.dc
	if dc.state == nil {
		return "", false
	}
	if dc.peer == "" {
		id, err := tlsutil.PeerID(dc.state)
		if err != nil {
			return "", false
		}
		dc.peer = id.String()
	}
	return dc.peer, true
}

func (a *h1Authz) DirectRemoteIP() netip.Addr { a.connAddrs(); return a.direct }

// RemoteIP is the leftmost x-forwarded-for entry a verified peer sidecar
// sent, else the connection's address.
func (a *h1Authz) RemoteIP() netip.Addr {
	if a.dc.state != nil {
		for i := range a.dc.req.fields {
			if f := &a.dc.req.fields[i]; !f.drop && equalFold(f.name, headerXFF) {
				if ip, ok := leftmostXFF(f.value); ok {
					return ip
				}
				break
			}
		}
	}
	return a.DirectRemoteIP()
}

func (a *h1Authz) DestinationIP() netip.Addr { a.connAddrs(); return a.local }
func (a *h1Authz) DestinationPort() uint32   { a.connAddrs(); return a.localPort }

func (a *h1Authz) RequestedServerName() string {
	if a.dc.state == nil {
		return ""
	}
	return a.dc.state.ServerName
}

func (a *h1Authz) HTTP() bool { return true }

// HeaderValue serves the pseudo-headers from the request line and Host,
// then the fields not dropped, then the lines a filter added (jwt_authn's).
func (a *h1Authz) HeaderValue(name string, pos int) (string, int, bool) {
	req := &a.dc.req
	var v []byte
	switch name {
	case ":method":
		v = req.method
	case ":authority":
		v = req.host
	case ":path":
		v = req.target
	case ":scheme":
		if pos > 0 {
			return "", 0, false
		}
		return a.lc.scheme(), 1, true
	default:
		fields := req.fields
		for i := pos; i < len(fields); i++ {
			if f := &fields[i]; !f.drop && equalFold(f.name, name) {
				return bytesView(f.value), i + 1, true
			}
		}
		added := a.dc.ra.reqAdd
		for j := max(pos-len(fields), 0); j < len(added); j++ {
			if equalFold(added[j].name, name) {
				return added[j].value, len(fields) + j + 1, true
			}
		}
		return "", 0, false
	}
	if pos > 0 {
		return "", 0, false
	}
	return bytesView(v), 1, true
}

func (a *h1Authz) URLPath() string { return bytesView(a.dc.ra.view.path) }

func (a *h1Authz) AuthMetadata(filter string, path []string) (any, bool) {
	if filter != rbac.AuthnFilter {
		return nil, false
	}
	return a.jwt.Lookup(path)
}

// jwtauthn.Request: values are copied (the filter may keep them).

func (a *h1Authz) HeaderValues(name string) []string {
	var out []string
	for i := range a.dc.req.fields {
		if f := &a.dc.req.fields[i]; !f.drop && equalFold(f.name, name) {
			out = append(out, string(f.value))
		}
	}
	return out
}

func (a *h1Authz) QueryParam(name string) (string, bool) {
	var buf [1]string
	v := queryValues(a.dc.req.target, name, buf[:0], true)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (a *h1Authz) QueryParamValues(name string) []string {
	return queryValues(a.dc.req.target, name, nil, false)
}

func (a *h1Authz) Cookie(name string) (string, bool) {
	for i := range a.dc.req.fields {
		if f := &a.dc.req.fields[i]; !f.drop && equalFold(f.name, "Cookie") {
			if v, ok := cookieValue(f.value, name); ok {
				return v, true
			}
		}
	}
	return "", false
}

func (a *h1Authz) Method() string {
	if m := a.dc.req.method; string(m) == "OPTIONS" {
		return "OPTIONS" // the method the filter asks about, without a copy
	}
	return string(a.dc.req.method)
}
