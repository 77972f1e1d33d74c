package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/trellis-mesh/trellis/internal/proxy/h2cli"
)

// forwardH2 forwards a request the sidecar's own HTTP/2 server (h2srv)
// serves. It takes the steps of httputil.ReverseProxy.ServeHTTP with the
// hooks of reverseProxyForwarder, in the same order and with the same
// results, without ReverseProxy's per-request copies:
//
//	request   the caller's header map is edited in place (ReverseProxy
//	          clones it): h2srv built it for this request, and nothing
//	          reads what is removed (hop-by-hop and X-Forwarded-* fields)
//	          once the request is forwarded; one shallow copy of the
//	          request (the context carries the 1xx trace), whose body does
//	          not close the caller's and is still an h2cli.BufferedBody,
//	          so a request h2srv received whole leaves with its HEADERS
//	          in one write
//	response  the upstream's header values are shared, not copied; the
//	          body is flushed before a read that would block (not after
//	          every write), and not before the trailers: h2srv sends a
//	          response with trailers without a content-length of its own,
//	          so a unary gRPC response leaves in one write
//
// false: the request is one ReverseProxy must take (an upgrade, which
// HTTP/2 requests cannot be, or a request without a header map).
func (f *reverseProxyForwarder) forwardH2(w http.ResponseWriter, hw h2srvWriter, r *http.Request, t *forwardTarget) bool {
	h := r.Header
	if h == nil || len(h["Connection"]) > 0 {
		return false
	}
	x := &h2Exchange{rw: w}
	x.trace.Got1xxResponse = x.got1xx
	out := r.WithContext(httptrace.WithClientTrace(r.Context(), &x.trace))
	x.url = *r.URL
	out.URL = &x.url
	// Declared request trailers: a copy, as ReverseProxy's (the caller's
	// map is filled when its body ends, maybe while a retry copies this).
	out.Trailer = r.Trailer.Clone()
	switch {
	case r.ContentLength == 0:
		out.Body = nil // as ReverseProxy: nil for net/http's transport retries
	case out.Body != nil:
		x.body.ReadCloser = out.Body
		out.Body = &x.body
	}
	out.Close = false

	// ReverseProxy: removeHopByHopHeaders (no Connection field: HTTP/2),
	// te: trailers kept, client-sent forwarding fields dropped, the query
	// cleaned, then the Rewrite hook.
	te := h["Te"]
	keepTE := httpguts.HeaderValuesContainsToken(te, "trailers")
	for k := range h {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Trailer", "Transfer-Encoding", "Upgrade", // hopHeaders
			"Forwarded", headerXFF, "X-Forwarded-Host", "X-Forwarded-Proto":
			delete(h, k)
		}
	}
	if keepTE {
		if len(te) != 1 || te[0] != "trailers" {
			x.te[0] = "trailers"
			te = x.te[:1:1]
		}
		h["Te"] = te
	}
	x.url.RawQuery = cleanQueryParams(x.url.RawQuery)
	x.url.Scheme = t.cluster.up.scheme
	x.url.Host = t.endpoint
	if len(t.xff) > 0 {
		h[headerXFF] = t.xff
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = x.ua[:1:1] // "": the transport adds none
	}

	res, err := t.roundTrip(out)
	x.mu.Lock()
	x.done = true
	x.mu.Unlock()
	if err != nil {
		f.onError(w, out, t, err)
		return true
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy hands a 101 to its upgrade code, which refuses one
		// the request did not ask for: an HTTP/2 request cannot.
		f.onResponse(t, res)
		_ = res.Body.Close()
		f.onError(w, out, t, fmt.Errorf("backend tried to switch protocol %q when %q was requested",
			upgradeType(res.Header), ""))
		return true
	}
	removeHopByHop(res.Header)
	f.onResponse(t, res)
	// The upstream's header becomes the response's when the response has
	// none yet: what copying it with Add would make.
	if !plainHeader(res.Header) || !hw.AdoptHeader(res.Header) {
		shareHeader(w.Header(), res.Header)
	}
	dst := w.Header()
	announced := len(res.Trailer)
	if announced > 0 {
		x.announceTrailers(dst, res.Trailer)
	}
	// Before WriteHeader: the route's response headers apply to the map
	// that may be res.Header now, and ReverseProxy looks at the upstream's.
	flush := res.ContentLength == -1 || isEventStream(res.Header.Get("Content-Type"))
	w.WriteHeader(res.StatusCode)
	if err := f.copyH2(w, hw, res.Body, flush); err != nil {
		defer res.Body.Close()
		if r.Context().Value(http.ServerContextKey) == nil {
			f.p.log.Warn("http server", "detail", "httputil: suppressing panic for copyResponse error in test; copy error: "+err.Error())
			return true
		}
		panic(http.ErrAbortHandler)
	}
	_ = res.Body.Close() // now, to fill res.Trailer
	// ReverseProxy flushes here when there are trailers, so that net/http
	// does not compute a content-length; h2srv computes none for a
	// response with trailers, and the headers, the rest of the body and
	// the trailers leave together when the handler returns. A streamed
	// response without trailers whose body was all at hand was not
	// flushed (ReverseProxy's timer sends its headers at once): it is
	// now, so that it gets no content-length either.
	if flush && len(res.Trailer) == 0 {
		_ = hw.FlushError()
	}
	if len(res.Trailer) == announced {
		shareHeader(dst, res.Trailer)
		return true
	}
	for k, vv := range res.Trailer {
		shareField(dst, prefixedTrailer(k), vv) // dst.Add(http.TrailerPrefix+k, v) for each v
	}
	return true
}

