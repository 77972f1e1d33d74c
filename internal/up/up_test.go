package up

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"reviews":   "TRELLIS_UPSTREAM_REVIEWS",
		"grpc-echo": "TRELLIS_UPSTREAM_GRPC_ECHO",
		"a-b-c":     "TRELLIS_UPSTREAM_A_B_C",
	} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseMeshFile(t *testing.T) {
	const mesh = `apiVersion: trellis.dev/v1
kind: Mesh
metadata: {name: m}
spec:
  workloads:
  - {name: a-v1, service: a, demo: details}
`
	const dr = `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: a}
`
	tests := []struct {
		name, doc  string
		wantOthers int
		wantErr    string
	}{
		{"mesh alone", mesh, 0, ""},
		{"mesh and a rule", mesh + dr, 1, ""},
		{"two meshes", mesh + "---\n" + strings.Replace(mesh, "name: m}", "name: other}", 1), 0, "a file holds one Mesh"},
		{"no mesh", strings.TrimPrefix(dr, "---\n"), 0, "no document of kind Mesh"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, others, err := parseMeshFile([]byte(tc.doc), "f.yaml")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Name != "m" || len(others) != tc.wantOthers {
				t.Errorf("mesh %q, %d other documents; want m, %d", m.Name, len(others), tc.wantOthers)
			}
		})
	}
}

func TestFreePortsDistinctAndFree(t *testing.T) {
	addrs, err := freePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("address %s handed out twice", a)
		}
		seen[a] = true
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("address %s not free after freePorts returned: %v", a, err)
		}
		l.Close()
	}
}

func TestLineWriterPrefixesWholeLines(t *testing.T) {
	var buf bytes.Buffer
	w := &lineWriter{out: &buf}
	w.copyLines("app", strings.NewReader("one\ntwo\nno newline at end"))
	w.printf("up", "%s exited", "app")
	want := "[app] one\n[app] two\n[app] no newline at end\n[up] app exited\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestProcessStopKillsTheGroup(t *testing.T) {
	var buf bytes.Buffer
	w := &lineWriter{out: &buf}
	// A shell that ignores SIGTERM and has a child: stop must still end both.
	p, err := startProcess("stubborn", []string{"sh", "-c", "trap '' TERM; sleep 30 & echo started; wait"}, nil, w)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	output := func() string { w.mu.Lock(); defer w.mu.Unlock(); return buf.String() }
	for !strings.Contains(output(), "started") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	p.stop(300 * time.Millisecond)
	if !p.exited() {
		t.Fatal("process still running after stop")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("stop took %v", took)
	}
}
