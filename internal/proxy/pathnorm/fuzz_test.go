package pathnorm

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzNormalize checks, for every option set, that Normalize never panics,
// fails only with its errors, and is idempotent; and with all options on
// that the result is a canonical absolute path.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"/", "//admin", "/./admin", "/x/../admin", "/%2e%2e/admin", "/admin%2F", "/ADMIN",
		"/x%5C..%5Cadmin", `/x\..\admin`, "/admin#frag", "/admin?x=1", "/admin%00", "/a%zz",
		"/b/c/../../../g", "/a/./b/../../c/", "/%41%7E%2f%5c%3f", "/caf\xc3\xa9", "/.%2e/.%2E%2f..",
		"", "?", "#", "%", "/a//../b", "\\\\a", "/a%2F%2F..%5Cb?q=%2F#x",
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, bits uint8) {
		opts := Options{NormalizePath: bits&1 != 0, MergeSlashes: bits&2 != 0, EscapedSlashes: EscapedSlashes(bits>>2) % 4}
		orig := bytes.Clone(in)
		out, _, err := Normalize(nil, in, opts)
		if !bytes.Equal(in, orig) {
			t.Fatalf("Normalize modified its input %q to %q", orig, in)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrEscapedSlash) {
				t.Fatalf("Normalize(%q): unexpected error %v", in, err)
			}
			return
		}
		again, action, err := Normalize(nil, out, opts)
		if err != nil || !bytes.Equal(again, out) || action != Forward {
			t.Fatalf("not idempotent with %+v: %q → %q → %q, %v, %v", opts, in, out, again, action, err)
		}
		if opts != all {
			return
		}
		if len(out) == 0 || out[0] != '/' {
			t.Fatalf("Normalize(%q) = %q: not absolute", in, out)
		}
		for _, bad := range []string{"//", "/./", "/../", "\\", "%2F", "%2f", "%5C", "%5c", "#"} {
			if bytes.Contains(out, []byte(bad)) {
				t.Fatalf("Normalize(%q) = %q: holds %q", in, out, bad)
			}
		}
		if bytes.HasSuffix(out, []byte("/.")) || bytes.HasSuffix(out, []byte("/..")) {
			t.Fatalf("Normalize(%q) = %q: ends with a dot segment", in, out)
		}
		for _, c := range out {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("Normalize(%q) = %q: raw byte %#x", in, out, c)
			}
		}
	})
}
