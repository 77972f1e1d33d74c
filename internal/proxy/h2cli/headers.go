package h2cli

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// Request headers: checked and measured before the write lock (request.
// prepare), then encoded under it (encodeHeadersLocked), so an invalid
// request never reaches the connection's HPACK state.

// commonHeaders are names whose lower-case and canonical forms are looked
// up rather than computed (and allocated) per request.
var commonHeaders = []string{
	"accept", "accept-charset", "accept-encoding", "accept-language", "accept-ranges", "age",
	"access-control-allow-credentials", "access-control-allow-headers", "access-control-allow-methods",
	"access-control-allow-origin", "access-control-expose-headers", "access-control-max-age",
	"access-control-request-headers", "access-control-request-method", "allow", "authorization",
	"cache-control", "connection", "content-disposition", "content-encoding", "content-language",
	"content-length", "content-location", "content-range", "content-type", "cookie", "date", "etag",
	"expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
	"if-unmodified-since", "keep-alive", "last-modified", "link", "location", "max-forwards", "origin",
	"proxy-authenticate", "proxy-authorization", "proxy-connection", "range", "referer", "refresh",
	"retry-after", "server", "set-cookie", "strict-transport-security", "te", "trailer",
	"transfer-encoding", "upgrade", "user-agent", "vary", "via", "www-authenticate",
	"x-forwarded-for", "x-forwarded-proto", "x-forwarded-client-cert", "x-request-id",
	"x-envoy-ratelimited", "x-envoy-attempt-count", "traceparent", "tracestate", "b3",
	"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled",
	"grpc-status", "grpc-message", "grpc-status-details-bin", "grpc-encoding",
	"grpc-accept-encoding", "grpc-timeout",
}

// Read-only after package initialisation.
var (
	commonLower = map[string]string{} // canonical → lower case
	commonCanon = map[string]string{} // lower case → canonical
)

func init() {
	for _, lower := range commonHeaders {
		canon := http.CanonicalHeaderKey(lower)
		commonLower[canon] = lower
		commonCanon[lower] = canon
	}
}

const maxNameCache = 128

// lowerName is k in lower case (under wmu).
func (c *conn) lowerName(k string) string {
	if v, ok := commonLower[k]; ok {
		return v
	}
	if v, ok := c.lowerNames[k]; ok {
		return v
	}
	v := strings.ToLower(k)
	if len(c.lowerNames) < maxNameCache {
		c.lowerNames[k] = v
	}
	return v
}

// canonicalName is the http.Header key of a lower-case wire name (read
// loop).
func (c *conn) canonicalName(lower string) string {
	if v, ok := commonCanon[lower]; ok {
		return v
	}
	if v, ok := c.canonNames[lower]; ok {
		return v
	}
	v := http.CanonicalHeaderKey(lower)
	if len(c.canonNames) < maxNameCache {
		c.canonNames[lower] = v
	}
	return v
}

// prepareHeaders checks the request's header fields and trailers, and
// measures the header list as HTTP/2 counts it.
func (rq *request) prepareHeaders(req *http.Request) error {
	size := uint64(len(rq.authority)+len(rq.method)+len(rq.path)+len(rq.scheme)) + 4*32
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h2cli: invalid header name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h2cli: invalid value for header %q", k)
			}
			size += uint64(len(k)+len(v)) + 32
		}
		switch {
		case strings.EqualFold(k, "upgrade"):
			if len(vv) > 0 && vv[0] != "" {
				return errors.New("h2cli: an Upgrade request cannot be sent over HTTP/2")
			}
		case strings.EqualFold(k, "connection"):
			rq.connTokens = vv
		}
	}
	if len(req.Trailer) > 0 {
		keys := make([]string, 0, len(req.Trailer))
		for k, vv := range req.Trailer {
			ck := http.CanonicalHeaderKey(k)
			switch ck {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return fmt.Errorf("h2cli: invalid trailer %q", k)
			}
			if !httpguts.ValidHeaderFieldName(k) {
				return fmt.Errorf("h2cli: invalid trailer name %q", k)
			}
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldValue(v) {
					return fmt.Errorf("h2cli: invalid value for trailer %q", k)
				}
			}
			keys = append(keys, ck)
		}
		slices.Sort(keys)
		rq.trailerKeys = strings.Join(keys, ",")
		size += uint64(len(rq.trailerKeys)) + 32 + 7
	}
	rq.headerSize = size
	return nil
}

// encodeHeadersLocked HPACK-encodes the request's header block into
// c.hbuf (under wmu).
func (c *conn) encodeHeadersLocked(rq *request, req *http.Request) []byte {
	c.hbuf.Reset()
	c.writeField(":authority", rq.authority)
	c.writeField(":method", rq.method)
	if !rq.isConnect {
		c.writeField(":path", rq.path)
		scheme := rq.scheme
		if scheme == "" {
			scheme = "http"
			if c.tls != nil {
				scheme = "https"
			}
		}
		c.writeField(":scheme", scheme)
	}
	if rq.trailerKeys != "" {
		c.writeField("trailer", rq.trailerKeys)
	}
	for k, vv := range req.Header {
		name := c.lowerName(k)
		switch name {
		case "host", "content-length", "connection", "proxy-connection", "keep-alive",
			"transfer-encoding", "upgrade", "trailer":
			continue // connection-specific, or sent as a pseudo-header or by the client itself
		case "te":
			// Only "te: trailers" may cross HTTP/2 (RFC 9113 8.2.2).
			if httpguts.HeaderValuesContainsToken(vv, "trailers") {
				c.writeField("te", "trailers")
			}
			continue
		case "user-agent":
			if len(vv) > 0 && vv[0] != "" {
				c.writeField(name, vv[0])
			}
			continue
		case "cookie":
			for _, v := range vv {
				c.writeCookie(v)
			}
			continue
		}
		if rq.connTokens != nil && httpguts.HeaderValuesContainsToken(rq.connTokens, name) {
			continue // named by Connection: hop-by-hop
		}
		for _, v := range vv {
			c.writeField(name, v)
		}
	}
	if rq.sendContentLength() {
		c.writeField("content-length", strconv.FormatInt(rq.contentLength, 10))
	}
	return c.hbuf.Bytes()
}

// writeCookie splits a Cookie header into its cookie-pairs, each its own
// field, which compresses better (RFC 9113 8.2.3).
func (c *conn) writeCookie(v string) {
	for {
		i := strings.IndexByte(v, ';')
		if i < 0 {
			break
		}
		c.writeField("cookie", v[:i])
		i++
		for i < len(v) && v[i] == ' ' {
			i++
		}
		v = v[i:]
	}
	if v != "" {
		c.writeField("cookie", v)
	}
}

func (c *conn) writeField(name, value string) {
	_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: value}) // into c.hbuf: cannot fail
}

// encodeTrailersLocked HPACK-encodes the request trailers (under wmu);
// nil when none has a value.
func (c *conn) encodeTrailersLocked(trailer http.Header) []byte {
	c.hbuf.Reset()
	for k, vv := range trailer {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		name := c.lowerName(k)
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue // checked names at prepare; values arrive with the body
			}
			c.writeField(name, v)
		}
	}
	if c.hbuf.Len() == 0 {
		return nil
	}
	return c.hbuf.Bytes()
}
