package h2srv

import (
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParsePlainPath: the allocation-free path parser agrees with
// url.ParseRequestURI on every path it accepts.
func FuzzParsePlainPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a?x=1&y=2", "/a?", "/?", "/a??b", "*", "/a%20b", "/a#f", "/a b", "/a/../b;p=1?q=/x", "/\x7f", "/é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		if path == "" || path[0] != '/' && path != "*" {
			return
		}
		var got url.URL
		if !parsePlainPath(&got, path) {
			return
		}
		want, err := url.ParseRequestURI(path)
		if err != nil {
			t.Fatalf("parsePlainPath accepted %q, ParseRequestURI: %v", path, err)
		}
		if diff := cmp.Diff(*want, got); diff != "" {
			t.Fatalf("%q (-ParseRequestURI +parsePlainPath):\n%s", path, diff)
		}
	})
}
