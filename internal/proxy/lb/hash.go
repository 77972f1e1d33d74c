package lb

import (
	"math/bits"
	"strconv"
	"time"
)

// HashKind is the request property a hash policy reads.
type HashKind uint8

// The supported hash_policy kinds.
const (
	HashHeader   HashKind = iota + 1 // header (":authority", ":path", ":method" too)
	HashCookie                       // cookie, generated when absent and ttl is set
	HashSourceIP                     // connection_properties.source_ip
	HashQuery                        // query_parameter (first value, percent-decoded)
)

// HashPolicy is one entry of a route's hash_policy list.
type HashPolicy struct {
	Kind HashKind
	// Name is the header (lower case, or a pseudo-header), cookie or query
	// parameter name.
	Name string
	// Cookie: TTL is set when HasTTL; a request without the cookie then
	// gets a generated value, and the response sets it (Max-Age = TTL
	// seconds, omitted when zero: a session cookie).
	TTL    time.Duration
	HasTTL bool
	Path   string
	// Terminal stops evaluating later policies once a hash is computed.
	Terminal bool
}

// Hasher accumulates a request's hash key over the policies of its route,
// combining hashes as Envoy does (the previous value rotated left by one,
// xor the new one), so duplicate policies do not cancel out.
type Hasher struct{ key Key }

// Add combines the hash of one policy's value.
func (h *Hasher) Add(v uint64) {
	if h.key.ok {
		h.key.hash = bits.RotateLeft64(h.key.hash, 1) ^ v
		return
	}
	h.key = KeyOf(v)
}

// Has reports whether a hash was computed (for terminal policies).
func (h *Hasher) Has() bool { return h.key.ok }

// Key returns the combined key (the zero Key when no policy produced one).
func (h *Hasher) Key() Key { return h.key }

// GeneratedCookieValue is the value Envoy gives a missing hash cookie: the
// xxHash64 of the connection's remote and local addresses ("ip:port" each,
// concatenated), as 16 lower-case hex digits. The same connection always
// gets the same value.
func GeneratedCookieValue(remote, local string) string {
	var b [16]byte
	v := Sum64(remote + local)
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b[i] = hex[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// AppendSetCookie appends the Set-Cookie value Envoy sends for a generated
// hash cookie: name="value"[; Max-Age=s][; Path=p]; HttpOnly.
func (p *HashPolicy) AppendSetCookie(dst []byte, value string) []byte {
	dst = append(dst, p.Name...)
	dst = append(dst, `="`...)
	dst = append(dst, value...)
	dst = append(dst, '"')
	if s := int64(p.TTL / time.Second); s != 0 {
		dst = append(dst, "; Max-Age="...)
		dst = strconv.AppendInt(dst, s, 10)
	}
	if p.Path != "" {
		dst = append(dst, "; Path="...)
		dst = append(dst, p.Path...)
	}
	return append(dst, "; HttpOnly"...)
}

// CookieValue returns the value of cookie name in a Cookie header value
// ("a=1; b=2"), without surrounding double quotes, as Envoy parses it.
func CookieValue[T Text](header T, name string) (T, bool) {
	for len(header) > 0 {
		var pair T
		if i := indexByte(header, ';'); i >= 0 {
			pair, header = header[:i], header[i+1:]
		} else {
			pair, header = header, header[:0]
		}
		for len(pair) > 0 && (pair[0] == ' ' || pair[0] == '\t') {
			pair = pair[1:]
		}
		eq := indexByte(pair, '=')
		if eq < 0 || string(pair[:eq]) != name {
			continue
		}
		v := pair[eq+1:]
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return header[:0], false
}

// QueryValue returns the raw (still percent-encoded) value of the first
// query parameter called name in a request target's query string (the part
// after '?'); a parameter without '=' has the empty value.
func QueryValue[T Text](query T, name string) (T, bool) {
	for len(query) > 0 {
		var pair T
		if i := indexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, query[:0]
		}
		k, v := pair, pair[:0]
		if eq := indexByte(pair, '='); eq >= 0 {
			k, v = pair[:eq], pair[eq+1:]
		}
		if string(k) == name {
			return v, true
		}
	}
	return query[:0], false
}

func indexByte[T Text](s T, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// SumQueryValue hashes a query parameter value after decoding it as
// x-www-form-urlencoded ("%XX" escapes, '+' as space), as Envoy's
// query_parameter hash policy does. scratch is reused for the decoded bytes;
// values without escapes are hashed in place.
func SumQueryValue[T Text](v T, scratch *[]byte) uint64 {
	if indexByte(v, '%') < 0 && indexByte(v, '+') < 0 {
		return Sum64(v)
	}
	b := (*scratch)[:0]
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]):
			c = unhex(v[i+1])<<4 | unhex(v[i+2])
			i += 2
		}
		b = append(b, c)
	}
	*scratch = b
	return Sum64(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
