package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/api"
)

func newCACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The mesh's certificate authority: roots, signer, rotation",
	}
	cmd.AddCommand(newCAStatusCmd(g), newCARotateCmd(g))
	return cmd
}

func newCAStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the CA's roots, their fingerprints, validity and trust, and which one signs",
		Example: `  trellis ca status
  trellis ca status -o json | jq '.roots[] | {fingerprint, active, trustedUntil}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			st, err := g.client().CAStatus(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSONOut(g.stdout, st)
			}
			return printCAStatus(g.stdout, st, time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: a table)")
	return cmd
}

func newCARotateCmd(g *globals) *cobra.Command {
	var (
		req    api.RotateRequest
		output string
	)
	var overlap, activate time.Duration
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Add a new root: trusted at once, signing after --activate-after; the old one trusted for --overlap",
		Long: `Rotate the generated root without an outage. The new root joins the trust bundle at once
and sidecars fetch it within their bundle refresh period; it starts signing after
--activate-after (default: twice that period), and sidecars then renew their certificates
from it within seconds. The old root stays trusted for --overlap (default and minimum: the
certificate TTL plus --activate-after, so that every certificate it signed has expired
before it leaves the bundle); --force accepts shorter times.

With an operator-supplied CA (--ca-cert), rotate by restarting the control plane with the
new files, keeping the old root in --ca-bundle for the overlap.`,
		Example: `  trellis ca rotate
  trellis ca rotate --overlap 48h --activate-after 5m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			req.Overlap, req.ActivateAfter = api.Duration(overlap), api.Duration(activate)
			resp, err := g.client().RotateCA(cmd.Context(), req)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSONOut(g.stdout, resp)
			}
			now := time.Now()
			fmt.Fprintf(g.stdout, "New root %s (%s) is trusted now and signs from %s (in %s).\n",
				short(resp.NewRoot.Fingerprint), resp.NewRoot.Subject, stamp(resp.ActivateAt), until(resp.ActivateAt, now))
			fmt.Fprintf(g.stdout, "The previous roots stay trusted until %s (in %s).\n\n", stamp(resp.OldTrustedUntil), until(resp.OldTrustedUntil, now))
			return printCAStatus(g.stdout, &resp.Status, now)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&overlap, "overlap", 0, "how long the old roots stay trusted (default: certificate TTL + --activate-after)")
	f.DurationVar(&activate, "activate-after", 0, "how long the new root is only trusted before it signs (default: 2× the bundle refresh period)")
	f.BoolVar(&req.Force, "force", false, "accept an overlap or activation delay shorter than safe")
	f.StringVarP(&output, "output", "o", "", "output format: json (default: text)")
	return cmd
}

func printCAStatus(w io.Writer, st *api.CAStatus, now time.Time) error {
	source := "generated (roots kept in the control plane's store)"
	if st.Source == api.CASourceOperator {
		source = "operator-supplied (--ca-cert)"
	}
	fmt.Fprintf(w, "Trust domain  %s\nCA            %s\n", st.TrustDomain, source)
	fmt.Fprintf(w, "Signer        %s  %s  expires %s\n", short(st.Signer.Fingerprint), st.Signer.Subject, stamp(st.Signer.NotAfter))
	for _, c := range st.Chain {
		if c.Fingerprint != st.Signer.Fingerprint {
			fmt.Fprintf(w, "  then        %s  %s  expires %s\n", short(c.Fingerprint), c.Subject, stamp(c.NotAfter))
		}
	}
	fmt.Fprintf(w, "Certificates  live %s; sidecars fetch the bundle every %s\n\n", time.Duration(st.LeafTTL), time.Duration(st.BundleRefresh))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOT\tSUBJECT\tNOT BEFORE\tNOT AFTER\tTRUSTED UNTIL\tSTATE")
	for _, r := range st.Roots {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", short(r.Fingerprint), r.Subject, stamp(r.NotBefore), stamp(r.NotAfter),
			stamp(r.TrustedUntil), rootState(r, now))
	}
	return tw.Flush()
}

func rootState(r api.CARoot, now time.Time) string {
	switch {
	case !r.Trusted:
		return "no longer trusted"
	case r.Active:
		return "signing"
	case !r.ActiveFrom.IsZero() && r.ActiveFrom.After(now):
		return "trusted; signs in " + until(r.ActiveFrom, now)
	case r.TrustedUntil.Before(r.NotAfter):
		return "trusted for " + until(r.TrustedUntil, now) + " (superseded)"
	}
	return "trusted"
}

func checkOutput(o string) error {
	if o != "" && o != "json" {
		return fmt.Errorf("-o %q: want json", o)
	}
	return nil
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// short is the first 16 hex digits of a fingerprint.
func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// until is a rounded duration from now to t ("expired 3s ago" when past).
func until(t, now time.Time) string {
	d := t.Sub(now)
	if d < 0 {
		return "the past (" + roundDuration(-d).String() + " ago)"
	}
	return roundDuration(d).String()
}

// roundDuration is d for people: seconds under an hour, minutes under two
// days, then days.
func roundDuration(d time.Duration) humanDuration {
	switch {
	case d >= 48*time.Hour:
		return humanDuration{d: d, days: int64(d / (24 * time.Hour))}
	case d >= time.Hour:
		return humanDuration{d: d.Round(time.Minute)}
	}
	return humanDuration{d: d.Round(time.Second)}
}

type humanDuration struct {
	d    time.Duration
	days int64
}

func (h humanDuration) String() string {
	if h.days > 0 {
		return fmt.Sprintf("%dd", h.days)
	}
	return h.d.String()
}
