package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const twoWorkloads = `apiVersion: trellis.dev/v1
kind: Mesh
metadata: {name: pair}
spec:
  workloads:
  - name: caller-v1
    service: caller
    labels: {version: v1}
    demo: idle
    port: {port: 9080, protocol: http}
    upstreams: [details]
  - name: details-v1
    service: details
    labels: {version: v1}
    demo: details
    port: {port: 9080, protocol: http}
`

type certInfo struct {
	Serial    string `json:"serial"`
	NotAfter  string `json:"notAfter"`
	Rotations int    `json:"rotations"`
}

func getCert(admin string) (certInfo, error) {
	var c certInfo
	code, _, body, err := httpGet("http://" + admin + "/certs")
	if err != nil {
		return c, err
	}
	if code != http.StatusOK {
		return c, errors.New(body)
	}
	return c, json.Unmarshal([]byte(body), &c)
}

// TestCertRotation runs with 30 s certificates: both sidecars must renew
// before expiry while requests keep flowing, with zero failures.
func TestCertRotation(t *testing.T) {
	m := startMesh(t, writeFile(t, "pair.yaml", twoWorkloads), "--cert-ttl", "30s")
	caller, details := m.workload("caller-v1"), m.workload("details-v1")
	first := map[string]certInfo{}
	for _, w := range []string{caller.Admin, details.Admin} {
		c, err := getCert(w)
		if err != nil {
			t.Fatal(err)
		}
		first[w] = c
	}
	url := "http://" + caller.Upstreams["details"] + "/whoami"
	var total, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				if code, _, _, err := httpGet(url); err != nil || code != http.StatusOK {
					failed.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	// Rotation is due at half-life (15 s) plus up to 10% jitter; not before 14 s.
	started := time.Now()
	deadline := time.Now().Add(25 * time.Second)
	rotated := func() bool {
		for admin, c0 := range first {
			c, err := getCert(admin)
			if err != nil || c.Rotations == 0 || c.Serial == c0.Serial {
				return false
			}
		}
		return true
	}
	for !rotated() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if rotated() && time.Since(started) < 14*time.Second {
		t.Errorf("rotated after %v, want about half of the 30 s TTL", time.Since(started))
	}
	time.Sleep(time.Second) // traffic over the new certificates
	close(stop)
	wg.Wait()
	if !rotated() {
		t.Fatalf("certificates not rotated within 25 s: first %v", first)
	}
	for admin, c0 := range first {
		c, _ := getCert(admin)
		exp0, _ := time.Parse(time.RFC3339, c0.NotAfter)
		if !time.Now().Before(exp0.Add(time.Second)) {
			t.Errorf("%s rotated only after its certificate expired", admin)
		}
		t.Logf("%s: serial %s → %s, rotations %d", admin, c0.Serial, c.Serial, c.Rotations)
		if c.Rotations > 2 {
			t.Errorf("%s rotated %d times in about 20 s of a 30 s TTL, want 1 (at half-life)", admin, c.Rotations)
		}
	}
	if failed.Load() != 0 || total.Load() < 100 {
		t.Fatalf("%d of %d requests failed across rotation", failed.Load(), total.Load())
	}
}

// TestUpStopsEverything runs `trellis up` with its in-process control plane,
// sends SIGTERM, and checks that every process it started is gone.
func TestUpStopsEverything(t *testing.T) {
	admin := freeAddr(t)
	p := start(t, "up", "up", "-f", writeFile(t, "pair.yaml", twoWorkloads), "--admin-addr", admin, "--xds-addr", freeAddr(t))
	eventually(t, 60*time.Second, "mesh up", func() error {
		if !strings.Contains(p.out.String(), "is up") {
			return errors.New("not announced yet")
		}
		return nil
	})
	pids := descendants(p.cmd.Process.Pid)
	if len(pids) < 4 { // two sidecars and two apps at least
		t.Fatalf("found %d descendant processes, want at least 4: %v", len(pids), pids)
	}
	if !p.stop(30 * time.Second) {
		t.Fatal("trellis up did not exit within 30 s of SIGTERM")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d (%s) still exists after trellis up exited", pid, procName(pid))
		}
	}
	if !strings.Contains(p.out.String(), "sidecar stopped") {
		t.Errorf("sidecars did not shut down gracefully")
	}
}

// descendants lists every process below pid, from /proc.
func descendants(root int) []int {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 {
			ppid, _ := strconv.Atoi(fields[1])
			parent[pid] = ppid
		}
	}
	var out []int
	for pid := range parent {
		for p := parent[pid]; p != 0; p = parent[p] {
			if p == root {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

func procName(pid int) string {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.ReplaceAll(string(data), "\x00", " ")
}

// TestUpRejectsBadMeshFile: a broken Mesh file is refused before anything starts.
func TestUpRejectsBadMeshFile(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"malformed YAML", "apiVersion: trellis.dev/v1\nkind: Mesh\nspec: {workloads: [\n", "mesh.yaml"},
		{"unknown field", strings.Replace(twoWorkloads, "    demo: details", "    demo: details\n    replicas: 3", 1), "spec.workloads[1].replicas: unknown field"},
		{"upstream to nowhere", strings.Replace(twoWorkloads, "upstreams: [details]", "upstreams: [detials]", 1), "spec.workloads[0].upstreams[0]"},
		{"no Mesh document", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews}\n", "no document of kind Mesh"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			admin := freeAddr(t)
			p := start(t, "up", "up", "-f", writeFile(t, "mesh.yaml", tc.doc), "--admin-addr", admin, "--xds-addr", freeAddr(t))
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Fatal("trellis up did not exit on a bad mesh file")
			}
			if p.cmd.ProcessState.ExitCode() == 0 {
				t.Error("exit code 0")
			}
			if out := p.out.String(); !strings.Contains(out, tc.want) {
				t.Errorf("output %q does not mention %q", out, tc.want)
			}
			if tcpOpenAddr(admin) {
				t.Error("a control plane was left listening")
			}
		})
	}
}

func tcpOpenAddr(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
