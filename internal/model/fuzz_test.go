package model

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every error it returns is
// a well-formed *FieldError, and that what it accepts survives a round trip
// through Marshal. Seeds: testdata/*.yaml and testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(meshHead + "  workloads:\n  - {name: a, service: a, demo: a}\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode(data, "fuzz.yaml")
		if err != nil {
			j, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("error %T is not joined: %v", err, err)
			}
			for _, e := range j.Unwrap() {
				var fe *FieldError
				if !errors.As(e, &fe) || fe.Reason == "" || fe.Source != "fuzz.yaml" {
					t.Fatalf("malformed error %#v", e)
				}
			}
		}
		for _, o := range objs {
			if o == nil {
				t.Fatal("nil object")
			}
			_, _ = Validate(o)
			b, err := Marshal(o, "json")
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if _, err := Decode(b, "again.json"); err != nil {
				t.Fatalf("accepted %s but not its own output:\n%s\n%v", o.Key(), b, err)
			}
		}
		_ = CheckReferences(objs)
	})
}
