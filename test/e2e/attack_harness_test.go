package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
)

// The attack tests (attack_*_test.go) run a two-workload mesh,
//
//	client-v1 (demo idle) ──► sink-v1
//
// whose sink app is served by the test process itself (sinkApp), so every
// request that reaches the app is counted, with its headers and the exact
// number of body bytes, and nothing the sidecars do can hide from it. The
// mesh's CA root is made by the test (attackCA), so it can sign leaves with
// any defect. Attacks go to the client sidecar's outbound port (plaintext,
// as the client app would send them) and to the sink sidecar's inbound port
// (mTLS, as a peer with a genuine mesh certificate would).
const attackMeshYAML = `apiVersion: trellis.dev/v1
kind: Mesh
metadata:
  name: attacks
spec:
  workloads:
  - name: client-v1
    service: client
    labels: {version: v1}
    demo: idle
    port: {port: 9080, protocol: http}
    upstreams: [sink]
  - name: sink-v1
    service: sink
    labels: {version: v1}
    command: ["sleep", "3600"]
    port: {port: 8000, protocol: http}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: sink
spec:
  hosts: [sink]
  http:
  - match: [{uri: {prefix: /retry/}}]
    route: [{destination: {host: sink}}]
    retries: {attempts: 2, retryOn: "5xx,connect-failure,reset"}
  - match: [{uri: {prefix: /mirror/}}]
    route: [{destination: {host: sink}}]
    mirror: {host: sink}
    mirrorPercentage: {value: 100}
  - route: [{destination: {host: sink}}]
`

// sinkID and clientID are the SPIFFE IDs of the two services.
const (
	sinkID   = "spiffe://cluster.local/ns/default/sa/sink"
	clientID = "spiffe://cluster.local/ns/default/sa/client"
)

// attackMesh is the running mesh of the attack tests.
type attackMesh struct {
	*mesh
	ca          *attackCA
	sink        *sinkApp
	clientOut   string // client sidecar's outbound address for sink (plaintext)
	sinkInbound string // sink sidecar's inbound address (mTLS)
}

// startAttackMesh starts a control plane whose CA root is ca's, `trellis up`
// on the attack mesh, and the sink app in this process.
func startAttackMesh(t *testing.T, controlArgs ...string) *attackMesh {
	t.Helper()
	am := &attackMesh{ca: newAttackCA(t), sink: newSinkApp("sink-v1")}
	m := &mesh{t: t, dataDir: t.TempDir(), adminAddr: freeAddr(t), xdsAddr: freeAddr(t), controlArg: controlArgs}
	m.controlURL = "http://" + m.adminAddr
	m.client = api.NewClient(m.controlURL, "")
	am.mesh = m
	am.ca.install(t, m)
	m.startControl()
	m.up = start(t, "up", "up", "-f", writeFile(t, "attacks.yaml", attackMeshYAML),
		"--use-control", "--control", m.controlURL, "--start-timeout", "60s")
	// The sidecar registers the app address `trellis up` chose; the test
	// serves it before `trellis up` gives up waiting for the app.
	var appAddr string
	eventually(t, 60*time.Second, "sink-v1 registered", func() error {
		st, err := m.client.Status(context.Background())
		if err != nil {
			return err
		}
		for _, w := range st.Workloads {
			if w.Name == "sink-v1" && w.App != "" {
				appAddr = w.App
				return nil
			}
		}
		return errors.New("not yet")
	})
	am.sink.serve(t, appAddr)
	m.waitReady(60 * time.Second)
	am.clientOut = m.workload("client-v1").Upstreams["sink"]
	am.sinkInbound = m.workload("sink-v1").Inbound
	am.ca.checkInUse(t, m)
	return am
}

// sinkApp is an HTTP/1.1 app that records every request reaching it.
type sinkApp struct {
	name string

	started   atomic.Int64 // handlers entered: requests that reached the app
	completed atomic.Int64 // requests whose body was read to its end
	bodyBytes atomic.Int64 // body bytes received, all requests

	mu    sync.Mutex
	paths map[string]int
	last  map[string]sinkRequest // by path
}

// sinkRequest is what the sink saw of one request; it is also its answer.
type sinkRequest struct {
	Method     string      `json:"method"`
	Path       string      `json:"path"`
	Host       string      `json:"host"`
	RemoteAddr string      `json:"remoteAddr"`
	Header     http.Header `json:"header"`
	BodyLen    int64       `json:"bodyLen"`
	BodyErr    string      `json:"bodyErr,omitempty"`
	BodyHead   string      `json:"bodyHead,omitempty"` // the first 1 KiB
}

