package h2srv

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestH2Spec runs h2spec (RFC 9113 and RFC 7541 conformance) against the
// server, h2c and over TLS. It is skipped when h2spec is not installed
// (`make tools` installs it; CI does). Every case must pass, the strict
// ones (-S) included.
func TestH2Spec(t *testing.T) {
	bin := findH2Spec()
	if bin == "" {
		t.Skip("h2spec not found on PATH or in $(go env GOPATH)/bin; run `make tools`")
	}
	if testing.Short() {
		t.Skip("h2spec takes about a minute")
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "h2spec")
	})
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2c", true: "tls"}[useTLS], func(t *testing.T) {
			ts := startServer(t, Config{MaxHeaderBytes: 64 << 10}, handler, useTLS)
			_, port, _ := net.SplitHostPort(ts.addr)
			args := []string{"-S", "-h", "127.0.0.1", "-p", port, "-P", "/", "-o", "2", "-j", filepath.Join(t.TempDir(), "junit.xml")}
			if useTLS {
				args = append(args, "-t", "-k")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			failed := h2specFailures(out)
			if err != nil || failed != 0 {
				t.Errorf("h2spec %v: %v, %d failed\n%s", args, err, failed, tail(out, 6000))
				return
			}
			if m := h2specSummary.FindSubmatch(out); m != nil {
				t.Logf("h2spec: %s", m[0])
			}
		})
	}
}

var h2specSummary = regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`)

func h2specFailures(out []byte) int {
	m := h2specSummary.FindSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[4]))
	return n
}

func tail(b []byte, n int) []byte {
	if i := bytes.Index(b, []byte("Failures:")); i >= 0 {
		b = b[i:]
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}

func findH2Spec() string {
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = string(bytes.TrimSpace(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "h2spec")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}
