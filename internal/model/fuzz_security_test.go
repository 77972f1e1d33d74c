package model

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzDecodeAuthorizationPolicy checks that decoding and validating an
// AuthorizationPolicy never panics, that every error is a well-formed
// *FieldError, that what Decode accepts Validate accepts too and survives a
// round trip through Marshal, and that the validator alone, given whatever
// a lenient decoder makes of the input, never panics either. Seeds: the
// AuthorizationPolicies of testdata/security/*.yaml and the documents of
// the validation tables (valid and not).
func FuzzDecodeAuthorizationPolicy(f *testing.F) {
	files, err := filepath.Glob("testdata/security/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, doc := range bytes.Split(data, []byte("\n---\n")) {
			if bytes.Contains(doc, []byte("kind: "+KindAuthorizationPolicy)) {
				f.Add(doc)
			}
		}
	}
	for _, spec := range []string{
		"action: CUSTOM\nprovider: {name: ext}\nrules: [{}]",
		"rules: [{from: [{source: {principals: [\"spiffe://a/ns/b/sa/*c*\"], ipBlocks: [\"10.0.0.0/33\", \"fe80::1%eth0\"]}}]}]",
		"rules: [{to: [{operation: {paths: [\"/api/{**}\", \"//a/../%2e%zz?x\"], ports: [\"0\"], methods: [get]}}]}]",
		"rules: [{when: [{key: \"request.auth.claims[a][b]\", values: [x]}, {key: \"request.headers[\", notValues: [y]}, {key: destination.port}]}]",
		"action: DENY\nselector: {matchLabels: {\"a*\": \"\"}}\ntargetRefs: [{kind: Service, name: s}]",
	} {
		f.Add([]byte(ap(spec)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode(data, "fuzz.yaml")
		for _, fe := range fieldErrors(t, err) {
			if fe.Reason == "" || fe.Source != "fuzz.yaml" {
				t.Fatalf("malformed error %#v", fe)
			}
		}
		for _, o := range objs {
			if _, err := Validate(o); err != nil {
				t.Fatalf("Decode accepted %s, Validate refuses it: %v", o.Key(), err)
			}
			b, err := Marshal(o, "yaml")
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if _, err := Decode(b, "again.yaml"); err != nil {
				t.Fatalf("accepted %s but not its own output:\n%s\n%v", o.Key(), b, err)
			}
		}
		_ = CheckReferences(objs)

		var policy AuthorizationPolicy
		if yaml.Unmarshal(data, &policy) != nil {
			return
		}
		warns, err := Validate(&policy)
		for _, fe := range fieldErrors(t, err) {
			if fe.Reason == "" || (fe.Path != "" && !strings.HasPrefix(fe.Path, "spec") && !strings.HasPrefix(fe.Path, "metadata")) {
				t.Fatalf("malformed error %#v", fe)
			}
		}
		for _, w := range warns {
			if !strings.HasPrefix(w, policy.Key().String()+": spec") {
				t.Fatalf("malformed warning %q", w)
			}
		}
	})
}
