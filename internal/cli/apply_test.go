package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadDocuments(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"b.yaml": "b", "a.yml": "a", "c.json": "c", "notes.txt": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	docs, err := readDocuments(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, filepath.Base(d.source)+"="+string(d.data))
	}
	if strings.Join(got, ",") != "a.yml=a,b.yaml=b,c.json=c" {
		t.Errorf("directory read as %v, want sorted YAML/JSON files only", got)
	}

	docs, err = readDocuments("-", strings.NewReader("from stdin"))
	if err != nil || len(docs) != 1 || docs[0].source != "<stdin>" || string(docs[0].data) != "from stdin" {
		t.Errorf("stdin: %v %+v", err, docs)
	}

	if _, err := readDocuments(filepath.Join(dir, "missing.yaml"), nil); err == nil {
		t.Error("missing file: no error")
	}
	empty := t.TempDir()
	if _, err := readDocuments(empty, nil); err == nil || !strings.Contains(err.Error(), "no .yaml") {
		t.Errorf("empty directory: %v", err)
	}
}

func TestValidateCommandExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(good, []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews}\n"), 0o644)
	_ = os.WriteFile(bad, []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {hots: reviews}\n"), 0o644)
	for _, tc := range []struct {
		file     string
		wantCode int
		wantErr  string
	}{
		{good, 0, ""},
		{bad, 1, "spec.hots: unknown field"},
	} {
		var out, errOut strings.Builder
		root := newRoot(&out, &errOut)
		root.SetArgs([]string{"validate", "-f", tc.file})
		err := root.Execute()
		code := 0
		if ee, ok := err.(exitError); ok {
			code = ee.code
		} else if err != nil {
			code = 1
		}
		if code != tc.wantCode || !strings.Contains(errOut.String(), tc.wantErr) {
			t.Errorf("validate %s: code %d stderr %q, want code %d and %q", filepath.Base(tc.file), code, errOut.String(), tc.wantCode, tc.wantErr)
		}
	}
}
