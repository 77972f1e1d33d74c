package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
)

// certReport is what `trellis cert` prints.
type certReport struct {
	Workload  string `json:"workload"`
	Namespace string `json:"namespace"`
	From      string `json:"from"` // the sidecar admin URL
	*api.SidecarCerts
}

func newCertCmd(g *globals) *cobra.Command {
	var namespace, output string
	cmd := &cobra.Command{
		Use:   "cert WORKLOAD",
		Short: "Show a workload's certificate: chain, SPIFFE ID, expiry, trust bundle, rotations",
		Long: `Cert asks the workload's sidecar (its admin /certs, found through the control plane's
status, as explain does) for the certificate it presents: each certificate of the chain
with its subject, issuer, SPIFFE ID, serial, validity and time left; the roots of its trust
bundle with their fingerprints and expiry; when it last renewed, when it will next, and how
many times it has.`,
		Example: `  trellis cert reviews-v1
  trellis cert reviews-v1 -n default -o json | jq .chain[0].notAfter`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			st, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			w, err := findWorkload(st, args[0], namespace, cmd.Flags().Changed("namespace"))
			if err != nil {
				return err
			}
			if w.Admin == "" {
				return fmt.Errorf("workload %s/%s has no sidecar admin address", w.Namespace, w.Name)
			}
			from := adminURL(w.Admin) + "/certs"
			data, err := fetchDump(cmd.Context(), from)
			if err != nil {
				return fmt.Errorf("certificate of workload %s/%s: %w", w.Namespace, w.Name, err)
			}
			rep := certReport{Workload: w.Name, Namespace: w.Namespace, From: from, SidecarCerts: &api.SidecarCerts{}}
			if err := json.Unmarshal(data, rep.SidecarCerts); err != nil {
				return fmt.Errorf("decode %s: %w", from, err)
			}
			if output == "json" {
				return writeJSONOut(g.stdout, rep)
			}
			return printCert(g.stdout, &rep, time.Now())
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", model.DefaultNamespace, "namespace of the workload")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: tables)")
	return cmd
}

func printCert(w io.Writer, r *certReport, now time.Time) error {
	fmt.Fprintf(w, "Workload   %s/%s\n", r.Namespace, r.Workload)
	fmt.Fprintf(w, "Identity   %s\n", r.Identity)
	fmt.Fprintf(w, "Expires    %s (in %s)\n", stamp(r.NotAfter), until(r.NotAfter, now))
	fmt.Fprintf(w, "Rotations  %d; last %s (%s ago); next %s (in %s)\n\n", r.Rotations,
		stamp(r.LastRotation), roundDuration(now.Sub(r.LastRotation)), stamp(r.NextRotation), until(r.NextRotation, now))

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHAIN\tSUBJECT\tISSUER\tSPIFFE ID\tSERIAL\tNOT BEFORE\tNOT AFTER\tREMAINING")
	for i, c := range r.Chain {
		pos := "leaf"
		if i > 0 {
			pos = fmt.Sprintf("%d", i)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", pos, orDash(c.Subject), orDash(c.Issuer), orDash(c.SPIFFEID), c.Serial,
			stamp(c.NotBefore), stamp(c.NotAfter), remaining(c.NotAfter, now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Signer != "" {
		note := "the leaf's issuer"
		if len(r.Chain) < 2 || r.Chain[1].Fingerprint != r.Signer {
			note = "not the leaf's issuer: the sidecar renews from it within seconds"
		}
		fmt.Fprintf(w, "CA signer  %s (%s)\n", short(r.Signer), note)
	}
	fmt.Fprintf(w, "\nTrust bundle (changed %s; fetched every %s)\n", stamp(r.BundleUpdated), time.Duration(r.BundleRefresh))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOT\tSUBJECT\tNOT AFTER\tREMAINING")
	for _, c := range r.Bundle {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", short(c.Fingerprint), orDash(c.Subject), stamp(c.NotAfter), remaining(c.NotAfter, now))
	}
	return tw.Flush()
}

func remaining(notAfter, now time.Time) string {
	if !notAfter.After(now) {
		return "expired"
	}
	return roundDuration(notAfter.Sub(now)).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
