// Package pathnorm normalizes the path of an HTTP request target the way
// Envoy's HTTP connection manager does with its three path options, so
// that route matching, authorization and the app all see one path:
//
//	target ──► drop "#fragment" ──► split "?query" (kept as received)
//	                                     │
//	  path ──► validate: no CTL, space, raw NUL, "%00", malformed "%" escape (error: 400)
//	       ──► path_with_escaped_slashes_action: %2F / %5C kept, rejected (error),
//	           or decoded to "/" and "\" (forward, or redirect to the result)
//	       ──► normalize_path (RFC 3986 6.2.2 and 5.2.4, as Envoy's Chromium
//	           canonicalizer): decode escapes of unreserved characters,
//	           uppercase the others, percent-encode bytes a path may not hold,
//	           "\" → "/", remove "." and ".." segments ("/.." stays at "/")
//	       ──► merge_slashes: "//+" → "/"
//
// A path already in normal form is returned as is, without allocating;
// otherwise the result is written into the caller's scratch buffer.
package pathnorm

import (
	"bytes"
	"errors"
)

// EscapedSlashes is Envoy's path_with_escaped_slashes_action.
type EscapedSlashes int

const (
	// KeepUnchanged leaves %2F and %5C escaped (Envoy's default).
	KeepUnchanged EscapedSlashes = iota
	// RejectRequest refuses a path holding %2F or %5C.
	RejectRequest
	// UnescapeAndRedirect decodes them and asks the client to come back
	// with the resulting path (a 307 to Result's target).
	UnescapeAndRedirect
	// UnescapeAndForward decodes them and goes on with the result.
	UnescapeAndForward
)

// Options are the HTTP connection manager's path options.
type Options struct {
	NormalizePath  bool // normalize_path
	MergeSlashes   bool // merge_slashes
	EscapedSlashes EscapedSlashes
}

// Action is what the caller does with a normalized path.
type Action int

const (
	// Forward: route, check and forward the normalized path.
	Forward Action = iota
	// Redirect: answer 307 with the normalized target as Location
	// (UnescapeAndRedirect found an escaped slash).
	Redirect
)

// Errors of Normalize. Both mean 400 Bad Request.
var (
	ErrInvalid      = errors.New("invalid request path")
	ErrEscapedSlash = errors.New("request path holds an escaped slash (%2F or %5C)")
)

// byte classes, one table lookup per byte on the fast scan.
const (
	clsPlain   = iota // a pchar that never needs work
	clsBad            // CTL, space, DEL: always an error
	clsPercent        // '%': an escape to check
	clsSlash          // '/': "//" and "/." need work
	clsBackslash
	clsEncode // not allowed in a path: percent-encoded by normalize_path
)

var class = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c <= ' ' || c == 0x7f:
			t[c] = clsBad
		case c >= 0x80:
			t[c] = clsEncode
		}
	}
	t['%'] = clsPercent
	t['/'] = clsSlash
	t['\\'] = clsBackslash
	for _, c := range []byte("\"<>^`{|}") {
		t[c] = clsEncode
	}
	return t
}()

// SplitTarget splits an origin-form request target into its path and its
// query (without "?"; nil when there is none). A fragment is not part of
// either: everything from the first "#" is dropped, as Envoy strips it.
func SplitTarget(target []byte) (path, query []byte) {
	for i, c := range target {
		switch c {
		case '#':
			return target[:i], nil
		case '?':
			query = target[i+1:]
			if j := bytes.IndexByte(query, '#'); j >= 0 {
				query = query[:j]
			}
			return target[:i], query
		}
	}
	return target, nil
}

// NormalizeTarget normalizes the path of an origin-form request target and
// keeps its query as received. out is the target to route and forward;
// out[:pathLen] is its path. When nothing changes out is target itself (a
// fragment dropped: a prefix of it); otherwise it is built in dst.
func NormalizeTarget(dst, target []byte, opts Options) (out []byte, pathLen int, action Action, err error) {
	path, query := SplitTarget(target)
	np, action, err := Normalize(dst, path, opts)
	if err != nil {
		return nil, 0, Forward, err
	}
	if len(np) == len(path) && (len(np) == 0 || &np[0] == &path[0]) {
		// The path is unchanged (and is the start of target).
		end := len(path)
		if query != nil {
			end += 1 + len(query)
		}
		return target[:end], len(path), action, nil
	}
	if query == nil {
		return np, len(np), action, nil
	}
	n := len(np)
	np = append(np, '?')
	return append(np, query...), n, action, nil
}

// Normalize normalizes a request path (the part of the target before "?";
// a "#fragment" is dropped) with opts. It returns path itself (or a prefix
// of it) when nothing changes, else the result written in dst[:0]. Errors:
// ErrInvalid for a control character, space, "%00" or a malformed escape,
// whatever opts; ErrEscapedSlash with RejectRequest.
func Normalize(dst, path []byte, opts Options) ([]byte, Action, error) {
	if i := bytes.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	work, err := scan(path, opts)
	if err != nil || !work {
		return path, Forward, err
	}
	out, slashes := decode(dst[:0], path, opts)
	if opts.NormalizePath {
		out = removeDotSegments(out)
	}
	if opts.MergeSlashes {
		out = mergeSlashes(out)
	}
	action := Forward
	if slashes && opts.EscapedSlashes == UnescapeAndRedirect {
		action = Redirect
	}
	if bytes.Equal(out, path) {
		return path, action, nil
	}
	return out, action, nil
}

