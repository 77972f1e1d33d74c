package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/store/embedded"
)

// newMeshSimProcess is newMeshSim with the control plane in its own
// process: the real `trellis control` binary, built for the test, over a
// store seeded with the mesh. Its memory is then its own, not shared with
// the simulated proxies.
func newMeshSimProcess(tb testing.TB, ctx context.Context, services, perService int) *meshSim {
	tb.Helper()
	dir := tb.TempDir()
	bin := filepath.Join(dir, "trellis")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/trellis-mesh/trellis/cmd/trellis")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build trellis: %v\n%s", err, out)
	}
	m := &meshSim{services: services, perService: perService, clients: map[string]*simClient{}}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		tb.Fatal(err)
	}
	st, err := embedded.Open(filepath.Join(data, "trellis.db"), quietLogger())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.PutAll(ctx, m.records(tb)); err != nil {
		tb.Fatal(err)
	}
	if err := st.Close(); err != nil {
		tb.Fatal(err)
	}
	m.launch = func(ctx context.Context) {
		cmd := exec.CommandContext(ctx, bin, "control", "--data-dir", data,
			"--admin-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0", "--health-ttl", "10m")
		if *scaleCPEnv != "" {
			cmd.Env = append(os.Environ(), strings.Fields(*scaleCPEnv)...)
		}
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		stderr, err := cmd.StderrPipe()
		if err != nil {
			tb.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start trellis control: %v", err)
		}
		m.proc = cmd
		m.done = make(chan error, 1)
		addrs := make(chan [2]string, 1)
		go func() {
			readAddrs(stderr, addrs)
			m.done <- cmd.Wait()
		}()
		select {
		case a := <-addrs:
			m.adminURL, m.xdsAddr = a[0], a[1]
		case <-time.After(30 * time.Second):
			tb.Fatal("trellis control did not report its addresses")
		}
		if m.token, err = api.NewClient(m.adminURL, "").CreateToken(ctx); err != nil {
			tb.Fatalf("create token: %v", err)
		}
	}
	return m
}

var runningLine = regexp.MustCompile(`admin=(http://[0-9.:]+) xds=([0-9.:]+)`)

// readAddrs reads the control plane's log until it says where it listens,
// sends that, and then discards the rest until the process ends.
func readAddrs(r io.Reader, addrs chan<- [2]string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if g := runningLine.FindStringSubmatch(sc.Text()); g != nil {
			addrs <- [2]string{g[1], g[2]}
			break
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// processMemory returns VmRSS and VmHWM (peak) of a process, in bytes.
func processMemory(pid int) (rss, peak uint64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", line, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak, nil
}
