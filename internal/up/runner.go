package up

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
)

// workload is one Mesh workload with its assigned addresses and processes.
type workload struct {
	spec      model.MeshWorkload
	app       string
	inbound   string
	admin     string
	upstreams map[string]string // service → local outbound address
	sidecar   *process
	appProc   *process
}

type runner struct {
	opts       Options
	mesh       *model.Mesh
	out        *lineWriter
	client     *api.Client
	controlURL string
	workloads  []*workload
	entry      string
}

// start brings the mesh up in order; on error the caller still calls stopAll.
func (r *runner) start(ctx context.Context, others []model.Object) error {
	token, err := r.client.CreateToken(ctx)
	if err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	if err := r.applyOthers(ctx, others); err != nil {
		return err
	}
	if err := r.assignPorts(); err != nil {
		return err
	}
	for _, w := range r.workloads {
		if w.sidecar, err = startProcess(w.spec.Name+"/proxy", r.sidecarArgv(w), []string{api.EnvJoinToken + "=" + token}, r.out); err != nil {
			return err
		}
	}
	deadline, cancel := context.WithTimeout(ctx, r.opts.StartTimeout)
	defer cancel()
	for _, w := range r.workloads {
		if err := waitUntil(deadline, w.sidecar, func() bool { return httpOK("http://" + w.admin + "/ready") }); err != nil {
			return fmt.Errorf("sidecar of %s not ready: %w", w.spec.Name, err)
		}
	}
	for _, w := range r.workloads {
		argv := w.spec.Command
		if w.spec.Demo != "" {
			argv = []string{r.opts.Self, "demo-app", w.spec.Demo, "--log-level", r.opts.LogLevel}
		}
		if w.appProc, err = startProcess(w.spec.Name, argv, r.appEnv(w), r.out); err != nil {
			return err
		}
	}
	for _, w := range r.workloads {
		if err := waitUntil(deadline, w.appProc, func() bool { return tcpOpen(w.app) }); err != nil {
			return fmt.Errorf("app %s not listening on %s: %w", w.spec.Name, w.app, err)
		}
	}
	// Announce only once the control plane sees every workload ready (its
	// endpoints are then being published to the other sidecars).
	err = waitUntil(deadline, nil, func() bool {
		st, err := r.client.Status(deadline)
		if err != nil {
			return false
		}
		ready := 0
		for _, ws := range st.Workloads {
			for _, w := range r.workloads {
				if ws.Name == w.spec.Name && ws.Ready && ws.Config.State == api.ConfigSynced {
					ready++
				}
			}
		}
		return ready == len(r.workloads)
	})
	if err != nil {
		return fmt.Errorf("workloads not ready in the control plane's view: %w", err)
	}
	if e := r.mesh.Spec.Entry; e != nil {
		for _, w := range r.workloads {
			if w.spec.Name == e.Workload {
				r.entry = "http://" + w.app + e.Path
			}
		}
	}
	return r.client.PutMesh(ctx, api.MeshInfo{Name: r.mesh.Name, Entry: r.entry})
}

// applyOthers applies the file's other documents (DestinationRules...).
func (r *runner) applyOthers(ctx context.Context, others []model.Object) error {
	if len(others) == 0 {
		return nil
	}
	var buf bytes.Buffer
	for i, obj := range others {
		if i > 0 {
			buf.WriteString("\n---\n")
		}
		data, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("%s: encode: %w", obj.Key(), err)
		}
		buf.Write(data)
	}
	resp, err := r.client.Apply(ctx, buf.Bytes(), r.opts.File, false)
	if err != nil {
		return fmt.Errorf("apply the documents of %s: %w", r.opts.File, err)
	}
	for _, w := range resp.Warnings {
		r.out.printf("up", "warning: %s", w)
	}
	return nil
}