// prefixedTrailer is http.TrailerPrefix+k, without allocating for gRPC's
// trailers (a gRPC server does not announce them).
func prefixedTrailer(k string) string {
	switch k {
	case "Grpc-Status":
		return http.TrailerPrefix + "Grpc-Status"
	case "Grpc-Message":
		return http.TrailerPrefix + "Grpc-Message"
	case "Grpc-Status-Details-Bin":
		return http.TrailerPrefix + "Grpc-Status-Details-Bin"
	}
	return http.TrailerPrefix + k
}

// h2srvWriter is the ResponseWriter of a request h2srv serves.
type h2srvWriter interface {
	http.ResponseWriter
	FlushError() error
	WatchIdle(time.Duration)
	AdoptHeader(http.Header) bool
}

// plainHeader: every key of h is canonical and has a value, so that h is
// what adding its fields to an empty header makes.
func plainHeader(h http.Header) bool {
	for k, vv := range h {
		if len(vv) == 0 || http.CanonicalHeaderKey(k) != k {
			return false
		}
	}
	return true
}

// ownH2Writer returns h2srv's writer beneath the route's wrapper, if w is
// one.
func ownH2Writer(w http.ResponseWriter) (h2srvWriter, bool) {
	if rw, ok := w.(*routeWriter); ok {
		w = rw.ResponseWriter
	}
	hw, ok := w.(h2srvWriter)
	return hw, ok
}

// h2Exchange is what forwarding one request needs beyond the outgoing
// request, in one allocation.
type h2Exchange struct {
	url   url.URL
	body  noCloseBody
	trace httptrace.ClientTrace
	te    [1]string
	ua    [1]string
	tr    [1]string // the Trailer announcement

	rw   http.ResponseWriter
	mu   sync.Mutex // 1xx responses against the end of the round trip
	done bool
}

// got1xx passes an informational response on, until the final one came
// (ReverseProxy's Got1xxResponse).
func (x *h2Exchange) got1xx(code int, header textproto.MIMEHeader) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done {
		return nil
	}
	h := x.rw.Header()
	for k, vv := range header {
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	x.rw.WriteHeader(code)
	clear(h) // WriteHeader does not, for 1xx
	return nil
}

// announceTrailers adds the Trailer field naming the response's trailers
// (the transport took it out of the header), as ReverseProxy does.
func (x *h2Exchange) announceTrailers(h http.Header, trailer http.Header) {
	var v string
	if len(trailer) == 1 {
		for k := range trailer {
			v = k
		}
	} else {
		var buf [8]string
		keys := buf[:0]
		for k := range trailer {
			keys = append(keys, k)
		}
		v = strings.Join(keys, ", ")
	}
	if prev := h["Trailer"]; len(prev) > 0 {
		h["Trailer"] = append(prev, v)
		return
	}
	x.tr[0] = v
	h["Trailer"] = x.tr[:1:1]
}

// copyH2 copies the response body (ReverseProxy's copyResponse). A body of
// unknown length, or an event stream, is flushed whenever the copy is
// about to wait for the upstream: before the first read when nothing has
// arrived (the headers go at once, as ReverseProxy's flush timer sends
// them), and after a write when nothing more is at hand. An upstream body
// that cannot tell what it holds is flushed after every write.
func (f *reverseProxyForwarder) copyH2(w http.ResponseWriter, hw h2srvWriter, body io.Reader, flush bool) error {
	bb, _ := body.(h2cli.BufferedBody)
	if flush && !bodyReady(bb) {
		_ = hw.FlushError()
	}
	bufp := f.bufs.get()
	defer f.bufs.put(bufp)
	buf := *bufp
	for {
		n, rerr := body.Read(buf)
		if rerr != nil && rerr != io.EOF && rerr != context.Canceled {
			f.p.log.Warn("http server", "detail", "httputil: ReverseProxy read error during body copy: "+rerr.Error())
		}
		if n > 0 {
			nw, werr := w.Write(buf[:n])
			if werr != nil {
				return werr
			}
			if nw != n {
				return io.ErrShortWrite
			}
			if flush && rerr == nil && !bodyReady(bb) {
				_ = hw.FlushError() // ReverseProxy ignores flush errors too
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}

// bodyReady: a read of b returns at once (data at hand, or the end).
func bodyReady(b h2cli.BufferedBody) bool {
	if b == nil {
		return false
	}
	n, complete := b.Buffered()
	return n > 0 || complete
}

// noCloseBody is the outgoing request's body: the transport closing it
// does not close the caller's (ReverseProxy's noopCloseReader), and it
// says what is buffered when the caller's body can.
type noCloseBody struct{ io.ReadCloser }

func (b *noCloseBody) Close() error { return nil }

func (b *noCloseBody) Buffered() (int, bool) {
	if bb, ok := b.ReadCloser.(h2cli.BufferedBody); ok {
		return bb.Buffered()
	}
	return 0, false
}
