// Command benchtool is bench/run.sh's helper: it runs a demo app outside the
// mesh, finds free loopback ports, reads `trellis status -o json` and
// fortio's JSON results, and checks that a request reached the right
// workload. It keeps run.sh free of jq and python.
//
//	benchtool demo-app NAME                  run a demo app (env as from `trellis up`) until SIGINT/SIGTERM
//	benchtool freeport                       print a free 127.0.0.1 port
//	benchtool freeports N                    print N free 127.0.0.1 ports below the ephemeral range
//	benchtool status FILE CLIENT BACKEND     print shell assignments from a status JSON file
//	benchtool fortio FILE                    print "p50 p99 p99.9 qps ok errors" (µs, rps, counts)
//	benchtool whoami URL WORKLOAD            GET URL, check the answering workload, print what it saw
//	benchtool ghz FILE                       print "p50 p99 rps ok errors" from ghz's JSON report
//	benchtool token CONTROL                  print a new join token of the control plane
//	benchtool certs CONTROL DIR NAME...      register NAMEs, write their mesh SVIDs and the root to DIR
//	benchtool register CONTROL PREFIX N      register N one-workload services PREFIX-001... (nothing serves them)
//	benchtool cpscale FILE                   print shell assignments from BenchmarkControlPlaneScale's output
//	benchtool configsize TRELLIS DIR N...    one proxy's config size in meshes of N services (Markdown rows, VERDICT)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/trellis-mesh/trellis/examples/demoapp"
)

const usage = `usage:
  benchtool demo-app NAME
  benchtool freeport
  benchtool freeports N
  benchtool status FILE CLIENT_WORKLOAD BACKEND_WORKLOAD
  benchtool fortio FILE
  benchtool whoami URL WORKLOAD
  benchtool ghz FILE
  benchtool token CONTROL
  benchtool certs CONTROL DIR NAME...
  benchtool register CONTROL PREFIX N
  benchtool cpscale FILE
  benchtool configsize TRELLIS DIR N N...`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch cmd, rest := args[0], args[1:]; {
	case cmd == "demo-app" && len(rest) == 1:
		return demoApp(rest[0])
	case cmd == "freeport" && len(rest) == 0:
		return freePort()
	case cmd == "freeports" && len(rest) == 1:
		n, err := strconv.Atoi(rest[0])
		if err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("freeports: N must be 1..1000, got %q", rest[0])
		}
		return freePorts(n)
	case cmd == "status" && len(rest) == 3:
		return status(rest[0], rest[1], rest[2])
	case cmd == "fortio" && len(rest) == 1:
		return fortio(rest[0])
	case cmd == "whoami" && len(rest) == 2:
		return whoami(rest[0], rest[1])
	case cmd == "ghz" && len(rest) == 1:
		return ghz(rest[0])
	case cmd == "token" && len(rest) == 1:
		return token(rest[0])
	case cmd == "certs" && len(rest) >= 3:
		return certs(rest[0], rest[1], rest[2:])
	case cmd == "register" && len(rest) == 3:
		n, err := strconv.Atoi(rest[2])
		if err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("register: N must be 1..1000, got %q", rest[2])
		}
		return register(rest[0], rest[1], n)
	case cmd == "cpscale" && len(rest) == 1:
		return cpScaleCmd(rest[0])
	case cmd == "configsize" && len(rest) >= 4:
		var sizes []int
		for _, a := range rest[2:] {
			n, err := strconv.Atoi(a)
			if err != nil || n < 2 || n > 5000 {
				return fmt.Errorf("configsize: mesh sizes must be 2..5000 services, got %q", a)
			}
			sizes = append(sizes, n)
		}
		return configSizeCmd(rest[0], rest[1], sizes)
	}
	return fmt.Errorf("bad arguments %q\n%s", args, usage)
}

func demoApp(name string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := demoapp.Run(ctx, name, logger); err != nil {
		return fmt.Errorf("demo-app %s: %w", name, err)
	}
	return nil
}

func freePort() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	return nil
}

