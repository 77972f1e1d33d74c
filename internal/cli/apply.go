package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// document is one file's bytes and the name errors use for it.
type document struct {
	source string
	data   []byte
}

// readDocuments reads FILE, every .yaml/.yml/.json file of DIR (sorted), or stdin for "-".
func readDocuments(path string, stdin io.Reader) ([]document, error) {
	if path == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return []document{{source: "<stdin>", data: data}}, nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var files []string
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", path)
		}
	} else {
		files = []string{path}
	}
	docs := make([]document, 0, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		docs = append(docs, document{source: f, data: data})
	}
	return docs, nil
}

func newApplyCmd(g *globals) *cobra.Command {
	var file string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update mesh configuration (Istio, SMI, Linkerd, Gateway API, Trellis kinds)",
		Long: `Apply validates every document (field paths in errors) and stores all of them or none.
A reference the control plane cannot resolve yet (a route to a subset no DestinationRule
defines) is accepted with a warning, as in Istio.

Kinds: VirtualService, DestinationRule, EnvoyFilter (the local rate limit and buffer forms)
(networking.istio.io); TrafficSplit (split.smi-spec.io); ServiceProfile
(linkerd.io); HTTPRoute attached to a Service (gateway.networking.k8s.io);
RateLimit (trellis.dev/v1).`,
		Example: `  trellis apply -f examples/bookinfo/reviews-90-10.yaml
  trellis apply -f examples/traffic/
  cat vs.yaml | trellis apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := readDocuments(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			c := g.client()
			var errs []error
			for _, d := range docs {
				resp, err := c.Apply(cmd.Context(), d.data, d.source, dryRun)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				for _, w := range resp.Warnings {
					fmt.Fprintln(g.stderr, "Warning:", w)
				}
				for _, r := range resp.Results {
					if dryRun {
						r += " (dry run)"
					}
					fmt.Fprintln(g.stdout, r)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file, directory, or - for stdin")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate against the control plane, store nothing")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}
