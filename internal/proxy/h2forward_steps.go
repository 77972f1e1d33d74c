package proxy

import (
	"mime"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// The steps of httputil.ReverseProxy that forwardH2 (h2forward.go) takes
// as ReverseProxy takes them; ReverseProxy does not export them.

// removeHopByHop removes the fields the Connection field names and the
// hop-by-hop ones (ReverseProxy's removeHopByHopHeaders: RFC 7230 6.1,
// RFC 2616 13.5.1).
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	// One pass over h rather than a delete per name: deleting hashes the
	// name, looking through a small map does not.
	for k := range h {
		if isHopHeader(k) {
			delete(h, k)
		}
	}
}

func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// upgradeType is the protocol a message's Upgrade field asks for, when its
// Connection field says upgrade.
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// shareHeader adds src's fields to dst, as ReverseProxy's copyHeader does
// with Add, but a field dst does not have yet takes src's values slice
// (capped, so that appending to either copies) rather than a copy.
func shareHeader(dst, src http.Header) {
	for k, vv := range src {
		shareField(dst, k, vv)
	}
}

// shareField adds the values vv of field k to dst (shareHeader).
func shareField(dst http.Header, k string, vv []string) {
	if len(vv) == 0 {
		return
	}
	k = http.CanonicalHeaderKey(k)
	if prev, ok := dst[k]; ok {
		dst[k] = append(prev, vv...)
		return
	}
	dst[k] = vv[:len(vv):len(vv)]
}

// isEventStream reports whether a response is Server-Sent Events, as
// ReverseProxy decides it (mime.ParseMediaType, only for a likely value).
func isEventStream(contentType string) bool {
	base, _, _ := strings.Cut(contentType, ";")
	if !strings.EqualFold(strings.TrimSpace(base), "text/event-stream") {
		return false
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "text/event-stream"
}

// cleanQueryParams is ReverseProxy's: a query with parameters net/url
// cannot parse (a ';', a bad escape, too many) is re-encoded without them.
// A GODEBUG urlmaxqueryparams setting makes ReverseProxy re-encode every
// query; so does this.
func cleanQueryParams(s string) string {
	reencode := func(s string) string {
		v, _ := url.ParseQuery(s)
		return v.Encode()
	}
	if s == "" {
		return s
	}
	if reencodeQueries || strings.Count(s, "&")+1 > maxQueryParams {
		return reencode(s)
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

// maxQueryParams is net/url's and ReverseProxy's default limit.
const maxQueryParams = 10000

// reencodeQueries: GODEBUG sets urlmaxqueryparams (read once, as the
// runtime reads GODEBUG at start).
var reencodeQueries = strings.Contains(os.Getenv("GODEBUG"), "urlmaxqueryparams=")