// statusWorkload is the part of one `trellis status -o json` workload that
// the benchmark reads.
type statusWorkload struct {
	Name      string            `json:"name"`
	Service   string            `json:"service"`
	App       string            `json:"app"`
	Inbound   string            `json:"inbound"`
	Admin     string            `json:"admin"`
	Upstreams map[string]string `json:"upstreams"`
	Ready     bool              `json:"ready"`
}

var hostPort = regexp.MustCompile(`^[0-9A-Za-z.:\[\]-]+:[0-9]+$`)

// status prints, for run.sh to eval: READY (true when both workloads are
// ready), CLIENT_OUTBOUND (the client's local port for the backend service),
// BACKEND_APP, BACKEND_INBOUND and both admin ports (CLIENT_ADMIN,
// BACKEND_ADMIN). Values are checked to be host:port.
func status(file, client, backend string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read status: %w", err)
	}
	var doc struct {
		Workloads []statusWorkload `json:"workloads"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("decode status %s: %w", file, err)
	}
	byName := map[string]statusWorkload{}
	for _, w := range doc.Workloads {
		byName[w.Name] = w
	}
	c, okc := byName[client]
	b, okb := byName[backend]
	if !okc || !okb {
		fmt.Println("READY=false")
		return nil
	}
	out := map[string]string{
		"CLIENT_OUTBOUND": c.Upstreams[b.Service],
		"BACKEND_APP":     b.App,
		"BACKEND_INBOUND": b.Inbound,
		"CLIENT_ADMIN":    c.Admin,
		"BACKEND_ADMIN":   b.Admin,
	}
	ready := c.Ready && b.Ready
	for _, k := range []string{"CLIENT_OUTBOUND", "BACKEND_APP", "BACKEND_INBOUND", "CLIENT_ADMIN", "BACKEND_ADMIN"} {
		v := out[k]
		if !hostPort.MatchString(v) {
			ready = false
			v = ""
		}
		fmt.Printf("%s=%s\n", k, v)
	}
	fmt.Printf("READY=%t\n", ready)
	return nil
}

// fortioResult is the part of fortio's -json output the report uses.
type fortioResult struct {
	ActualQPS         float64
	DurationHistogram struct {
		Count       int64
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
	ErrorsDurationHistogram struct {
		Count int64
	}
	RetCodes map[string]int64
}

func fortio(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read fortio result: %w", err)
	}
	var r fortioResult
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("decode fortio result %s: %w", file, err)
	}
	pct := map[float64]float64{}
	for _, p := range r.DurationHistogram.Percentiles {
		pct[p.Percentile] = p.Value * 1e6
	}
	for _, want := range []float64{50, 99, 99.9} {
		if _, ok := pct[want]; !ok {
			return fmt.Errorf("%s: no p%g: run fortio with -p \"50,99,99.9\"", file, want)
		}
	}
	ok := r.RetCodes["200"]
	errs := r.DurationHistogram.Count - ok
	fmt.Printf("%.0f %.0f %.0f %.1f %d %d\n", pct[50], pct[99], pct[99.9], r.ActualQPS, ok, errs)
	return nil
}

// whoami checks that GET URL (a bench-backend /whoami, possibly through the
// sidecars) is answered by workload, and prints the peer and the
// x-forwarded-client-cert header the app received.
func whoami(url, workload string) error {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("whoami: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("whoami: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("whoami %s: HTTP %d: %s", url, resp.StatusCode, body)
	}
	var who demoapp.Whoami
	if err := json.Unmarshal(body, &who); err != nil {
		return fmt.Errorf("whoami %s: decode: %w", url, err)
	}
	if who.Workload != workload {
		return fmt.Errorf("whoami %s: answered by %q, want %q", url, who.Workload, workload)
	}
	xfcc := "none"
	if v := who.Headers["X-Forwarded-Client-Cert"]; len(v) > 0 {
		xfcc = v[0]
	}
	fmt.Printf("answered by %s, peer %s, x-forwarded-client-cert: %s\n", who.Workload, who.RemoteAddr, xfcc)
	return nil
}
