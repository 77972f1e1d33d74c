package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/sidecar"
)

func newProxyCmd(g *globals) *cobra.Command {
	var (
		cfg       sidecar.Config
		labels    []string
		upstreams []string
		port      model.WorkloadPort
		protocol  string
		mem       sidecar.MemoryFlags
	)
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run one sidecar in front of one app",
		Long: `Run one sidecar. It registers the workload with the control plane, makes its own key,
obtains and renews its certificate, and serves the inbound mTLS listener and one outbound
listener per upstream. The join token is read from ` + api.EnvJoinToken + `.`,
		Example: `  TRELLIS_JOIN_TOKEN=... trellis proxy --name reviews-v1 --service reviews --label version=v1 \
    --port 9080 --protocol http --app 127.0.0.1:9081 --inbound 127.0.0.1:15006 \
    --upstream ratings=127.0.0.1:15101 --admin-addr 127.0.0.1:15000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := &cfg.Workload
			w.Spec.Labels = map[string]string{}
			for _, l := range labels {
				k, v, err := splitKV("label", l)
				if err != nil {
					return err
				}
				w.Spec.Labels[k] = v
			}
			for _, u := range upstreams {
				svc, local, err := splitKV("upstream", u)
				if err != nil {
					return err
				}
				w.Spec.Upstreams = append(w.Spec.Upstreams, model.Upstream{Service: svc, Local: local})
			}
			port.Protocol = model.Protocol(protocol)
			w.Spec.Ports = []model.WorkloadPort{port}
			cfg.Control = g.control
			cfg.Token = os.Getenv(api.EnvJoinToken)
			if cfg.Token == "" {
				return fmt.Errorf("no join token: set %s (create one with the control plane's POST /v1/tokens; trellis up does this for you)", api.EnvJoinToken)
			}
			f := cmd.Flags()
			mem.SetGCPercent, mem.SetLimit = f.Changed("gc-percent"), f.Changed("memory-limit")
			m, err := sidecar.ResolveMemory(mem, os.Getenv)
			if err != nil {
				return err
			}
			m.Apply()
			cfg.Logger = g.logger().With("workload", w.Name)
			cfg.Logger.Debug("memory settings", "gc_percent", m.GCPercent, "gc_percent_from", m.GCSource,
				"memory_limit", m.LimitString(), "memory_limit_from", m.LimitSource)
			sc, err := sidecar.New(cfg)
			if err != nil {
				return err
			}
			return sc.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Workload.Name, "name", "", "workload name (unique in the namespace)")
	f.StringVar(&cfg.Workload.Namespace, "namespace", model.DefaultNamespace, "namespace")
	f.StringVar(&cfg.Workload.Spec.Service, "service", "", "service this workload is an instance of")
	f.StringVar(&cfg.Workload.Spec.ServiceAccount, "service-account", "", "service account (identity); defaults to the service name")
	f.StringArrayVar(&labels, "label", nil, "label NAME=VALUE (repeatable), e.g. version=v1")
	f.Uint32Var(&port.Port, "port", 80, "logical service port")
	f.StringVar(&protocol, "protocol", string(model.ProtocolHTTP), "protocol of the port: http, http2, grpc, tcp")
	f.StringVar(&port.App, "app", "", "host:port the app listens on")
	f.StringVar(&port.Inbound, "inbound", "", "host:port of the inbound mTLS listener")
	f.StringArrayVar(&upstreams, "upstream", nil, "upstream SERVICE=HOST:PORT the app calls (repeatable)")
	f.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:15000", "admin port: /ready /config_dump /stats /certs /xds")
	f.StringVar(&cfg.XDSAddr, "xds-addr", "", "xDS address (default: asked from the control plane)")
	f.DurationVar(&cfg.HeartbeatInterval, "heartbeat", 5*time.Second, "heartbeat interval")
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", 5*time.Second, "how long in-flight requests may finish on shutdown")
	f.IntVar(&mem.GCPercent, "gc-percent", sidecar.DefaultGCPercent, "Go GC percent (GOGC): heap growth over the live heap before a collection; -1 = off (needs --memory-limit). Default: $GOGC if set, else this")
	f.BoolVar(&cfg.ReleaseStartupMemory, "release-startup-memory", true, "once ready, return start-up garbage to the OS and unmap the binary's pages only start-up touched (Linux; see docs/perf.md)")
	f.StringVar(&mem.Limit, "memory-limit", "off", "Go soft memory limit (GOMEMLIMIT syntax: 48MiB, 1GiB, off); counts the runtime's own memory, not the binary's file pages. Default: $GOMEMLIMIT if set, else off")
	for _, name := range []string{"name", "service", "app", "inbound"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}
