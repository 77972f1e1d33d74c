package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

type errString string

func (e errString) Error() string { return string(e) }

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func mustRead(t testing.TB, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