func newSinkApp(name string) *sinkApp {
	return &sinkApp{name: name, paths: map[string]int{}, last: map[string]sinkRequest{}}
}

func (s *sinkApp) serve(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("sink app: %v", err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second, MaxHeaderBytes: 1 << 20}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
}

func (s *sinkApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.started.Add(1)
	var head bytes.Buffer
	n, err := io.Copy(io.MultiWriter(&limitedBuffer{buf: &head, max: 1 << 10}, io.Discard), r.Body)
	s.bodyBytes.Add(n)
	rec := sinkRequest{Method: r.Method, Path: r.URL.Path, Host: r.Host, RemoteAddr: r.RemoteAddr,
		Header: r.Header.Clone(), BodyLen: n, BodyHead: head.String()}
	if err != nil {
		rec.BodyErr = err.Error()
	} else {
		s.completed.Add(1)
	}
	s.mu.Lock()
	s.paths[r.URL.Path]++
	s.last[r.URL.Path] = rec
	s.mu.Unlock()
	w.Header().Set("X-Served-By", s.name)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rec)
}

// seen is how many requests for path reached the app.
func (s *sinkApp) seen(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paths[path]
}

// lastFor is the last request for path the app saw.
func (s *sinkApp) lastFor(path string) (sinkRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.last[path]
	return r, ok
}

