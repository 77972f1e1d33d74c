package cli

import (
	"fmt"
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
	var insecureAdmin bool
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run the control plane alone",
		Long: `Run the control plane: store, registry, CA, compiler, xDS server and admin API.

The admin API listens on loopback unless --admin-token-file is given; then every
operator request must carry "Authorization: Bearer <token>" (the CLI reads
` + api.EnvAdminToken + `), and it may listen elsewhere.

The CA generates its root on first start and keeps it in the store ("trellis ca
rotate" replaces it without an outage). --ca-cert/--ca-key use an operator's root,
or an intermediate: --ca-cert holds it first, then its parents; its root is the
last of them or in --ca-bundle, which may also hold other roots to keep trusted.`,
		Example: `  trellis control --data-dir /var/lib/trellis
  trellis control --admin-addr 127.0.0.1:15080 --xds-addr 127.0.0.1:15012 --cert-ttl 1h
  trellis control --ca-cert intermediate-chain.pem --ca-key intermediate.key --ca-bundle roots.pem
  trellis control --admin-addr 10.0.0.5:15080 --admin-token-file /etc/trellis/admin-token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if insecureAdmin {
				return fmt.Errorf("--insecure-admin was removed: give --admin-token-file to listen on a non-loopback address")
			}
			if cfg.GCPercent < 0 {
				return fmt.Errorf("--gc-percent: %d: want a positive percent, or 0 for the default (%d, or $GOGC if set)", cfg.GCPercent, controlplane.DefaultGCPercent)
			}
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
	f.StringVar(&cfg.AdminAddr, "admin-addr", hostPort(api.DefaultControl), "admin HTTP API address (loopback only, unless --admin-token-file)")
	f.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "file holding the token operator requests must bear (Authorization: Bearer); CLI env "+api.EnvAdminToken)
	f.StringVar(&cfg.XDSAddr, "xds-addr", api.DefaultXDSAddr, "xDS (ADS gRPC) address")
	f.StringVar(&cfg.TrustDomain, "trust-domain", model.DefaultTrustDomain, "SPIFFE trust domain")
	f.DurationVar(&cfg.CertTTL, "cert-ttl", 24*time.Hour, "lifetime of workload certificates (sidecars renew at about half of it)")
	f.DurationVar(&cfg.HealthTTL, "health-ttl", registry.DefaultTTL, "a workload without heartbeat for this long is unhealthy")
	f.StringVar(&cfg.CA.Cert, "ca-cert", "", "operator CA: PEM root, or intermediate followed by its parents (default: a generated root kept in the store)")
	f.StringVar(&cfg.CA.Key, "ca-key", "", "operator CA: PEM private key of the first --ca-cert certificate")
	f.StringVar(&cfg.CA.Bundle, "ca-bundle", "", "operator CA: PEM roots to trust (the intermediate's root, and any root kept trusted during a change)")
	f.DurationVar(&cfg.BundleRefresh, "bundle-refresh", 30*time.Second, "how often sidecars fetch the trust bundle (a rotated root signs after twice this by default)")
	f.IntVar(&cfg.GCPercent, "gc-percent", 0, fmt.Sprintf("Go GC percent (GOGC) while the control plane runs; 0: $GOGC if set, else %d (less memory for a little CPU: docs/perf.md)", controlplane.DefaultGCPercent))
	f.BoolVar(&insecureAdmin, "insecure-admin", false, "removed: use --admin-token-file")
	_ = f.MarkHidden("insecure-admin")
	return cmd
}

// hostPort strips the scheme of a URL: "http://127.0.0.1:15080" → "127.0.0.1:15080".
func hostPort(url string) string {
	return strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://")
}
