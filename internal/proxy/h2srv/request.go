package h2srv

import (
	"context"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

const canonCacheN = 64 // per-connection cache of canonical header keys

// newStream builds a stream and its request from a HEADERS frame, as
// net/http's server does (x/net/http2 and internal/httpcommon); a malformed
// request is a stream error (RFC 9113 8.1.1), answered RST_STREAM.
func (c *conn) newStream(f *http2.MetaHeadersFrame) (*stream, error) {
	id := f.StreamID
	bad := http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol} // boxed only when returned
	var method, scheme, authority, path string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":path":
			path = hf.Value
		default: // :protocol: extended CONNECT is not offered
			return nil, bad
		}
	}
	isConnect := method == http.MethodConnect
	if isConnect {
		if path != "" || scheme != "" || authority == "" {
			return nil, bad
		}
	} else if path == "" || scheme != "http" && scheme != "https" {
		return nil, bad
	}
	if !validMethod(method) {
		return nil, bad
	}

	fields := f.RegularFields()
	h := make(http.Header, len(fields))
	vals := make([]string, len(fields)) // one backing array for single values
	for i, hf := range fields {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return nil, bad // RFC 9113 8.2.2
		case "te":
			if hf.Value != "trailers" {
				return nil, bad
			}
		}
		key := c.canonical(hf.Name)
		if prev, ok := h[key]; ok {
			h[key] = append(prev, hf.Value)
			continue
		}
		vals[i] = hf.Value
		h[key] = vals[i : i+1 : i+1]
	}
	needsContinue := false
	if ex, ok := h["Expect"]; ok && httpguts.HeaderValuesContainsToken(ex, "100-continue") {
		needsContinue = true
		delete(h, "Expect")
	}
	if cookies := h["Cookie"]; len(cookies) > 1 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	trailer := declaredTrailers(h["Trailer"])
	delete(h, "Trailer")
	if hosts := h["Host"]; len(hosts) == 1 {
		if authority == "" {
			authority = hosts[0]
		} else if hosts[0] != authority {
			return nil, bad
		}
		delete(h, "Host")
	} else if len(hosts) > 1 {
		return nil, bad
	}
	if !isConnect && strings.IndexByte(authority, '@') >= 0 ||
		authority != "" && !httpguts.ValidHostHeader(authority) {
		return nil, bad
	}
	st := &stream{c: c, id: id, opened: time.Now(), sendWin: c.w.initWindow}
	u := &st.url
	requestURI := path
	switch {
	case isConnect:
		u.Host, requestURI = authority, authority
	case path[0] != '/' && path != "*":
		return nil, bad
	case !parsePlainPath(u, path):
		pu, err := url.ParseRequestURI(path)
		if err != nil {
			return nil, bad
		}
		*u = *pu
	}
	cl, ok := contentLength(h["Content-Length"])
	if !ok {
		return nil, bad
	}
	ended := f.StreamEnded()
	if ended {
		if cl > 0 {
			return nil, bad
		}
		cl = 0
	}

	st.declLen = cl
	st.ctx, st.cancel = context.WithCancelCause(c.base)
	r := &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		ContentLength: cl,
		Host:          authority,
		Trailer:       trailer,
		RemoteAddr:    c.remote,
		RequestURI:    requestURI,
		TLS:           c.tls,
	}
	if ended {
		r.Body = http.NoBody
		st.remoteDone = true
	} else {
		r.Body = &st.body
		st.body.init(st, needsContinue, int64(c.s.cfg.InitialWindowSize))
	}
	st.req = r.WithContext(st.ctx)
	st.rw.init(st, method == http.MethodHead)
	return st, nil
}

// parsePlainPath fills u as url.ParseRequestURI would for a path that
// needs no unescaping and that url would not escape (so RawPath stays
// empty), with a query free of '%' and '#', without allocating. false:
// not such a path (the caller falls back to url.ParseRequestURI).
func parsePlainPath(u *url.URL, path string) bool {
	p, q, hasQ := strings.Cut(path, "?")
	for i := 0; i < len(p); i++ {
		if !plainPathByte(p[i]) {
			return false
		}
	}
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c >= 0x7f || c == '%' || c == '#' {
			return false
		}
	}
	u.Path, u.RawQuery, u.ForceQuery = p, q, hasQ && q == ""
	return true
}

// plainPathByte: a byte url.URL.EscapedPath leaves as is.
func plainPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '~', '$', '&', '+', ',', '/', ':', ';', '=', '@':
		return true
	}
	return false
}

// contentLength parses a request's content-length field: -1 when absent;
// several values must agree. ok is false for an invalid one.
func contentLength(vv []string) (int64, bool) {
	if len(vv) == 0 {
		return -1, true
	}
	n, err := strconv.ParseUint(vv[0], 10, 63)
	if err != nil {
		return 0, false
	}
	for _, v := range vv[1:] {
		if v != vv[0] {
			return 0, false
		}
	}
	return int64(n), true
}

// declaredTrailers returns r.Trailer's keys from the Trailer field, nil
// when none (as net/http).
func declaredTrailers(vv []string) http.Header {
	var t http.Header
	for _, v := range vv {
		for key := range strings.SplitSeq(v, ",") {
			key = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(key))
			switch key {
			case "", "Transfer-Encoding", "Trailer", "Content-Length":
				continue
			}
			if t == nil {
				t = make(http.Header)
			}
			t[key] = nil
		}
	}
	return t
}

// validMethod: a token (RFC 9110 9.1); anything else could split the
// request line of an HTTP/1.1 hop.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if m[i] >= 0x80 || !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// canonical returns the http.Header key of an HTTP/2 field name (read
// loop only).
func (c *conn) canonical(name string) string {
	if v, ok := commonCanonical[name]; ok {
		return v
	}
	if v, ok := c.canon[name]; ok {
		return v
	}
	v := textproto.CanonicalMIMEHeaderKey(name)
	if len(c.canon) < canonCacheN && len(name) <= 64 {
		c.canon[name] = v
	}
	return v
}

// commonCanonical is commonLower reversed. Built once, never written after.
var commonCanonical = func() map[string]string {
	m := make(map[string]string, len(commonLower))
	for k, v := range commonLower {
		m[v] = k
	}
	return m
}()
