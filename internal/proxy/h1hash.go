package proxy

import (
	"bytes"
	"net"
	"slices"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
)

// hashKey evaluates the route's hash policies for a hashing load balancer,
// as Envoy does: each policy that finds its value adds its xxHash64, a
// terminal policy with a hash ends the list. A cookie policy with a ttl and
// no cookie in the request generates the connection's value and sets the
// cookie on the response.
func (dc *downConn) hashKey(rt *route, c *cluster) lb.Key {
	if len(rt.hash) == 0 || !c.policy.lb.Hashing() {
		return lb.Key{}
	}
	req := &dc.req
	var h lb.Hasher
	for i := range rt.hash {
		p := &rt.hash[i]
		switch p.Kind {
		case lb.HashHeader:
			if v, ok := dc.headerHash(p.Name); ok {
				h.Add(v)
			}
		case lb.HashCookie:
			if v, ok := dc.cookie(p.Name); ok && len(v) > 0 {
				h.Add(lb.Sum64(v))
			} else if p.HasTTL {
				v := dc.generatedCookie()
				h.Add(lb.Sum64(v))
				b := append(dc.rs.setCookie[:0], "Set-Cookie: "...)
				b = p.AppendSetCookie(b, v)
				dc.rs.setCookie = append(b, "\r\n"...)
			}
		case lb.HashSourceIP:
			if v, ok := dc.sourceIPHash(); ok {
				h.Add(v)
			}
		case lb.HashQuery:
			if q := bytes.IndexByte(req.target, '?'); q >= 0 {
				if v, ok := lb.QueryValue(req.target[q+1:], p.Name); ok {
					h.Add(lb.SumQueryValue(v, &dc.rs.scratch))
				}
			}
		}
		if p.Terminal && h.Has() {
			break
		}
	}
	return h.Key()
}

// headerHash hashes a header's values: Envoy sorts the values of a
// repeated header and hashes them concatenated.
func (dc *downConn) headerHash(name string) (uint64, bool) {
	req := &dc.req
	switch name {
	case ":authority":
		name = "Host"
	case ":path":
		return lb.Sum64(req.target), true
	case ":method":
		return lb.Sum64(req.method), true
	}
	vals := dc.rs.vals[:0]
	for i := range req.fields {
		if f := &req.fields[i]; equalFold(f.name, name) {
			vals = append(vals, f.value)
		}
	}
	dc.rs.vals = vals
	switch len(vals) {
	case 0:
		return 0, false
	case 1:
		return lb.Sum64(vals[0]), true
	}
	slices.SortFunc(vals, bytes.Compare)
	b := dc.rs.scratch[:0]
	for _, v := range vals {
		b = append(b, v...)
	}
	dc.rs.scratch = b
	clear(vals)
	return lb.Sum64(b), true
}

// cookie returns the value of a request cookie.
func (dc *downConn) cookie(name string) ([]byte, bool) {
	for i := range dc.req.fields {
		if f := &dc.req.fields[i]; equalFold(f.name, "Cookie") {
			if v, ok := lb.CookieValue(f.value, name); ok {
				return v, true
			}
		}
	}
	return nil, false
}

func (dc *downConn) generatedCookie() string {
	if dc.rs.genCookie == "" {
		dc.rs.genCookie = lb.GeneratedCookieValue(addrString(dc.nc.RemoteAddr()), addrString(dc.nc.LocalAddr()))
	}
	return dc.rs.genCookie
}

func (dc *downConn) sourceIPHash() (uint64, bool) {
	if !dc.rs.srcHashOK {
		ta, ok := dc.nc.RemoteAddr().(*net.TCPAddr)
		if !ok {
			return 0, false
		}
		dc.rs.srcHash, dc.rs.srcHashOK = lb.Sum64(ta.IP.String()), true
	}
	return dc.rs.srcHash, true
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