func (r *runner) assignPorts() error {
	n := 0
	for _, s := range r.mesh.Spec.Workloads {
		n += 3 + len(s.Upstreams)
	}
	addrs, err := freePorts(n)
	if err != nil {
		return err
	}
	next := func() string { a := addrs[0]; addrs = addrs[1:]; return a }
	for _, s := range r.mesh.Spec.Workloads {
		w := &workload{spec: s, app: next(), inbound: next(), admin: next(), upstreams: map[string]string{}}
		for _, u := range s.Upstreams {
			w.upstreams[u] = next()
		}
		r.workloads = append(r.workloads, w)
	}
	return nil
}

func (r *runner) sidecarArgv(w *workload) []string {
	s := w.spec
	port, protocol := s.Port.Port, s.Port.Protocol
	if port == 0 {
		port = 80
	}
	if protocol == "" {
		protocol = model.ProtocolHTTP
	}
	argv := []string{r.opts.Self, "proxy",
		"--control", r.controlURL, "--log-level", r.opts.LogLevel,
		"--name", s.Name, "--service", s.Service,
		"--port", strconv.FormatUint(uint64(port), 10), "--protocol", string(protocol),
		"--app", w.app, "--inbound", w.inbound, "--admin-addr", w.admin,
	}
	if s.ServiceAccount != "" {
		argv = append(argv, "--service-account", s.ServiceAccount)
	}
	for _, k := range sortedKeys(s.Labels) {
		argv = append(argv, "--label", k+"="+s.Labels[k])
	}
	for _, u := range s.Upstreams {
		argv = append(argv, "--upstream", u+"="+w.upstreams[u])
	}
	return argv
}

func (r *runner) appEnv(w *workload) []string {
	_, port, _ := net.SplitHostPort(w.app)
	env := []string{
		"TRELLIS_APP_ADDR=" + w.app,
		"PORT=" + port,
		"TRELLIS_WORKLOAD=" + w.spec.Name,
		"TRELLIS_SERVICE=" + w.spec.Service,
		"TRELLIS_VERSION=" + w.spec.Labels["version"],
	}
	for _, k := range sortedKeys(w.spec.Env) {
		env = append(env, k+"="+w.spec.Env[k])
	}
	for _, u := range w.spec.Upstreams {
		env = append(env, envName(u)+"="+w.upstreams[u])
	}
	return env
}

// supervise waits for ctx; a child that dies is reported, and the rest keep
// running (one crashed demo app should not take the mesh down).
func (r *runner) supervise(ctx context.Context) error {
	var procs []*process
	for _, w := range r.workloads {
		procs = append(procs, w.sidecar, w.appProc)
	}
	for {
		p := waitAny(ctx, procs)
		if p == nil {
			return nil
		}
		r.out.printf("up", "%s (pid %d) exited: %v", p.name, p.pid(), p.err)
		for i := range procs {
			if procs[i] == p {
				procs = append(procs[:i], procs[i+1:]...)
				break
			}
		}
		if len(procs) == 0 {
			<-ctx.Done()
			return nil
		}
	}
}

// stopAll stops apps first, then sidecars, so apps never lose their mesh
// while still serving.
func (r *runner) stopAll() {
	stopEach := func(get func(*workload) *process, grace time.Duration) {
		done := make(chan struct{})
		n := 0
		for _, w := range r.workloads {
			if p := get(w); p != nil {
				n++
				go func() { p.stop(grace); done <- struct{}{} }()
			}
		}
		for range n {
			<-done
		}
	}
	stopEach(func(w *workload) *process { return w.appProc }, 5*time.Second)
	stopEach(func(w *workload) *process { return w.sidecar }, 10*time.Second)
}

func waitUntil(ctx context.Context, p *process, ok func() bool) error {
	for {
		if ok() {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("process exited: %v", p.err)
		}
		select {
		case <-ctx.Done():
			return errStartTimeout
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var probeClient = &http.Client{Timeout: time.Second}

func httpOK(url string) bool {
	resp, err := probeClient.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func tcpOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
