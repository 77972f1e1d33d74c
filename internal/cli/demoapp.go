package cli

import (
	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/examples/demoapp"
)

func newDemoAppCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "demo-app NAME",
		Short:  "Run a built-in demo app (productpage, details, reviews, ratings, grpc-echo, tcp-echo, ...)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return demoapp.Run(cmd.Context(), args[0], g.logger())
		},
	}
}
