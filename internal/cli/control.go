package cli

import (
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/controlplane"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/registry"
)

func newControlCmd(g *globals) *cobra.Command {
	cfg := controlplane.Config{}
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run the control plane alone",
		Example: `  trellis control --data-dir /var/lib/trellis
  trellis control --admin-addr 127.0.0.1:15080 --xds-addr 127.0.0.1:15012 --cert-ttl 1h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = g.logger()
			cp, err := controlplane.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return cp.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", ".trellis", "directory of the embedded store (CA root, config, registrations)")
	f.StringVar(&cfg.AdminAddr, "admin-addr", hostPort(api.DefaultControl), "admin HTTP API address (loopback only)")
	f.StringVar(&cfg.XDSAddr, "xds-addr", api.DefaultXDSAddr, "xDS (ADS gRPC) address")
	f.StringVar(&cfg.TrustDomain, "trust-domain", model.DefaultTrustDomain, "SPIFFE trust domain")
	f.DurationVar(&cfg.CertTTL, "cert-ttl", 24*time.Hour, "lifetime of workload certificates (sidecars renew at about half of it)")
	f.DurationVar(&cfg.HealthTTL, "health-ttl", registry.DefaultTTL, "a workload without heartbeat for this long is unhealthy")
	f.BoolVar(&cfg.InsecureAdmin, "insecure-admin", false, "allow a non-loopback --admin-addr (the operator API has no authentication)")
	return cmd
}

// hostPort strips the scheme of a URL: "http://127.0.0.1:15080" → "127.0.0.1:15080".
func hostPort(url string) string {
	return strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://")
}
