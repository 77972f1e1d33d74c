package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/proxy"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// explainReport is what `trellis explain` prints: where the configuration
// came from, then the proxy's own explanation of the request.
type explainReport struct {
	Workload  string       `json:"workload,omitempty"`
	Namespace string       `json:"namespace,omitempty"`
	Config    configSource `json:"config"`
	*proxy.Explanation
	// Inbound is what the destination workloads' sidecars do with the
	// forwarded request (local rate limits), when their config is reachable.
	Inbound []proxy.InboundDetail `json:"inbound,omitempty"`

	status *api.Status // the mesh, when asked (not with --config-dump)
}

// configSource says which configuration was explained.
type configSource struct {
	Source string `json:"source"` // sidecar, control-plane or file
	From   string `json:"from"`   // URL or path
	// State is the control plane's view of the sidecar's sync (SYNCED,
	// STALE, NACKED).
	State string `json:"state,omitempty"`
	Note  string `json:"note,omitempty"`
}

const (
	sourceSidecar = "sidecar"
	sourceControl = "control-plane"
	sourceFile    = "file"
)

type explainFlags struct {
	from, namespace, to, output, dumpFile string
	headers                               []string
	fromControl                           bool
}

func newExplainCmd(g *globals) *cobra.Command {
	var f explainFlags
	cmd := &cobra.Command{
		Use:   "explain --from WORKLOAD [METHOD] URL",
		Short: "Show which route, cluster and endpoint a request would get, and why",
		Long: `Explain runs the sidecar's own route matcher and load balancer over the
configuration a workload's sidecar holds (its admin /config_dump; when that does
not answer, what the control plane sent it, with a note saying so) and prints:
every route tried in order and the first field that failed, the route that
matched, its timeout, retries, fault injection, mirrors and rewrites, the
clusters with their weights, each cluster's endpoints and health, load balancer
and hash key, circuit breakers, outlier detection and retry budget; then, from
the destination workloads' sidecars, the inbound route and its local rate limit.

URL is http://SERVICE[:PORT]/PATH, SERVICE[:PORT]/PATH, or a /PATH with --to.
PORT picks among the service's ports (needed only when it has several).
METHOD defaults to GET. Runtime state (ejected endpoints, breaker gauges, token
buckets, which endpoint round robin picks next) is not part of the config and
is not shown.`,
		Example: `  trellis explain --from productpage-v1 GET http://reviews:9080/reviews/1 -H 'end-user: jason'
  trellis explain --from productpage-v1 reviews/reviews/1 -H 'cookie: user=jason' -o json
  trellis explain --from client --to httpbin POST /post
  curl -s http://127.0.0.1:15000/config_dump > dump.json
  trellis explain --config-dump dump.json httpbin:8000/get`,
		Args: cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := explainRequest(args, f.to, f.headers)
			if err != nil {
				return err
			}
			switch f.output {
			case "", "json":
			default:
				return fmt.Errorf("-o %q: want json", f.output)
			}
			rep, data, err := g.explainConfig(cmd.Context(), &f, cmd.Flags().Changed("namespace"), cmd.InOrStdin())
			if err != nil {
				return err
			}
			set, err := proxy.ParseConfigDump(data)
			if err != nil {
				return fmt.Errorf("config of %s: %w", rep.Config.From, err)
			}
			ex, err := proxy.Explain(set, req)
			if err != nil {
				return fmt.Errorf("%s: %w", rep.subject(), err)
			}
			rep.Explanation = ex
			g.explainInbound(cmd.Context(), rep)
			if f.output == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printExplain(g.stdout, rep)
		},
	}
	cmd.Flags().StringVar(&f.from, "from", "", "the source workload, whose sidecar's configuration is explained")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", model.DefaultNamespace, "namespace of the --from workload")
	cmd.Flags().StringVar(&f.to, "to", "", "the destination SERVICE[:PORT], when URL is only a path")
	cmd.Flags().StringArrayVarP(&f.headers, "header", "H", nil, "a request header, 'Name: value' (repeatable)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "", "output format: json (default: a readable report)")
	cmd.Flags().StringVar(&f.dumpFile, "config-dump", "", "explain a saved /config_dump (a file, or - for stdin) instead of asking the mesh")
	cmd.Flags().BoolVar(&f.fromControl, "from-control", false, "explain what the control plane sent the sidecar, without asking the sidecar")
	return cmd
}

