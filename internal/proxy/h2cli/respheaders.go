package h2cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Response header blocks, decoded by the read loop as their HEADERS and
// CONTINUATION frames arrive (the HPACK decoder emits into onHeaderField),
// checked as RFC 9113 8.2-8.3 require and bounded by MaxHeaderListSize and
// MaxHeaderFields.

// headerBlock is the header block being read.
type headerBlock struct {
	s          *stream // nil: decoded only to keep HPACK in step
	endStream  bool
	encoded    int    // bytes of HEADERS and CONTINUATION payload
	size       uint32 // decoded size as HTTP/2 counts it
	count      int
	status     string
	pseudo     bool // any pseudo-header
	sawRegular bool
	invalid    error
	tooLarge   bool
	fields     []hpack.HeaderField // regular fields, reused across blocks
}

func (b *headerBlock) reset() {
	clear(b.fields)
	*b = headerBlock{fields: b.fields[:0]}
}

// onHeaderField is the HPACK decoder's emit function.
func (c *conn) onHeaderField(hf hpack.HeaderField) {
	b := &c.hb
	if b.invalid != nil || b.tooLarge {
		return
	}
	b.size += hf.Size()
	b.count++
	if b.size > c.o.MaxHeaderListSize || b.count > c.o.MaxHeaderFields {
		b.tooLarge = true
		c.hdec.SetEmitEnabled(false)
		return
	}
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		b.invalid = fmt.Errorf("invalid value of header field %q", hf.Name)
		c.hdec.SetEmitEnabled(false)
		return
	}
	if strings.HasPrefix(hf.Name, ":") {
		switch {
		case b.sawRegular:
			b.invalid = errors.New("pseudo-header field after a regular one")
		case hf.Name != ":status" || b.status != "":
			b.invalid = fmt.Errorf("unexpected or repeated pseudo-header field %q", hf.Name)
		}
		b.pseudo = true
		b.status = hf.Value
		return
	}
	b.sawRegular = true
	if !validWireName(hf.Name) {
		b.invalid = fmt.Errorf("invalid header field name %q", hf.Name)
		c.hdec.SetEmitEnabled(false)
		return
	}
	if b.s != nil {
		b.fields = append(b.fields, hf)
	}
}

// validWireName: a token in lower case (RFC 9113 8.2.1).
func validWireName(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		if ch >= 0x80 || !httpguts.IsTokenRune(rune(ch)) || ('A' <= ch && ch <= 'Z') {
			return false
		}
	}
	return true
}

// endHeaderBlock acts on a complete header block: a response (1xx or
// final), or trailers.
func (c *conn) endHeaderBlock() error {
	b := &c.hb
	defer b.reset()
	if err := c.hdec.Close(); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	c.hdec.SetEmitEnabled(true)
	s := b.s
	if s == nil {
		return nil
	}
	s.mu.Lock()
	ended := s.recvEnded
	s.mu.Unlock()
	switch {
	case ended:
		c.resetStream(s, http2.ErrCodeStreamClosed, errors.New("HEADERS after END_STREAM"))
		return nil
	case b.invalid != nil:
		c.resetStream(s, http2.ErrCodeProtocol, b.invalid)
		return nil
	case b.tooLarge:
		c.resetStream(s, http2.ErrCodeProtocol, errHeaderListSize)
		return nil
	}
	if !s.firstByte {
		s.firstByte = true
		if t := s.rq.trace; t != nil && t.GotFirstResponseByte != nil {
			t.GotFirstResponseByte()
		}
	}
	if s.gotFinal {
		return c.onTrailers(s, b)
	}
	code, ok := parseStatus(b.status)
	if !ok {
		c.resetStream(s, http2.ErrCodeProtocol, fmt.Errorf("invalid :status %q", b.status))
		return nil
	}
	if code < 200 {
		if err := c.on1xx(s, b, code); err != nil {
			c.resetStream(s, http2.ErrCodeProtocol, err)
		}
		return nil
	}
	c.deliverResponse(s, c.buildResponse(s, b, code), b.endStream)
	return nil
}

func parseStatus(v string) (int, bool) {
	if len(v) != 3 || v[0] < '1' || v[0] > '9' || v[1] < '0' || v[1] > '9' || v[2] < '0' || v[2] > '9' {
		return 0, false
	}
	return int(v[0]-'0')*100 + int(v[1]-'0')*10 + int(v[2]-'0'), true
}

