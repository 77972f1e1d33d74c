package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/up"
)

func newUpCmd(g *globals) *cobra.Command {
	o := up.Options{}
	var useRunning bool
	cmd := &cobra.Command{
		Use:   "up -f mesh.yaml",
		Short: "Run a whole mesh on this machine: control plane, sidecars and apps",
		Long: `Up starts a control plane (or uses a running one with --use-control), then for every
workload of the Mesh file a sidecar and the app behind it, on free loopback ports. Apps start
only after their sidecar is ready. It prints the entry page's URL. Ctrl-C or SIGTERM stops
everything it started.`,
		Example: `  trellis up -f examples/bookinfo/mesh.yaml
  trellis up -f examples/bookinfo/mesh.yaml --admin-addr 127.0.0.1:25080 --xds-addr 127.0.0.1:25012
  trellis up -f mesh.yaml --use-control --control http://127.0.0.1:15080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the trellis binary: %w", err)
			}
			o.Self, o.Out, o.LogLevel = self, g.stdout, g.logLevel
			o.AdminToken = os.Getenv(api.EnvAdminToken)
			if useRunning {
				if o.CA != (ca.OperatorFiles{}) {
					return fmt.Errorf("--ca-cert/--ca-key/--ca-bundle configure the in-process control plane: give them to the running one (trellis control), not with --use-control")
				}
				o.Control = g.control
			} else if cmd.Flags().Changed("control") && !cmd.Flags().Changed("admin-addr") {
				o.AdminAddr = hostPort(g.control)
			}
			return up.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.File, "file", "f", "", "Mesh file (kind Mesh, apiVersion trellis.dev/v1)")
	f.BoolVar(&useRunning, "use-control", false, "use the control plane at --control instead of starting one")
	f.StringVar(&o.AdminAddr, "admin-addr", hostPort(api.DefaultControl), "admin API address of the in-process control plane")
	f.StringVar(&o.XDSAddr, "xds-addr", api.DefaultXDSAddr, "xDS address of the in-process control plane")
	f.StringVar(&o.DataDir, "data-dir", "", "control plane data directory (default: a temporary one, removed on exit)")
	f.DurationVar(&o.CertTTL, "cert-ttl", 24*time.Hour, "workload certificate lifetime")
	f.StringVar(&o.CA.Cert, "ca-cert", "", "operator CA for the in-process control plane (see trellis control --help)")
	f.StringVar(&o.CA.Key, "ca-key", "", "private key of the first --ca-cert certificate")
	f.StringVar(&o.CA.Bundle, "ca-bundle", "", "roots to trust with an operator CA")
	f.DurationVar(&o.StartTimeout, "start-timeout", 60*time.Second, "how long sidecars and apps may take to become ready")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}
