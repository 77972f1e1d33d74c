package h2cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// BufferedBody is implemented by request bodies that know, without
// blocking, how much of them has arrived. A body that reports itself
// complete and small is sent with the request's HEADERS on the caller's
// goroutine (one write), rather than copied by a goroutine of its own.
type BufferedBody interface {
	// Buffered returns the number of bytes Read returns without blocking,
	// and whether they are the rest of the body (Read then returns
	// io.EOF, and the request's trailers are final).
	Buffered() (n int, complete bool)
}

// request is what a stream sends, prepared before a connection is chosen.
type request struct {
	req           *http.Request
	ctx           context.Context
	trace         *httptrace.ClientTrace
	authority     string
	method        string
	path          string
	scheme        string // "" : from the connection (https over TLS, else http)
	isConnect     bool
	isHead        bool
	connTokens    []string // the Connection header's values: names not to forward
	trailerKeys   string   // the "trailer" field: request trailers, sorted
	headerSize    uint64   // header list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it
	contentLength int64    // -1: unknown
	hasBody       bool
	inline        []byte // the whole body, read before sending (nil: none or streamed)
	inlineBuf     *[]byte
	inlineSent    int
	body          io.ReadCloser // a streamed body, copied by writeBody
	bodyClosed    bool          // readInline read and closed the caller's body
	writerStarted bool          // writeBody owns body and inlineBuf
}

// prepare checks req and computes its pseudo-headers, header size, body
// length and, for a small body already in memory, reads the body.
func (rq *request) prepare(req *http.Request) error {
	rq.req = req
	rq.ctx = req.Context()
	rq.trace = httptrace.ContextClientTrace(rq.ctx)
	if req.URL == nil {
		return errors.New("h2cli: request has no URL")
	}
	host := cmp.Or(req.Host, req.URL.Host)
	host, err := httpguts.PunycodeHostPort(host)
	if err != nil {
		return fmt.Errorf("h2cli: authority %q: %w", host, err)
	}
	if host == "" || !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("h2cli: invalid authority %q", host)
	}
	rq.authority = host
	rq.method = cmp.Or(req.Method, http.MethodGet)
	if !httpguts.ValidHeaderFieldName(rq.method) {
		return fmt.Errorf("h2cli: invalid method %q", rq.method)
	}
	rq.isConnect = rq.method == http.MethodConnect
	rq.isHead = rq.method == http.MethodHead
	if !rq.isConnect {
		path := req.URL.RequestURI()
		if !validPseudoPath(path) {
			orig := path
			path = strings.TrimPrefix(path, req.URL.Scheme+"://"+host)
			if !validPseudoPath(path) {
				return fmt.Errorf("h2cli: invalid request path %q", orig)
			}
		}
		rq.path = path
	}
	rq.scheme = req.URL.Scheme
	if err := rq.prepareHeaders(req); err != nil {
		return err
	}
	rq.contentLength = actualContentLength(req)
	rq.hasBody = rq.contentLength != 0
	if !rq.hasBody {
		return nil
	}
	inlined, err := rq.readInline(req)
	if err != nil || inlined {
		return err
	}
	rq.body = req.Body
	return nil
}

func validPseudoPath(v string) bool { return (len(v) > 0 && v[0] == '/') || v == "*" }

// actualContentLength is the body's length: 0 without a body, -1 unknown
// (a non-nil body with ContentLength 0 counts as unknown, as in net/http).
func actualContentLength(req *http.Request) int64 {
	if req.Body == nil || req.Body == http.NoBody {
		return 0
	}
	if req.ContentLength != 0 {
		return req.ContentLength
	}
	return -1
}

func (rq *request) sendContentLength() bool {
	if rq.contentLength > 0 {
		return true
	}
	if rq.contentLength < 0 {
		return false
	}
	switch rq.method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return true
	}
	return false
}

// readInline reads a small body that is already in memory: one with
// GetBody (a bytes or strings reader, or a recorded body) and a known
// length, or a BufferedBody that is complete. The body is closed.
func (rq *request) readInline(req *http.Request) (bool, error) {
	size := -1
	if n := rq.contentLength; n > 0 && n <= maxInlineBody && req.GetBody != nil {
		size = int(n)
	} else if bb, ok := req.Body.(BufferedBody); ok {
		if avail, complete := bb.Buffered(); complete && avail <= maxInlineBody && (n < 0 || int64(avail) == n) {
			size = avail
		}
	}
	if size < 0 {
		return false, nil
	}
	defer req.Body.Close()
	rq.bodyClosed = true
	rq.inlineBuf = getBuf(size)
	buf := (*rq.inlineBuf)[:size]
	if _, err := io.ReadFull(req.Body, buf); err != nil {
		rq.release()
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return false, errReqBodyTooShort
		}
		return false, fmt.Errorf("h2cli: reading the request body: %w", err)
	}
	var one [1]byte
	switch n, err := io.ReadFull(req.Body, one[:]); {
	case n > 0:
		rq.release()
		return false, errReqBodyTooLong
	case err != io.EOF:
		rq.release()
		return false, fmt.Errorf("h2cli: reading the request body: %w", err)
	}
	rq.inline = buf
	if size == 0 && rq.contentLength < 0 {
		rq.hasBody = false // an empty body, now known to be
	}
	return true, nil
}

// closeBody closes a body the request still owns (no writer took it).
func (rq *request) closeBody() {
	if rq.body != nil && !rq.writerStarted {
		_ = rq.body.Close()
	}
}

// release returns the inline body's buffer.
func (rq *request) release() {
	if rq.inlineBuf != nil {
		putBuf(rq.inlineBuf)
		rq.inlineBuf, rq.inline = nil, nil
	}
}

// closeRequestBody closes the caller's body after a failed prepare.
func (rq *request) closeRequestBody(req *http.Request) {
	if req.Body != nil && req.Body != http.NoBody && !rq.bodyClosed {
		_ = req.Body.Close()
	}
}

func (rq *request) wroteHeaders() {
	if rq.trace != nil && rq.trace.WroteHeaders != nil {
		rq.trace.WroteHeaders()
	}
}

func (rq *request) wroteRequest(err error) {
	if rq.trace != nil && rq.trace.WroteRequest != nil {
		rq.trace.WroteRequest(httptrace.WroteRequestInfo{Err: err})
	}
}

// Buffers for request bodies: inline bodies and the copy buffer of
// streamed ones, by size class.
var bufPools = [...]struct {
	size int
	pool sync.Pool
}{{size: 1 << 10}, {size: 4 << 10}, {size: 16 << 10}, {size: maxInlineBody}}

func getBuf(n int) *[]byte {
	for i := range bufPools {
		if n <= bufPools[i].size {
			if b, ok := bufPools[i].pool.Get().(*[]byte); ok {
				return b
			}
			b := make([]byte, bufPools[i].size)
			return &b
		}
	}
	b := make([]byte, n)
	return &b
}

func putBuf(b *[]byte) {
	for i := range bufPools {
		if cap(*b) == bufPools[i].size {
			*b = (*b)[:cap(*b)]
			bufPools[i].pool.Put(b)
			return
		}
	}
}
