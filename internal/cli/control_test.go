package cli

import (
	"strings"
	"testing"
)

// A negative --gc-percent is refused by name before anything starts.
func TestControlRejectsNegativeGCPercent(t *testing.T) {
	var out, errOut strings.Builder
	root := newRoot(&out, &errOut)
	root.SetArgs([]string{"control", "--gc-percent", "-5", "--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "--gc-percent: -5") {
		t.Fatalf("control --gc-percent -5: err %v, want one naming --gc-percent", err)
	}
}