func (r *explainReport) subject() string {
	if r.Workload == "" {
		return r.Config.From
	}
	return "workload " + r.Namespace + "/" + r.Workload
}

// explainRequest reads the request from the arguments.
func explainRequest(args []string, to string, headers []string) (proxy.ExplainRequest, error) {
	var req proxy.ExplainRequest
	raw := ""
	switch len(args) {
	case 2:
		req.Method, raw = args[0], args[1]
		if req.Method == "" || strings.ContainsAny(req.Method, " \t/:") {
			return req, fmt.Errorf("method %q: want a method such as GET or POST", req.Method)
		}
	case 1:
		raw = args[0]
	}
	dest, target, err := splitExplainURL(raw)
	if err != nil {
		return req, err
	}
	switch {
	case dest != "" && to != "" && dest != to:
		return req, fmt.Errorf("destination given twice: %q in the URL and --to %q", dest, to)
	case dest == "" && to == "":
		return req, fmt.Errorf("no destination: give a URL such as http://SERVICE:PORT/path, or a path with --to SERVICE")
	case dest == "":
		dest = to
	}
	req.Destination, req.Target = dest, target
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return req, fmt.Errorf("-H %q: want 'Name: value'", h)
		}
		if req.Headers == nil {
			req.Headers = http.Header{}
		}
		if strings.EqualFold(name, "Host") {
			req.Authority = value
			continue
		}
		req.Headers.Add(name, value)
	}
	return req, nil
}

// splitExplainURL splits http://host[:port]/path, host[:port]/path, or
// /path into the destination and the request target.
func splitExplainURL(raw string) (dest, target string, err error) {
	switch {
	case raw == "":
		return "", "/", nil
	case strings.HasPrefix(raw, "/"):
		return "", raw, nil
	case strings.Contains(raw, "://"):
		u, err := url.Parse(raw)
		if err != nil {
			return "", "", fmt.Errorf("URL %q: %w", raw, err)
		}
		if u.Scheme != "http" {
			return "", "", fmt.Errorf("URL %q: scheme %q, want http (apps speak plain HTTP to their sidecar)", raw, u.Scheme)
		}
		if u.Host == "" {
			return "", "", fmt.Errorf("URL %q: no host", raw)
		}
		return u.Host, u.RequestURI(), nil
	}
	i := strings.IndexAny(raw, "/?")
	if i < 0 {
		return raw, "/", nil
	}
	target = raw[i:]
	if target[0] == '?' {
		target = "/" + target
	}
	return raw[:i], target, nil
}

// explainConfig fetches the configuration to explain: a saved dump, the
// sidecar's /config_dump, or what the control plane sent the sidecar.
func (g *globals) explainConfig(ctx context.Context, f *explainFlags, nsGiven bool, stdin io.Reader) (*explainReport, []byte, error) {
	if f.dumpFile != "" {
		data, err := readDump(f.dumpFile, stdin)
		rep := &explainReport{Workload: f.from, Config: configSource{Source: sourceFile, From: f.dumpFile}}
		if f.from != "" {
			rep.Namespace = f.namespace
		}
		return rep, data, err
	}
	if f.from == "" {
		return nil, nil, fmt.Errorf("--from: required, the workload whose sidecar sends the request (or --config-dump FILE)")
	}
	st, err := g.client().Status(ctx)
	if err != nil {
		return nil, nil, err
	}
	w, err := findWorkload(st, f.from, f.namespace, nsGiven)
	if err != nil {
		return nil, nil, err
	}
	rep := &explainReport{Workload: w.Name, Namespace: w.Namespace, Config: configSource{State: w.Config.State}, status: st}
	if w.Config.State != "" && w.Config.State != api.ConfigSynced {
		rep.Config.Note = fmt.Sprintf("the control plane reports this sidecar's config as %s", w.Config.State)
		if w.Config.Error != "" {
			rep.Config.Note += " (" + w.Config.Error + ")"
		}
	}
	src, data, err := g.workloadConfig(ctx, w, f.fromControl)
	if err != nil {
		return nil, nil, err
	}
	src.State, src.Note = rep.Config.State, joinNotes(src.Note, rep.Config.Note)
	rep.Config = src
	return rep, data, nil
}

