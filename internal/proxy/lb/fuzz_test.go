package lb

import "testing"

// FuzzHashInputs: the cookie and query parsers never panic and read a
// header the same way as string and as bytes.
func FuzzHashInputs(f *testing.F) {
	for _, s := range []string{"a=1; sticky=\"v\"", "user=a%20b+c&x", "=;=&%", "sticky", "%zz%2", ""} {
		f.Add(s, "sticky")
	}
	f.Fuzz(func(t *testing.T, in, name string) {
		cs, cok := CookieValue(in, name)
		cb, bok := CookieValue([]byte(in), name)
		if cs != string(cb) || cok != bok {
			t.Fatalf("CookieValue(%q, %q): string %q %t, bytes %q %t", in, name, cs, cok, cb, bok)
		}
		qs, qok := QueryValue(in, name)
		qb, qbok := QueryValue([]byte(in), name)
		if qs != string(qb) || qok != qbok {
			t.Fatalf("QueryValue(%q, %q): string %q %t, bytes %q %t", in, name, qs, qok, qb, qbok)
		}
		var scratch []byte
		if SumQueryValue(in, &scratch) != SumQueryValue([]byte(in), &scratch) {
			t.Fatalf("SumQueryValue(%q) differs for string and bytes", in)
		}
		if Sum64(in) != Sum64([]byte(in)) {
			t.Fatalf("Sum64(%q) differs for string and bytes", in)
		}
	})
}
