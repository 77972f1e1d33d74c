package pathnorm

import (
	"errors"
	"testing"
)

// all is the contract's setting: every HCM the compiler emits (ADR 002).
var all = Options{NormalizePath: true, MergeSlashes: true, EscapedSlashes: UnescapeAndForward}

func TestNormalizePathTricks(t *testing.T) {
	// Issue 5's "Path tricks", with the options the compiler emits.
	tests := []struct {
		target, want string
		err          error
	}{
		{target: "/admin", want: "/admin"},
		{target: "//admin", want: "/admin"},
		{target: "/./admin", want: "/admin"},
		{target: "/x/../admin", want: "/admin"},
		{target: "/%2e%2e/admin", want: "/admin"},
		{target: "/%2E%2E/admin", want: "/admin"},
		{target: "/.%2e/admin", want: "/admin"},
		{target: "/admin%2F", want: "/admin/"},
		{target: "/admin%2f", want: "/admin/"},
		{target: "/x%2F..%2Fadmin", want: "/admin"},
		{target: "/ADMIN", want: "/ADMIN"}, // case is the matcher's business
		{target: "/x%5C..%5Cadmin", want: "/admin"},
		{target: "/x%5c..%5cadmin", want: "/admin"},
		{target: `/x\..\admin`, want: "/admin"},
		{target: `\admin`, want: "/admin"},
		{target: "/admin#frag", want: "/admin"},
		{target: "/x#/../admin", want: "/x"},
		{target: "/admin?x=1", want: "/admin?x=1"},
		{target: "/a/../admin?x=/../y#frag", want: "/admin?x=/../y"},
		{target: "/admin?x=1#f?g", want: "/admin?x=1"},
		{target: "/admin#f?x=1", want: "/admin"},
		{target: "/admin%00", err: ErrInvalid},
		{target: "/admin\x00", err: ErrInvalid},
		{target: "/ad\tmin", err: ErrInvalid},
		{target: "/ad min", err: ErrInvalid},
		{target: "/ad\x7fmin", err: ErrInvalid},
		{target: "/admin%", err: ErrInvalid},
		{target: "/admin%2", err: ErrInvalid},
		{target: "/admin%zz", err: ErrInvalid},
		{target: "/admin%g0", err: ErrInvalid},
		{target: "/%41dmin", want: "/Admin"},
		{target: "/%61dmin", want: "/admin"},
		{target: "/a%7e%5F%2d%2E%30", want: "/a~_-.0"},
		{target: "/a%3f%23%25%2b", want: "/a%3F%23%25%2B"}, // reserved: kept escaped, uppercased
		{target: "/%252F", want: "/%252F"},                 // no double decoding
		{target: "/a\"b<c>d^e`f{g|h}i", want: "/a%22b%3Cc%3Ed%5Ee%60f%7Bg%7Ch%7Di"},
		{target: "/caf\xc3\xa9", want: "/caf%C3%A9"},
		{target: "/a;b=c/:@!$&'()*+,=[]", want: "/a;b=c/:@!$&'()*+,=[]"},
		{target: "/..", want: "/"},
		{target: "/../../..", want: "/"},
		{target: "/a/.", want: "/a/"},
		{target: "/a/..", want: "/"},
		{target: "/a/b/..", want: "/a/"},
		{target: "/a//../b", want: "/a/b"}, // dots first, then merge, as Envoy
		{target: "/.well-known/x", want: "/.well-known/x"},
		{target: "/a/..b/c..", want: "/a/..b/c.."},
		{target: "/", want: "/"},
		{target: "", want: "/"},
		{target: "?q", want: "/?q"},
	}
	for _, tt := range tests {
		got, pathLen, action, err := NormalizeTarget(nil, []byte(tt.target), all)
		if !errors.Is(err, tt.err) {
			t.Errorf("NormalizeTarget(%q): error %v, want %v", tt.target, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		if string(got) != tt.want || action != Forward {
			t.Errorf("NormalizeTarget(%q) = %q, %v; want %q, Forward", tt.target, got, action, tt.want)
		}
		if p, _ := SplitTarget([]byte(tt.want)); pathLen != len(p) {
			t.Errorf("NormalizeTarget(%q): path length %d, want %d", tt.target, pathLen, len(p))
		}
	}
}

// TestRFC3986Examples: the paths of RFC 3986 5.4 (base http://a/b/c/d;p?q),
// as the merged path (5.2.3: the base path up to its last "/" + the
// reference) whose dot segments 5.2.4 removes.
func TestRFC3986Examples(t *testing.T) {
	tests := map[string]string{
		// 5.4.1 normal examples
		"g": "/b/c/g", "./g": "/b/c/g", "g/": "/b/c/g/", ";x": "/b/c/;x", "g;x": "/b/c/g;x",
		".": "/b/c/", "./": "/b/c/", "..": "/b/", "../": "/b/", "../g": "/b/g",
		"../..": "/", "../../": "/", "../../g": "/g",
		// 5.4.2 abnormal examples
		"../../../g": "/g", "../../../../g": "/g", "g.": "/b/c/g.", ".g": "/b/c/.g",
		"g..": "/b/c/g..", "..g": "/b/c/..g", "./../g": "/b/g", "./g/.": "/b/c/g/",
		"g/./h": "/b/c/g/h", "g/../h": "/b/c/h", "g;x=1/./y": "/b/c/g;x=1/y", "g;x=1/../y": "/b/c/y",
	}
	for ref, want := range tests {
		got, _, err := Normalize(nil, []byte("/b/c/"+ref), Options{NormalizePath: true})
		if err != nil || string(got) != want {
			t.Errorf("Normalize(/b/c/%s) = %q, %v; want %q", ref, got, err, want)
		}
	}
	// Absolute references replace the base path.
	for ref, want := range map[string]string{"/./g": "/g", "/../g": "/g"} {
		got, _, err := Normalize(nil, []byte(ref), Options{NormalizePath: true})
		if err != nil || string(got) != want {
			t.Errorf("Normalize(%s) = %q, %v; want %q", ref, got, err, want)
		}
	}
}

func TestNormalizeOptions(t *testing.T) {
	none := Options{}
	norm := Options{NormalizePath: true}
	merge := Options{MergeSlashes: true}
	tests := []struct {
		name   string
		opts   Options
		path   string
		want   string
		action Action
		err    error
	}{
		{name: "none keeps", opts: none, path: "//a/./b/../%2e%2f%5c%41\\", want: "//a/./b/../%2e%2f%5c%41\\"},
		{name: "none drops fragment", opts: none, path: "/a#b", want: "/a"},
		{name: "none rejects NUL escape", opts: none, path: "/a%00", err: ErrInvalid},
		{name: "none rejects bad escape", opts: none, path: "/a%x1", err: ErrInvalid},
		{name: "none rejects CTL", opts: none, path: "/a\r", err: ErrInvalid},
		{name: "none keeps non-ASCII", opts: none, path: "/caf\xc3\xa9", want: "/caf\xc3\xa9"},
		{name: "merge only", opts: merge, path: "///a//b/./c//", want: "/a/b/./c/"},
		{name: "merge keeps escapes", opts: merge, path: "//a%2F%2f", want: "/a%2F%2f"},
		{name: "normalize keeps slashes", opts: norm, path: "//a//b/../c", want: "//a//c"},
		{name: "normalize keeps escaped slash", opts: norm, path: "/a%2f..%2fb", want: "/a%2F..%2Fb"},
		{name: "normalize keeps escaped backslash", opts: norm, path: "/a%5c", want: "/a%5C"},
		{name: "reject", opts: Options{EscapedSlashes: RejectRequest}, path: "/a%2fb", err: ErrEscapedSlash},
		{name: "reject backslash", opts: Options{NormalizePath: true, EscapedSlashes: RejectRequest}, path: "/a%5Cb", err: ErrEscapedSlash},
		{name: "reject passes clean", opts: Options{EscapedSlashes: RejectRequest}, path: "/a/b%20", want: "/a/b%20"},
		{name: "forward without normalize", opts: Options{EscapedSlashes: UnescapeAndForward}, path: "/a%2Fb%5Cc%2e", want: "/a/b\\c%2e"},
		{name: "forward then merge", opts: Options{MergeSlashes: true, EscapedSlashes: UnescapeAndForward}, path: "/a%2F%2F/b", want: "/a/b"},
		{name: "redirect", opts: Options{NormalizePath: true, MergeSlashes: true, EscapedSlashes: UnescapeAndRedirect},
			path: "/x/a%2F%2F..%5Cb", want: "/x/a/b", action: Redirect},
		{name: "redirect only with escaped slashes", opts: Options{NormalizePath: true, MergeSlashes: true, EscapedSlashes: UnescapeAndRedirect},
			path: "/a//../b", want: "/a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, action, err := Normalize(nil, []byte(tt.path), tt.opts)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Normalize(%q): error %v, want %v", tt.path, err, tt.err)
			}
			if err == nil && (string(got) != tt.want || action != tt.action) {
				t.Fatalf("Normalize(%q) = %q, %v; want %q, %v", tt.path, got, action, tt.want, tt.action)
			}
		})
	}
}