// workloadConfig fetches the configuration of a workload's sidecar: its
// own /config_dump, else (or with fromControl) what the control plane sent
// it, with a note saying why.
func (g *globals) workloadConfig(ctx context.Context, w *api.WorkloadStatus, fromControl bool) (configSource, []byte, error) {
	var src configSource
	if !fromControl && w.Admin != "" {
		from := adminURL(w.Admin) + "/config_dump"
		data, err := fetchDump(ctx, from)
		if err == nil {
			return configSource{Source: sourceSidecar, From: from}, data, nil
		}
		src.Note = fmt.Sprintf("the sidecar's admin port did not answer (%v): showing what the control plane sent it, which it may not have applied", err)
	} else if !fromControl {
		src.Note = "the workload has no admin address: showing what the control plane sent its sidecar"
	}
	c := g.client()
	data, err := c.ConfigDump(ctx, w.Namespace, w.Name)
	if err != nil {
		return src, nil, fmt.Errorf("config of workload %s/%s from the control plane: %w", w.Namespace, w.Name, err)
	}
	src.Source, src.From = sourceControl, c.Base()+"/v1/xds/"+w.Namespace+"/"+w.Name
	return src, data, nil
}

// maxInbound bounds the destination sidecars asked for their config.
const maxInbound = 8

// explainInbound adds what the destination workloads' sidecars do with the
// request (their inbound listener: local rate limits), for each usable
// endpoint whose workload the status lists, one per workload.
func (g *globals) explainInbound(ctx context.Context, rep *explainReport) {
	if rep.status == nil {
		return
	}
	byInbound := map[string]*api.WorkloadStatus{}
	for i := range rep.status.Workloads {
		if w := &rep.status.Workloads[i]; w.Inbound != "" {
			byInbound[w.Inbound] = w
		}
	}
	peer := "" // the caller's SPIFFE ID, as the destination's sidecar verifies it
	for i := range rep.status.Workloads {
		if w := &rep.status.Workloads[i]; w.Name == rep.Workload && w.Namespace == rep.Namespace {
			peer = w.Identity
		}
	}
	done := map[string]bool{}
	for _, c := range rep.Clusters {
		if c.Upstream == nil {
			continue
		}
		for _, e := range c.Endpoints {
			w := byInbound[e.Address]
			if !e.Usable || w == nil || done[w.Namespace+"/"+w.Name] {
				continue
			}
			if len(done) == maxInbound {
				rep.Notes = append(rep.Notes, fmt.Sprintf("inbound side shown for the first %d destination workloads only", maxInbound))
				return
			}
			done[w.Namespace+"/"+w.Name] = true
			src, data, err := g.workloadConfig(ctx, w, false)
			var in *proxy.InboundDetail
			if err == nil {
				var set *resources.Set
				if set, err = proxy.ParseConfigDump(data); err == nil {
					in, err = proxy.ExplainInbound(set, e.Address, rep.Request.Method, peer, c.Upstream)
				}
			}
			if err != nil {
				rep.Notes = append(rep.Notes, fmt.Sprintf("inbound side of %s/%s not shown: %v", w.Namespace, w.Name, err))
				continue
			}
			in.Workload = w.Namespace + "/" + w.Name
			rep.Inbound = append(rep.Inbound, *in)
			if src.Note != "" {
				rep.Notes = append(rep.Notes, "inbound side of "+in.Workload+": "+src.Note)
			}
		}
	}
}

func joinNotes(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// findWorkload finds the --from workload in the status.
func findWorkload(st *api.Status, name, namespace string, nsGiven bool) (*api.WorkloadStatus, error) {
	var found []*api.WorkloadStatus
	var names []string
	for i := range st.Workloads {
		w := &st.Workloads[i]
		names = append(names, w.Namespace+"/"+w.Name)
		if w.Name == name && (!nsGiven || w.Namespace == namespace) {
			found = append(found, w)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		sort.Strings(names)
		if len(names) > 20 {
			names = append(names[:20], "…")
		}
		known := "none is registered"
		if len(names) > 0 {
			known = "registered: " + strings.Join(names, ", ")
		}
		if nsGiven {
			return nil, fmt.Errorf("unknown workload %s/%s (%s)", namespace, name, known)
		}
		return nil, fmt.Errorf("unknown workload %q (%s)", name, known)
	}
	var nss []string
	for _, w := range found {
		nss = append(nss, w.Namespace)
	}
	return nil, fmt.Errorf("workload %q exists in namespaces %s: give -n", name, strings.Join(nss, ", "))
}

func adminURL(addr string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimRight(addr, "/")
	}
	return "http://" + addr
}

// fetchDump GETs a sidecar's /config_dump.
func fetchDump(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(data)))
	}
	return data, nil
}

func readDump(path string, stdin io.Reader) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(path)
}
