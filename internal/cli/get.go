package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/model"
)

func newGetCmd(g *globals) *cobra.Command {
	var namespace, output string
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Show stored configuration (any kind apply accepts) or Workloads",
		Example: `  trellis get virtualservices
  trellis get vs reviews -o yaml
  trellis get destinationrule reviews -o json
  trellis get ratelimits`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			data, err := g.client().Get(cmd.Context(), args[0], namespace, name)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				var buf bytes.Buffer
				if err := json.Indent(&buf, data, "", "  "); err != nil {
					return err
				}
				buf.WriteByte('\n')
				_, err := g.stdout.Write(buf.Bytes())
				return err
			case "yaml":
				out, err := yaml.JSONToYAML(data)
				if err != nil {
					return err
				}
				_, err = g.stdout.Write(out)
				return err
			case "":
				return printTable(g, data, name != "")
			default:
				return fmt.Errorf("-o %q: want yaml or json", output)
			}
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", model.DefaultNamespace, "namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json (default: a table)")
	return cmd
}

func printTable(g *globals, data []byte, single bool) error {
	type item struct {
		Kind     string           `json:"kind"`
		Metadata model.ObjectMeta `json:"metadata"`
	}
	var items []item
	if single {
		var it item
		if err := json.Unmarshal(data, &it); err != nil {
			return err
		}
		items = []item{it}
	} else {
		var list struct {
			Items []item `json:"items"`
		}
		if err := json.Unmarshal(data, &list); err != nil {
			return err
		}
		items = list.Items
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME")
	for _, it := range items {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", it.Kind, it.Metadata.NamespaceOrDefault(), it.Metadata.Name)
	}
	return tw.Flush()
}

func newDeleteCmd(g *globals) *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "delete KIND NAME",
		Short: "Delete a stored configuration object (any kind apply accepts)",
		Example: `  trellis delete virtualservice reviews
  trellis delete trafficsplit website`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().Delete(cmd.Context(), args[0], namespace, args[1]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s %s/%s deleted\n", args[0], namespace, args[1])
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", model.DefaultNamespace, "namespace")
	return cmd
}
