// Package cli holds the trellis commands, one file per command.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/api"
)

// exitError carries an exit code without printing twice.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// Main runs the CLI and returns the process exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(os.Stdout, os.Stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	return 1
}

// globals are the flags every command shares.
type globals struct {
	control  string
	logLevel string
	stdout   io.Writer
	stderr   io.Writer
}

func (g *globals) client() *api.Client { return api.NewClient(g.control, os.Getenv(api.EnvAdminToken)) }

func (g *globals) logger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "trellis",
		Short: "Trellis: a service mesh in one binary (control plane, sidecar, CLI)",
		Long: `Trellis gives every service mutual TLS with SPIFFE identities, traffic management
and visibility, without changing application code.

Run a whole mesh on this machine:
  trellis up -f examples/bookinfo/mesh.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	defControl := os.Getenv(api.EnvControl)
	if defControl == "" {
		defControl = api.DefaultControl
	}
	root.PersistentFlags().StringVar(&g.control, "control", defControl, "admin API URL of the control plane (env "+api.EnvControl+")")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(
		newUpCmd(g),
		newControlCmd(g),
		newProxyCmd(g),
		newApplyCmd(g),
		newGetCmd(g),
		newDeleteCmd(g),
		newStatusCmd(g),
		newValidateCmd(g),
		newExplainCmd(g),
		newCertCmd(g),
		newCACmd(g),
		newDemoAppCmd(g),
	)
	return root
}

// splitKV parses "k=v" into its parts.
func splitKV(flag, s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("--%s %q: want NAME=VALUE", flag, s)
	}
	return k, v, nil
}