// on1xx passes an informational response to the request's trace.
func (c *conn) on1xx(s *stream, b *headerBlock, code int) error {
	switch {
	case b.endStream:
		return errors.New("1xx response with END_STREAM")
	case code == http.StatusSwitchingProtocols:
		return errors.New("101 response over HTTP/2")
	}
	s.num1xx++
	if s.num1xx > max1xxResponses {
		return errors.New("too many 1xx responses")
	}
	t := s.rq.trace
	if t == nil {
		return nil
	}
	if code == http.StatusContinue && t.Got100Continue != nil {
		t.Got100Continue()
	}
	if t.Got1xxResponse == nil {
		return nil
	}
	h := make(textproto.MIMEHeader, len(b.fields))
	for _, hf := range b.fields {
		k := c.canonicalName(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	return t.Got1xxResponse(code, h)
}

// buildResponse makes the *http.Response of a final header block.
func (c *conn) buildResponse(s *stream, b *headerBlock, code int) *http.Response {
	header := make(http.Header, len(b.fields))
	strs := make([]string, len(b.fields)) // one backing array for single values
	res := &http.Response{
		Status: statusLine(code, b.status), StatusCode: code,
		Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: header, ContentLength: -1, Request: s.rq.req, TLS: c.tls,
	}
	for _, hf := range b.fields {
		key := c.canonicalName(hf.Name)
		switch key {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
			continue // connection-specific: malformed in HTTP/2, dropped as net/http does
		case "Trailer":
			if res.Trailer == nil {
				res.Trailer = http.Header{}
			}
			for _, v := range strings.Split(hf.Value, ",") {
				if v = textproto.TrimString(v); v != "" {
					res.Trailer[http.CanonicalHeaderKey(v)] = nil
				}
			}
			continue
		}
		if vv := header[key]; vv != nil {
			header[key] = append(vv, hf.Value)
			continue
		}
		vv := strs[:1:1]
		strs = strs[1:]
		vv[0] = hf.Value
		header[key] = vv
	}
	if cls := header["Content-Length"]; len(cls) > 0 {
		cl, err := strconv.ParseUint(cls[0], 10, 63)
		conflicting := false
		for _, v := range cls[1:] {
			conflicting = conflicting || v != cls[0]
		}
		if err != nil || conflicting {
			delete(header, "Content-Length")
		} else {
			header["Content-Length"] = cls[:1]
			res.ContentLength = int64(cl)
		}
	}
	return res
}

// deliverResponse hands the final response to the waiting RoundTrip.
func (c *conn) deliverResponse(s *stream, res *http.Response, endStream bool) {
	s.gotFinal = true
	noBody := s.rq.isHead || code204or304(res.StatusCode)
	switch {
	case endStream && res.ContentLength > 0 && !noBody:
		res.Body = missingBody{}
	case endStream || s.rq.isHead:
		if res.ContentLength < 0 && !s.rq.isHead {
			res.ContentLength = 0
		}
		res.Body = http.NoBody
	default:
		res.Body = responseBody{s}
		if !noBody {
			s.recvRemain = res.ContentLength
		}
	}
	if res.StatusCode > 299 {
		// An error response: the rest of the request body is not wanted
		// (as net/http decides; a 2xx may be a full-duplex stream).
		c.mu.Lock()
		s.stopSend = true
		c.mu.Unlock()
	}
	if endStream {
		c.endRecv(s) // the slot first: see finishRecv
	}
	s.mu.Lock()
	if s.resErr != nil {
		s.mu.Unlock() // reset while its headers were being read
		return
	}
	s.res = res
	if endStream {
		s.recvEnded = true
		s.readErr = eofOr(s.readErr)
		s.trailerSet = true
	}
	s.mu.Unlock()
	s.wakeRecv()
}

func code204or304(code int) bool {
	return code == http.StatusNoContent || code == http.StatusNotModified
}

// onTrailers ends the stream with its trailers.
func (c *conn) onTrailers(s *stream, b *headerBlock) error {
	if !b.endStream {
		return http2.ConnectionError(http2.ErrCodeProtocol) // trailers must end the stream
	}
	if b.pseudo {
		c.resetStream(s, http2.ErrCodeProtocol, errors.New("pseudo-header field in trailers"))
		return nil
	}
	if s.recvRemain > 0 {
		c.resetStream(s, http2.ErrCodeProtocol, fmt.Errorf("response body %d bytes short of its Content-Length", s.recvRemain))
		return nil
	}
	trailer := make(http.Header, len(b.fields))
	strs := make([]string, len(b.fields)) // one backing array for single values
	for _, hf := range b.fields {
		k := c.canonicalName(hf.Name)
		if vv := trailer[k]; vv != nil {
			trailer[k] = append(vv, hf.Value)
			continue
		}
		vv := strs[:1:1]
		strs = strs[1:]
		vv[0] = hf.Value
		trailer[k] = vv
	}
	c.finishRecv(s, trailer)
	return nil
}

// eofOr keeps an earlier error (a closed body), else io.EOF.
func eofOr(err error) error {
	if err != nil {
		return err
	}
	return io.EOF
}

// statusLine is Response.Status without allocating for common codes.
func statusLine(code int, raw string) string {
	switch code {
	case 200:
		return "200 OK"
	case 201:
		return "201 Created"
	case 204:
		return "204 No Content"
	case 206:
		return "206 Partial Content"
	case 301:
		return "301 Moved Permanently"
	case 302:
		return "302 Found"
	case 304:
		return "304 Not Modified"
	case 400:
		return "400 Bad Request"
	case 401:
		return "401 Unauthorized"
	case 403:
		return "403 Forbidden"
	case 404:
		return "404 Not Found"
	case 429:
		return "429 Too Many Requests"
	case 500:
		return "500 Internal Server Error"
	case 502:
		return "502 Bad Gateway"
	case 503:
		return "503 Service Unavailable"
	case 504:
		return "504 Gateway Timeout"
	}
	return raw + " " + http.StatusText(code)
}