// scan validates path and reports whether it needs the rewriting passes.
// It does not allocate.
func scan(p []byte, o Options) (work bool, err error) {
	if o.NormalizePath && (len(p) == 0 || p[0] != '/') {
		work = true
	}
	for i := 0; i < len(p); i++ {
		switch class[p[i]] {
		case clsPlain:
		case clsBad:
			return false, ErrInvalid
		case clsPercent:
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return false, ErrInvalid
			}
			hi, lo := p[i+1], p[i+2]
			if hi == '0' && lo == '0' {
				return false, ErrInvalid
			}
			switch {
			case isSlashEscape(hi, lo):
				if o.EscapedSlashes == RejectRequest {
					return false, ErrEscapedSlash
				}
				work = work || o.EscapedSlashes != KeepUnchanged || o.NormalizePath && isLowerHex(lo)
			case o.NormalizePath:
				work = work || isLowerHex(hi) || isLowerHex(lo) || unreserved(unhex(hi)<<4|unhex(lo))
			}
			i += 2
		case clsSlash:
			if i+1 < len(p) && (p[i+1] == '/' && o.MergeSlashes || o.NormalizePath && dotSegment(p[i+1:])) {
				work = true
			}
		case clsBackslash, clsEncode:
			work = work || o.NormalizePath
		}
	}
	return work, nil
}

// dotSegment reports whether p starts with a "." or ".." segment.
func dotSegment(p []byte) bool {
	n := 0
	for n < len(p) && n < 3 && p[n] == '.' {
		n++
	}
	return (n == 1 || n == 2) && (n == len(p) || p[n] == '/' || p[n] == '\\')
}

// decode appends the path to out with escapes rewritten: escaped slashes
// decoded per o.EscapedSlashes and, with NormalizePath, unreserved
// characters decoded, other escapes uppercased, "\" turned into "/" and
// bytes a path may not hold percent-encoded. p was validated by scan.
func decode(out, p []byte, o Options) ([]byte, bool) {
	slashes := false
	if o.NormalizePath && (len(p) == 0 || p[0] != '/') {
		out = append(out, '/')
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch class[c] {
		case clsPercent:
			hi, lo := p[i+1], p[i+2]
			i += 2
			v := unhex(hi)<<4 | unhex(lo)
			switch {
			case isSlashEscape(hi, lo) && o.EscapedSlashes != KeepUnchanged:
				slashes = true
				if v == '\\' && o.NormalizePath {
					v = '/'
				}
				out = append(out, v)
			case o.NormalizePath && unreserved(v):
				out = append(out, v)
			case o.NormalizePath:
				out = append(out, '%', upperHex[v>>4], upperHex[v&15])
			default:
				out = append(out, '%', hi, lo)
			}
		case clsBackslash:
			if o.NormalizePath {
				c = '/'
			}
			out = append(out, c)
		case clsEncode:
			if o.NormalizePath {
				out = append(out, '%', upperHex[c>>4], upperHex[c&15])
			} else {
				out = append(out, c)
			}
		default:
			out = append(out, c)
		}
	}
	return out, slashes
}

// removeDotSegments applies RFC 3986 5.2.4 to an absolute path, in place:
// "." segments go, ".." removes the segment before it (never above the
// root), and a path ending in either keeps a trailing "/".
func removeDotSegments(p []byte) []byte {
	// w: end of the output, which always ends with '/' before a segment is
	// copied; r: start of the next input segment (after its '/').
	w, r := 1, 1
	for r <= len(p) {
		end := r + bytes.IndexByte(p[r:], '/')
		last := end < r
		if last {
			end = len(p)
		}
		seg := p[r:end]
		switch {
		case len(seg) == 1 && seg[0] == '.':
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			if w > 1 {
				w = bytes.LastIndexByte(p[:w-1], '/') + 1
			}
		default:
			w += copy(p[w:], seg)
			if !last {
				p[w] = '/'
				w++
			}
		}
		r = end + 1
	}
	return p[:w]
}

// mergeSlashes collapses every run of '/' into one, in place.
func mergeSlashes(p []byte) []byte {
	w := 0
	prev := byte(0)
	for _, c := range p {
		if c == '/' && prev == '/' {
			continue
		}
		prev = c
		p[w] = c
		w++
	}
	return p[:w]
}

const upperHex = "0123456789ABCDEF"

func isSlashEscape(hi, lo byte) bool {
	return hi == '2' && (lo == 'F' || lo == 'f') || hi == '5' && (lo == 'C' || lo == 'c')
}

// unreserved reports RFC 3986 unreserved characters: ALPHA DIGIT - . _ ~
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isLowerHex(c byte) bool { return 'a' <= c && c <= 'f' }

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
