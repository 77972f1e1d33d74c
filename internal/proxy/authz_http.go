package proxy

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellis-mesh/trellis/internal/proxy/rbac"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

// httpAuthz is the net/http path's view of a request for the jwt_authn and
// rbac filters (rbac.Request, jwtauthn.Request). One is made per request
// that meets an authz filter.
type httpAuthz struct {
	r    *http.Request
	view *request[string]
	lc   *listenerConfig
	tls  *tls.ConnectionState

	peer     string
	peerDone bool
	jwt      jwtauthn.Outcome
}

func newHTTPAuthz(r *http.Request, view *request[string], lc *listenerConfig) *httpAuthz {
	return &httpAuthz{r: r, view: view, lc: lc, tls: requestTLS(r)}
}

// runAuthz runs the jwt_authn or rbac filter f: false when it answered
// (401 or 403, with the route's response headers as any local reply).
func (h *httpHandler) runAuthz(w http.ResponseWriter, az *httpAuthz, f *httpFilter, mut *headerMutation, rl *rlHeaders) bool {
	r, lc := az.r, az.lc
	grpc := isGRPC(r.Header.Get("Content-Type"))
	switch {
	case f.jwt != nil:
		var out jwtauthn.Outcome
		err := errNoJWTFilter
		if f.jwt.filter != nil {
			out, err = f.jwt.filter.Verify(time.Now(), az)
		}
		if err != nil {
			lc.stats.jwtAuthnFailed.Add(1)
			h.p.log.Debug("jwt_authn refused a request", "listener", lc.name, "filter", f.name, "error", err)
			path := az.view.target
			if i := indexByte(path, '?'); i >= 0 {
				path = path[:i]
			}
			lr := jwtInvalidReply(f.jwt.filter, grpc, appendAuthenticate(nil, az.view.scheme, r.Host, path))
			lc.stats.response(lr.status())
			writeLocalHTTP(w, &lr, r.Method == http.MethodHead, mut, rl)
			return false
		}
		az.jwt = out
		az.applyJWT()
	case f.rbac != nil:
		if !f.rbac.authorize(lc, h.p.log, az) {
			lr := rbacDeniedReply(grpc)
			lc.stats.response(lr.status())
			writeLocalHTTP(w, &lr, r.Method == http.MethodHead, mut, rl)
			return false
		}
	}
	return true
}

// applyJWT applies a verified request's header removals and additions and
// the token query parameter's removal to the request forwarded.
func (az *httpAuthz) applyJWT() {
	o, r := &az.jwt, az.r
	for _, name := range o.RemoveHeaders {
		r.Header.Del(name)
	}
	if o.RemoveQueryParam != "" {
		if t, ok := withoutQueryParam(az.view.target, o.RemoveQueryParam, nil); ok {
			target := string(t)
			az.view.target, az.view.query = target, splitQuery(target)
			r.URL.RawQuery = splitQuery(target)
			r.RequestURI = target
		}
	}
	for _, kv := range o.SetHeaders {
		if a := jwtHeaderLine(kv[0], kv[1]); a != nil {
			r.Header[a.name] = []string{a.value}
		}
	}
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// rbac.Request

func (az *httpAuthz) PeerPrincipal() (string, bool) {
	if az.tls == nil {
		return "", false
	}
	if !az.peerDone {
		az.peerDone = true
		if id, err := tlsutil.PeerID(az.tls); err == nil {
			az.peer = id.String()
		}
	}
	return az.peer, az.peer != ""
}

func (az *httpAuthz) DirectRemoteIP() netip.Addr {
	ap, err := netip.ParseAddrPort(az.r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// RemoteIP is the leftmost x-forwarded-for entry a verified peer sidecar
// sent, else the connection's address.
func (az *httpAuthz) RemoteIP() netip.Addr {
	if az.tls != nil {
		if v := az.r.Header[headerXFF]; len(v) > 0 {
			if ip, ok := leftmostXFF(v[0]); ok {
				return ip
			}
		}
	}
	return az.DirectRemoteIP()
}

func (az *httpAuthz) local() (netip.Addr, uint32) {
	a, _ := az.r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return addrPort(a)
}

func (az *httpAuthz) DestinationIP() netip.Addr {
	ip, _ := az.local()
	return ip
}

func (az *httpAuthz) DestinationPort() uint32 {
	_, port := az.local()
	return port
}

func (az *httpAuthz) RequestedServerName() string {
	if az.tls == nil {
		return ""
	}
	return az.tls.ServerName
}

func (az *httpAuthz) HTTP() bool { return true }

func (az *httpAuthz) HeaderValue(name string, pos int) (string, int, bool) {
	var v string
	switch name {
	case ":method":
		v = az.r.Method
	case ":authority":
		v = az.r.Host
	case ":path":
		v = az.view.target
	case ":scheme":
		v = az.view.scheme
	default:
		vals := az.r.Header[textproto.CanonicalMIMEHeaderKey(name)]
		if pos >= len(vals) {
			return "", 0, false
		}
		return vals[pos], pos + 1, true
	}
	if pos > 0 {
		return "", 0, false
	}
	return v, 1, true
}

func (az *httpAuthz) URLPath() string { return az.view.path }

func (az *httpAuthz) AuthMetadata(filter string, path []string) (any, bool) {
	if filter != rbac.AuthnFilter {
		return nil, false
	}
	return az.jwt.Lookup(path)
}

// jwtauthn.Request

func (az *httpAuthz) HeaderValues(name string) []string {
	return az.r.Header[textproto.CanonicalMIMEHeaderKey(name)]
}

func (az *httpAuthz) QueryParam(name string) (string, bool) {
	v := queryValues(az.view.target, name, nil, true)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (az *httpAuthz) QueryParamValues(name string) []string {
	return queryValues(az.view.target, name, nil, false)
}

func (az *httpAuthz) Cookie(name string) (string, bool) {
	for _, c := range az.r.Header["Cookie"] {
		if v, ok := cookieValue(c, name); ok {
			return v, true
		}
	}
	return "", false
}

func (az *httpAuthz) Method() string { return az.r.Method }
