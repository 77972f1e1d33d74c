package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/model"
)

func newValidateCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate -f FILE|DIR|-",
		Short: "Check documents offline, by the same validation as apply",
		Long: `Validate decodes and checks every document without a control plane. It exits
non-zero and names the document and field of every problem.`,
		Example: `  trellis validate -f examples/bookinfo/
  trellis validate -f my-virtualservice.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := readDocuments(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			// Later documents replace earlier ones with the same key, as
			// applying them in order would.
			byKey := map[model.Key]int{}
			seenIn := map[model.Key]string{}
			var all []model.Object
			failed := false
			for _, d := range docs {
				objs, warnings, err := model.DecodeAndValidate(d.data, d.source)
				for _, w := range warnings {
					fmt.Fprintln(g.stderr, "Warning:", w)
				}
				if err != nil {
					fmt.Fprintln(g.stderr, err)
					failed = true
					continue
				}
				for _, o := range objs {
					fmt.Fprintf(g.stdout, "%s: %s valid\n", d.source, o.Key())
					if i, dup := byKey[o.Key()]; dup {
						fmt.Fprintf(g.stderr, "Warning: %s: %s also defined in %s; applying both keeps the last\n", d.source, o.Key(), seenIn[o.Key()])
						all[i] = o
					} else {
						byKey[o.Key()] = len(all)
						all = append(all, o)
					}
					seenIn[o.Key()] = d.source
				}
			}
			for _, w := range model.CheckReferences(all) {
				fmt.Fprintln(g.stderr, "Warning:", w)
			}
			if failed {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file, directory, or - for stdin")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}
