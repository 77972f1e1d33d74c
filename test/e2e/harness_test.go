// Package e2e runs the real trellis binary on loopback: control planes,
// sidecars and demo apps as separate processes, real TLS, real clients.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
)

// trellisBin is the binary under test, built once by TestMain.
var trellisBin string

// repoRoot is the module root (examples/ lives there).
var repoRoot string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	wd, _ := os.Getwd()
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	dir, err := os.MkdirTemp("", "trellis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	trellisBin = filepath.Join(dir, "trellis")
	args := []string{"build", "-o", trellisBin}
	env := os.Environ()
	if os.Getenv("E2E_RACE") != "" {
		args = append(args, "-race") // needs cgo: this binary links dynamically
	} else {
		env = append(env, "CGO_ENABLED=0") // as `make build` ships it: static
	}
	cmd := exec.Command("go", append(args, "./cmd/trellis")...)
	cmd.Dir = repoRoot
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build trellis:", err)
		return 1
	}
	return m.Run()
}

// proc is a trellis process started by a test, in its own process group.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs trellis with args; the process is killed (with its group) at cleanup,
// and its output is logged if the test failed.
func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(trellisBin, args...)
	cmd.Dir = repoRoot
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		// With E2E_RACE the binary is built with -race; a race in any of its
		// processes (control plane, sidecars, apps) fails the test.
		if strings.Contains(out.String(), "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race", name)
		}
		if t.Failed() {
			t.Logf("---- output of %s ----\n%s", name, tail(out.String(), 200))
		}
	})
	return p
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// stop sends SIGTERM and waits up to grace for the process to exit.
func (p *proc) stop(grace time.Duration) bool {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
		return false
	}
}

func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// freeAddr returns a free loopback address.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// eventually retries f every 100ms until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %v: %v", what, timeout, err)
}

// mesh is a control plane process plus `trellis up --use-control` on a Mesh file.
type mesh struct {
	t          testing.TB
	dataDir    string
	adminAddr  string
	xdsAddr    string
	controlURL string
	control    *proc
	up         *proc
	client     *api.Client
	controlArg []string
}

// startMesh starts a control plane process and `trellis up` on file against it,
// and waits until every workload is ready and SYNCED.
func startMesh(t testing.TB, file string, controlArgs ...string) *mesh {
	t.Helper()
	m := &mesh{t: t, dataDir: t.TempDir(), adminAddr: freeAddr(t), xdsAddr: freeAddr(t), controlArg: controlArgs}
	m.controlURL = "http://" + m.adminAddr
	m.client = api.NewClient(m.controlURL, "")
	m.startControl()
	m.up = start(t, "up", "up", "-f", file, "--use-control", "--control", m.controlURL, "--start-timeout", "60s")
	m.waitReady(60 * time.Second)
	return m
}

func (m *mesh) startControl() {
	args := append([]string{"control", "--data-dir", m.dataDir, "--admin-addr", m.adminAddr, "--xds-addr", m.xdsAddr}, m.controlArg...)
	m.control = start(m.t, "control", args...)
	eventually(m.t, 20*time.Second, "control plane answers", func() error {
		_, err := m.client.Info(context.Background())
		return err
	})
}

// waitReady waits until `trellis up` announced the mesh and every workload is ready and SYNCED.
func (m *mesh) waitReady(timeout time.Duration) *api.Status {
	m.t.Helper()
	var st *api.Status
	eventually(m.t, timeout, "mesh ready", func() error {
		if m.up != nil && !strings.Contains(m.up.out.String(), "is up") {
			return fmt.Errorf("trellis up has not announced the mesh yet")
		}
		var err error
		if st, err = m.client.Status(context.Background()); err != nil {
			return err
		}
		if len(st.Workloads) == 0 {
			return fmt.Errorf("no workloads")
		}
		for _, w := range st.Workloads {
			if !w.Ready || w.Config.State != api.ConfigSynced {
				return fmt.Errorf("%s: ready=%v config=%s %s", w.Name, w.Ready, w.Config.State, w.Config.Error)
			}
		}
		return nil
	})
	return st
}

func (m *mesh) status() *api.Status {
	m.t.Helper()
	st, err := m.client.Status(context.Background())
	if err != nil {
		m.t.Fatalf("status: %v", err)
	}
	return st
}

// workload returns one workload's status by name.
func (m *mesh) workload(name string) api.WorkloadStatus {
	m.t.Helper()
	for _, w := range m.status().Workloads {
		if w.Name == name {
			return w
		}
	}
	m.t.Fatalf("no workload %q in status", name)
	return api.WorkloadStatus{}
}

// cli runs a trellis CLI command against this mesh's control plane.
func (m *mesh) cli(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(trellisBin, append(args, "--control", m.controlURL)...)
	cmd.Dir = repoRoot
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// httpGet returns status, headers and body.
func httpGet(url string, header ...string) (int, http.Header, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, "", err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body), err
}

// whoami is the demo apps' /whoami answer.
type whoami struct {
	Workload   string              `json:"workload"`
	Service    string              `json:"service"`
	Version    string              `json:"version"`
	RemoteAddr string              `json:"remoteAddr"`
	Headers    map[string][]string `json:"headers"`
}

func getWhoami(url string) (whoami, error) {
	code, _, body, err := httpGet(url)
	if err != nil {
		return whoami{}, err
	}
	if code != http.StatusOK {
		return whoami{}, fmt.Errorf("GET %s: %d %s", url, code, body)
	}
	var w whoami
	if err := json.Unmarshal([]byte(body), &w); err != nil {
		return whoami{}, fmt.Errorf("GET %s: %w: %s", url, err, body)
	}
	return w, nil
}

// allAnsweredBy sends n requests to a /whoami URL and fails on the first
// answer not from version.
func allAnsweredBy(url, version string, n int) error {
	for range n {
		w, err := getWhoami(url)
		if err != nil {
			return err
		}
		if w.Version != version {
			return errString("answered by " + w.Version + ", want " + version)
		}
	}
	return nil
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitSynced waits until the control plane has seen a change and every
// sidecar ACKed it.
func (m *mesh) waitSynced(t *testing.T) {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // past the control plane's debounce
	up := m.up
	m.up = nil // waitReady also checks `trellis up`'s announcement, long done
	defer func() { m.up = up }()
	m.waitReady(15 * time.Second)
}

// applyExample applies examples/<path> unchanged (a warning that something
// is not implemented fails the test) and waits for every sidecar to have it.
func (m *mesh) applyExample(t *testing.T, path string) {
	t.Helper()
	out, errOut, err := m.cli("apply", "-f", "examples/"+path)
	if err != nil {
		t.Fatalf("trellis apply %s: %v\n%s%s", path, err, out, errOut)
	}
	if strings.Contains(errOut, "not implemented") {
		t.Errorf("apply %s warns: %s", path, errOut)
	}
	m.waitSynced(t)
}