func TestNormalizeTargetAliasing(t *testing.T) {
	// Unchanged: the result is the input itself (or a prefix: fragment).
	for _, target := range []string{"/a/b?c=d", "/a/b", "/a#f", "/a?b#f", "/.well-known/x?y"} {
		in := []byte(target)
		out, _, _, err := NormalizeTarget(make([]byte, 0, 64), in, all)
		if err != nil || len(out) == 0 || &out[0] != &in[0] {
			t.Errorf("NormalizeTarget(%q) = %q, %v: not the input", target, out, err)
		}
	}
	// Changed: written into dst, the input untouched.
	in := []byte("/a/../b?q=1")
	dst := make([]byte, 0, 64)
	out, n, _, err := NormalizeTarget(dst, in, all)
	if err != nil || string(out) != "/b?q=1" || n != 2 || &out[0] != &dst[:1][0] || string(in) != "/a/../b?q=1" {
		t.Errorf("NormalizeTarget = %q, %d, %v; want /b?q=1 in dst", out, n, err)
	}
}

func TestNormalizeAllocs(t *testing.T) {
	// Paths already normal are returned as they are, even without scratch.
	for _, target := range []string{"/.well-known/acme?x", "/a/..b/.../c.", "/a%20b%2Fc/~x", "/"} {
		in := []byte(target)
		if n := testing.AllocsPerRun(100, func() { _, _, _, _ = NormalizeTarget(nil, in, Options{NormalizePath: true, MergeSlashes: true}) }); n != 0 {
			t.Errorf("NormalizeTarget(%q) without scratch: %v allocs, want 0", target, n)
		}
	}
	dst := make([]byte, 0, 256)
	for _, target := range []string{"/api/v1/users/42?x=1", "/a/../b/%2e/c//d?q", "/%41%2f%5c"} {
		in := []byte(target)
		if n := testing.AllocsPerRun(100, func() { _, _, _, _ = NormalizeTarget(dst, in, all) }); n != 0 {
			t.Errorf("NormalizeTarget(%q): %v allocs, want 0", target, n)
		}
	}
}

func BenchmarkNormalize(b *testing.B) {
	for _, bc := range []struct{ name, target string }{
		{"normal", "/api/v1/reviews/1234/comments?page=2&sort=desc"},
		{"dots", "/api/v1/../v2/./reviews//1234%2Fcomments?page=2"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := []byte(bc.target)
			dst := make([]byte, 0, 256)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, _, _, err := NormalizeTarget(dst, in, all); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