type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// dialOutbound connects to the client sidecar's outbound port for sink.
func (am *attackMesh) dialOutbound(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", am.clientOut, 2*time.Second)
	if err != nil {
		t.Fatalf("dial outbound: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// dialInbound connects to the sink sidecar's inbound port with mTLS as
// cert, offering alpn; it fails the test if the handshake fails. (A refused
// client certificate would show on the first read: use tryInbound to see
// it at once.)
func (am *attackMesh) dialInbound(t testing.TB, cert tls.Certificate, alpn string) net.Conn {
	t.Helper()
	c, err := am.handshakeInbound(cert, alpn)
	if err != nil {
		t.Fatalf("mTLS to the sink's inbound port: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// tryInbound is dialInbound returning the handshake error. TLS 1.3 clients
// learn that the server refused their certificate only on the first read,
// so a refusal shows up as the error of a short read after the handshake
// (a byte read then, such as the start of an HTTP/2 server's SETTINGS, is
// given back by the returned connection).
func (am *attackMesh) tryInbound(cert tls.Certificate, alpn string) (net.Conn, error) {
	c, err := am.handshakeInbound(cert, alpn)
	if err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	pre := make([]byte, 1)
	n, err := c.Read(pre)
	if err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			_ = c.Close()
			return nil, fmt.Errorf("after the handshake: %w", err)
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return &replayConn{Conn: c, pre: pre[:n]}, nil
}

// handshakeInbound runs the client side of the handshake with the sink's
// inbound port, checking the server's SVID and the negotiated protocol.
func (am *attackMesh) handshakeInbound(cert tls.Certificate, alpn string) (*tls.Conn, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, NextProtos: []string{alpn},
		InsecureSkipVerify: true, // the server is checked below, against the mesh root
		VerifyConnection:   am.ca.verifyServer(sinkID),
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: cfg}
	nc, err := d.Dial("tcp", am.sinkInbound)
	if err != nil {
		return nil, err
	}
	c := nc.(*tls.Conn)
	if c.ConnectionState().NegotiatedProtocol != alpn {
		_ = c.Close()
		return nil, fmt.Errorf("negotiated ALPN %q, want %q", c.ConnectionState().NegotiatedProtocol, alpn)
	}
	return c, nil
}

// replayConn gives back bytes read before it was returned.
type replayConn struct {
	*tls.Conn
	pre []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// rawReply is what came back for raw bytes written to a connection.
type rawReply struct {
	status int
	header http.Header
	body   string
	closed bool  // the proxy closed the connection after the reply
	err    error // no parsable reply
}

func (r rawReply) String() string {
	if r.err != nil {
		return "no reply: " + r.err.Error()
	}
	return fmt.Sprintf("%d (reason %q, closed %v) %q", r.status, r.header.Get("X-Trellis-Reason"), r.closed, r.body)
}

// exchange writes payload and reads one reply, then whether the connection
// is closed (EOF or reset within closeWait).
func exchange(c net.Conn, payload []byte, replyWait, closeWait time.Duration) rawReply {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, werr := c.Write(payload)
	// A server may answer and close before reading all of a large
	// payload: its reply is still there to read.
	r := readReply(c, bufio.NewReader(c), replyWait, closeWait)
	if werr != nil {
		r.closed = true
		if r.err != nil {
			r.err = fmt.Errorf("write: %w; read: %w", werr, r.err)
		}
	}
	return r
}

func readReply(c net.Conn, br *bufio.Reader, replyWait, closeWait time.Duration) rawReply {
	_ = c.SetReadDeadline(time.Now().Add(replyWait))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return rawReply{err: err, closed: isClosed(err)}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := rawReply{status: resp.StatusCode, header: resp.Header, body: string(body)}
	if closeWait > 0 {
		_ = c.SetReadDeadline(time.Now().Add(closeWait))
		_, err = br.Peek(1)
		r.closed = err != nil && isClosed(err)
	}
	return r
}

func isClosed(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || !(errors.As(err, &ne) && ne.Timeout())
}

// sidecarPID finds the `trellis proxy` process of a workload started by
// this test binary's trellis (the binary path is unique to this run).
func sidecarPID(t testing.TB, workload string) int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 2 || args[0] != trellisBin || args[1] != "proxy" {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--name" && args[i+1] == workload {
				pid, _ := strconv.Atoi(filepath.Base(d))
				return pid
			}
		}
	}
	t.Fatalf("no sidecar process for %s", workload)
	return 0
}

// procUsage is a process's CPU time and resident memory.
type procUsage struct {
	cpu time.Duration
	rss int64 // bytes
}

func readProcUsage(t testing.TB, pid int) procUsage {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	// Fields after the command (which may contain spaces): state is field 3,
	// utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100).
	rest := string(stat[bytes.LastIndexByte(stat, ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	u := procUsage{cpu: time.Duration(utime+stime) * 10 * time.Millisecond}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			u.rss = kb << 10
		}
	}
	return u
}

// sidecarStat returns one counter of a sidecar's admin /stats.
func sidecarStat(t testing.TB, admin, name string) int64 {
	t.Helper()
	_, _, body, err := httpGet("http://" + admin + "/stats")
	if err != nil {
		t.Fatalf("stats of %s: %v", admin, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("no stat %q at %s", name, admin)
	return 0
}

// legitGet sends a normal request through the client's sidecar and checks
// the sink answered it.
func (am *attackMesh) legitGet(t testing.TB, path string) {
	t.Helper()
	before := am.sink.seen(path)
	code, hdr, body, err := httpGet("http://" + am.clientOut + path)
	if err != nil || code != http.StatusOK || hdr.Get("X-Served-By") != "sink-v1" {
		t.Fatalf("legitimate GET %s: %d %v %q", path, code, err, body)
	}
	if got := am.sink.seen(path); got != before+1 {
		t.Fatalf("legitimate GET %s: the app saw it %d times, want once", path, got-before)
	}
}

// waitMeshReady waits until the mesh's own workloads (not the ones tests
// register) are ready and their config SYNCED.
func (am *attackMesh) waitMeshReady(t testing.TB) {
	t.Helper()
	eventually(t, 15*time.Second, "client-v1 and sink-v1 ready and SYNCED", func() error {
		st, err := am.client.Status(context.Background())
		if err != nil {
			return err
		}
		ok := 0
		for _, w := range st.Workloads {
			if w.Name != "client-v1" && w.Name != "sink-v1" {
				continue
			}
			if !w.Ready || w.Config.State != api.ConfigSynced {
				return fmt.Errorf("%s: ready=%v config=%s %s", w.Name, w.Ready, w.Config.State, w.Config.Error)
			}
			ok++
		}
		if ok != 2 {
			return fmt.Errorf("%d of 2 workloads in status", ok)
		}
		return nil
	})
}

// resourceBounds reports whether the CPU and memory bounds of the attack
// tests apply: not to a binary built with the race detector (E2E_RACE),
// which costs 2-20x the CPU and 5-10x the memory (Go's race detector
// documentation). `make test` runs the bounded attacks a second time on a
// normal build (the Makefile's e2e target), so CI checks both.
func resourceBounds(t *testing.T) bool {
	t.Helper()
	if os.Getenv("E2E_RACE") != "" {
		t.Log("CPU and memory bounds not checked under the race detector (make test checks them on a normal build)")
		return false
	}
	return true
}
