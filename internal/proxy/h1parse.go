package proxy

import (
	"bytes"
	"errors"
	"net/http"
)

// h1Error is a request the fast path refuses: it answers code and closes.
type h1Error struct {
	code int
	msg  string
}

func (e *h1Error) Error() string { return e.msg }

func badRequest(msg string) error { return &h1Error{code: http.StatusBadRequest, msg: msg} }

// Sentinels of the head parser. They are never mutated.
var (
	errNeedMore          = errors.New("incomplete message head")
	errBareLF            = badRequest("bare LF line ending")
	errBareCR            = badRequest("bare CR in message head")
	errRequestLine       = badRequest("malformed request line")
	errHeaderLine        = badRequest("malformed header line")
	errObsFold           = badRequest("obsolete line folding")
	errHeaderValue       = badRequest("invalid byte in header value")
	errContentLength     = badRequest("invalid Content-Length")
	errTransferEncoding  = badRequest("unsupported or repeated Transfer-Encoding")
	errCLAndTE           = badRequest("both Content-Length and Transfer-Encoding")
	errHost              = badRequest("missing or repeated Host")
	errVersion           = &h1Error{code: http.StatusHTTPVersionNotSupported, msg: "unsupported HTTP version"}
	errURITooLong        = &h1Error{code: http.StatusRequestURITooLong, msg: "request line too long"}
	errHeadersTooLarge   = &h1Error{code: http.StatusRequestHeaderFieldsTooLarge, msg: "header fields too large"}
	errTooManyHeaders    = &h1Error{code: http.StatusRequestHeaderFieldsTooLarge, msg: "too many header fields"}
	errStatusLine        = errors.New("malformed status line")
	errUpstreamFraming   = errors.New("invalid upstream message framing")
	errUpstreamHeadLarge = errors.New("upstream response head too large")
)

// maxRequestFields bounds the header fields of a request, as Envoy's
// max_headers_count (default 100, answered with 431). Without it a head of
// tiny fields would grow a connection's field table to thousands of entries.
const maxRequestFields = 100

// hdrField is one header line of a parsed head, kept as raw bytes.
type hdrField struct {
	name, value []byte
	line        []byte // the whole line including CRLF, forwarded as is
	drop        bool   // hop-by-hop or sanitized: not forwarded
}

// msgHead is what the proxy interprets of a request or response head. Every
// slice points into the connection's read buffer and is valid until the
// next read into it.
type msgHead struct {
	// request line, or status line
	method, target, path []byte
	status               int
	statusRest           []byte // "200 OK" of a status line
	http11               bool

	fields        []hdrField
	contentLength int64 // -1: none
	chunked       bool
	close         bool // Connection: close, or HTTP/1.0 without keep-alive
	upgrade       bool // Connection: upgrade with an Upgrade header
	expect100     bool
	hosts         int
	host          []byte // value of the (single) Host field

	joined []byte // scratch for headerValue, kept across reset
}

func (h *msgHead) reset() {
	fields, joined := h.fields[:0], h.joined[:0]
	*h = msgHead{fields: fields, joined: joined, contentLength: -1}
}

// headEnd scans buf (a message head being received) for the empty line that
// ends it, starting at *scanned, the offset of the first line not yet
// checked; the caller keeps *scanned across reads so a slowly sent head is
// scanned once. It returns the head length, or errNeedMore. Bare LF line
// endings are an error; lineLimit bounds the first line and limit the head.
func headEnd(buf []byte, scanned *int, lineLimit, limit int) (int, error) {
	for {
		i := bytes.IndexByte(buf[*scanned:], '\n')
		if i < 0 {
			if *scanned == 0 && len(buf) > lineLimit {
				return 0, errURITooLong
			}
			if len(buf) > limit {
				return 0, errHeadersTooLarge
			}
			return 0, errNeedMore
		}
		end := *scanned + i
		if end == 0 || buf[end-1] != '\r' {
			return 0, errBareLF
		}
		if *scanned == 0 && end+1 > lineLimit {
			return 0, errURITooLong
		}
		if end+1 > limit {
			return 0, errHeadersTooLarge
		}
		empty := end-1 == *scanned
		*scanned = end + 1
		if empty {
			return end + 1, nil
		}
	}
}

// parseRequestHead parses a complete request head (as delimited by headEnd)
// strictly: anything a proxy could read differently from the app is an
// error (RFC 9112 and request smuggling guidance).
func parseRequestHead(head []byte, h *msgHead) error {
	h.reset()
	line, rest, err := nextLine(head)
	if err != nil {
		return err
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errRequestLine
	}
	h.method = line[:sp1]
	for _, c := range h.method {
		if !isTokenChar(c) {
			return errRequestLine
		}
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return errRequestLine
	}
	h.target = line[sp1+1 : sp1+1+sp2]
	for _, c := range h.target {
		if c <= ' ' || c == 0x7f {
			return errRequestLine
		}
	}
	switch v := line[sp1+sp2+2:]; {
	case string(v) == "HTTP/1.1":
		h.http11 = true
	case string(v) == "HTTP/1.0":
	case len(v) == 8 && string(v[:5]) == "HTTP/" && v[6] == '.' && isDigit(v[5]) && isDigit(v[7]):
		return errVersion
	default:
		return errRequestLine
	}
	h.path = h.target
	if i := bytes.IndexByte(h.target, '?'); i >= 0 {
		h.path = h.target[:i]
	}
	if err := parseFields(rest, h, maxRequestFields); err != nil {
		return err
	}
	if h.hosts != 1 && (h.http11 || h.hosts > 1) {
		return errHost
	}
	if h.chunked && !h.http11 {
		return errTransferEncoding
	}
	return nil
}

