package proxy

import (
	"net"
	"net/netip"
	"net/textproto"
	"net/url"
	"unsafe"

	"github.com/trellis-mesh/trellis/internal/proxy/jwtauthn"
)

// Helpers shared by the authz filters' request views (authz_h1.go,
// authz_http.go, authz_tcp.go).

// bytesView returns b as a string without copying. The fast path hands the
// rbac engine views of the request head in the connection's read buffer:
// the engine only compares them and keeps none (rbac.Request), and the
// buffer is not written while it evaluates.
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// addrPort returns the IP (IPv4-mapped addresses unmapped) and port of a
// connection's address.
func addrPort(a net.Addr) (netip.Addr, uint32) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return ap.Addr().Unmap(), uint32(ap.Port())
	}
	if a == nil {
		return netip.Addr{}, 0
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, 0
	}
	return ap.Addr().Unmap(), uint32(ap.Port())
}

// leftmostXFF parses the first address of an x-forwarded-for value (its
// leftmost entry: the original client, as the first sidecar wrote it).
func leftmostXFF[T text](v T) (netip.Addr, bool) {
	end := len(v)
	for i := 0; i < len(v); i++ {
		if v[i] == ',' {
			end = i
			break
		}
	}
	first := v[:end]
	for len(first) > 0 && (first[0] == ' ' || first[0] == '\t') {
		first = first[1:]
	}
	for len(first) > 0 && (first[len(first)-1] == ' ' || first[len(first)-1] == '\t') {
		first = first[:len(first)-1]
	}
	var s string
	switch f := any(first).(type) {
	case string:
		s = f
	case []byte:
		s = bytesView(f)
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// queryValues appends to dst the values of parameter name in a request
// target's query, percent-decoded (a value that does not decode is kept as
// sent); first stops at the first one. It allocates only for values found.
func queryValues[T text](target T, name string, dst []string, first bool) []string {
	q := splitQuery(target)
	for len(q) > 0 {
		var key, value T
		key, value, q = cutQueryParam(q) // route.go
		if string(key) != name {
			continue
		}
		v := string(value)
		if d, err := url.QueryUnescape(v); err == nil {
			v = d
		}
		dst = append(dst, v)
		if first {
			return dst
		}
	}
	return dst
}

// withoutQueryParam appends to dst the target without every occurrence of
// parameter name; ok is false (dst unchanged) when there is none. A query
// left empty loses its "?".
func withoutQueryParam[T text](target T, name string, dst []byte) ([]byte, bool) {
	qs := -1
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			qs = i
			break
		}
	}
	if qs < 0 {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, target[:qs]...)
	kept, removed := 0, false
	for q := target[qs+1:]; ; {
		end := len(q)
		for i := 0; i < len(q); i++ {
			if q[i] == '&' {
				end = i
				break
			}
		}
		param := q[:end]
		eq := len(param)
		for i := 0; i < len(param); i++ {
			if param[i] == '=' {
				eq = i
				break
			}
		}
		if string(param[:eq]) == name {
			removed = true
		} else if len(param) > 0 {
			if kept == 0 {
				dst = append(dst, '?')
			} else {
				dst = append(dst, '&')
			}
			dst = append(dst, param...)
			kept++
		}
		if end == len(q) {
			break
		}
		q = q[end+1:]
	}
	if !removed {
		return dst[:start], false
	}
	return dst, true
}

// cookieValue returns the value of cookie name in a Cookie header value
// ("a=1; b=2"), without surrounding quotes.
func cookieValue[T text](header T, name string) (string, bool) {
	for len(header) > 0 {
		end := len(header)
		for i := 0; i < len(header); i++ {
			if header[i] == ';' {
				end = i
				break
			}
		}
		pair := header[:end]
		if end < len(header) {
			header = header[end+1:]
		} else {
			header = header[:0]
		}
		for len(pair) > 0 && pair[0] == ' ' {
			pair = pair[1:]
		}
		eq := -1
		for i := 0; i < len(pair); i++ {
			if pair[i] == '=' {
				eq = i
				break
			}
		}
		if eq < 0 || string(pair[:eq]) != name {
			continue
		}
		v := pair[eq+1:]
		for len(v) > 0 && v[len(v)-1] == ' ' {
			v = v[:len(v)-1]
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return string(v), true
	}
	return "", false
}

// jwtHeaderLine returns the header line a jwt_authn outcome sets, or nil
// when the value cannot be sent as a header value (jwtauthn never
// produces one; checked again because the line is written as is).
func jwtHeaderLine(name, value string) *headerAdd {
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return nil
		}
	}
	canon := textproto.CanonicalMIMEHeaderKey(name)
	return &headerAdd{name: canon, value: value, line: []byte(canon + ": " + value + "\r\n"), action: overwriteIfExistsOrAdd}
}

// Both request views serve the jwt filter the optional interfaces too.
var (
	_ jwtauthn.MultiQueryRequest = (*h1Authz)(nil)
	_ jwtauthn.MethodRequest     = (*h1Authz)(nil)
	_ jwtauthn.MultiQueryRequest = (*httpAuthz)(nil)
	_ jwtauthn.MethodRequest     = (*httpAuthz)(nil)
)
