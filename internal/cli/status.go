package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Workloads, their addresses, identities and config sync state",
		Example: `  trellis status
  trellis status -o json | jq '.workloads[] | {name, config}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			case "":
			default:
				return fmt.Errorf("-o %q: want json", output)
			}
			if st.Entry != "" {
				fmt.Fprintf(g.stdout, "Entry: %s\n\n", st.Entry)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WORKLOAD\tSERVICE\tLABELS\tREADY\tCONFIG\tAPP\tINBOUND\tADMIN\tIDENTITY")
			for _, w := range st.Workloads {
				labels := make([]string, 0, len(w.Labels))
				for k, v := range w.Labels {
					labels = append(labels, k+"="+v)
				}
				sort.Strings(labels)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\n", w.Name, w.Service, strings.Join(labels, ","),
					w.Ready, w.Config.State, w.App, w.Inbound, w.Admin, w.Identity)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: a table)")
	return cmd
}