// parseResponseHead parses an upstream response head.
func parseResponseHead(head []byte, h *msgHead) error {
	h.reset()
	line, rest, err := nextLine(head)
	if err != nil {
		return err
	}
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' ||
		!isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) || (len(line) > 12 && line[12] != ' ') {
		return errStatusLine
	}
	switch line[7] {
	case '1':
		h.http11 = true
	case '0':
	default:
		return errStatusLine
	}
	h.status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	h.statusRest = line[9:]
	if err := parseFields(rest, h, 0); err != nil {
		return errUpstreamFraming
	}
	return nil
}

// nextLine splits the first CRLF-terminated line off head.
func nextLine(head []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(head, '\n')
	if i < 1 || head[i-1] != '\r' {
		return nil, nil, errBareLF
	}
	line = head[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, errBareCR
	}
	return line, head[i+1:], nil
}

// parseFields parses the header lines of a head (up to and including the
// final empty line) and interprets the framing and hop-by-hop headers.
// maxFields > 0 bounds the number of fields.
func parseFields(rest []byte, h *msgHead, maxFields int) error {
	var connection [][]byte // values of Connection headers, at most a few
	var connBuf [4][]byte
	connection = connBuf[:0]
	keepAlive := false
	teSeen := false
	for {
		line, next, err := nextLine(rest)
		if err != nil {
			return err
		}
		raw := rest[:len(line)+2]
		rest = next
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		if maxFields > 0 && len(h.fields) == maxFields {
			return errTooManyHeaders
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errHeaderLine
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenChar(c) {
				return errHeaderLine
			}
		}
		value := trimOWS(line[colon+1:])
		if !validFieldValue(value) {
			return errHeaderValue
		}
		f := hdrField{name: name, value: value, line: raw}
		switch {
		case equalFold(name, "Host"):
			h.hosts++
			h.host = value
		case equalFold(name, "Content-Length"):
			n, ok := parseContentLength(value)
			if !ok || (h.contentLength >= 0 && h.contentLength != n) {
				return errContentLength
			}
			h.contentLength = n
		case equalFold(name, "Transfer-Encoding"):
			if teSeen || !equalFold(value, "chunked") {
				return errTransferEncoding
			}
			teSeen, h.chunked, f.drop = true, true, true
		case equalFold(name, "Connection"):
			connection = append(connection, value)
			f.drop = true
		case equalFold(name, "Expect"):
			if equalFold(value, "100-continue") {
				h.expect100 = true
				f.drop = true
			}
		case isHopByHop(name):
			f.drop = true
		}
		h.fields = append(h.fields, f)
	}
	if h.chunked && h.contentLength >= 0 {
		return errCLAndTE
	}
	hasUpgrade := false
	for _, v := range connection {
		for len(v) > 0 {
			var tok []byte
			tok, v = nextToken(v)
			switch {
			case len(tok) == 0:
			case equalFold(tok, "close"):
				h.close = true
			case equalFold(tok, "keep-alive"):
				keepAlive = true
			case equalFold(tok, "upgrade"):
				hasUpgrade = true
			default:
				for i := range h.fields {
					if equalFold(h.fields[i].name, tok) {
						h.fields[i].drop = true
					}
				}
			}
		}
	}
	if hasUpgrade {
		for i := range h.fields {
			if equalFold(h.fields[i].name, "Upgrade") {
				h.upgrade = true
			}
		}
	}
	if !h.http11 && !keepAlive {
		h.close = true
	}
	return nil
}

// validFieldValue reports a field value without control characters other
// than HTAB (RFC 9110 5.5: a NUL, CR or LF in a value is refused, never
// passed on).
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// isHopByHop reports the headers that describe one connection, not the
// message (RFC 9110 7.6.1, plus the legacy ones httputil strips). Trailer
// announces fields of the (passed through) chunked body, so it is kept.
func isHopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "TE")
	case 7:
		return equalFold(name, "Upgrade")
	case 10:
		return equalFold(name, "Keep-Alive")
	case 16:
		return equalFold(name, "Proxy-Connection")
	case 18:
		return equalFold(name, "Proxy-Authenticate")
	case 19:
		return equalFold(name, "Proxy-Authorization")
	}
	return false
}

func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// headerValue implements headerSource over the raw fields: the value of the
// only field with the name, or the values of all joined with "," in a buffer
// kept with the head.
func (h *msgHead) headerValue(name string) ([]byte, bool) {
	var first []byte
	n := 0
	for i := range h.fields {
		f := &h.fields[i]
		if !equalFold(f.name, name) {
			continue
		}
		n++
		switch n {
		case 1:
			first = f.value
		case 2:
			h.joined = append(append(append(h.joined[:0], first...), ','), f.value...)
		default:
			h.joined = append(append(h.joined, ','), f.value...)
		}
	}
	switch n {
	case 0:
		return nil, false
	case 1:
		return first, true
	}
	return h.joined, true
}
