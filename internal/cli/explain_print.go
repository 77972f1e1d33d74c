package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/trellis-mesh/trellis/internal/proxy"
)

// printExplain writes the readable form of an explanation: sections of
// "key: value" lines and small tables.
func printExplain(out io.Writer, rep *explainReport) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	ex := rep.Explanation
	kv := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }

	src := rep.Config.Source + " config from " + rep.Config.From
	if rep.Workload != "" {
		src = rep.subject() + ": " + src
	}
	if rep.Config.State != "" {
		src += " (" + rep.Config.State + ")"
	}
	kv("Config:", "%s", src)
	if rep.Config.Note != "" {
		kv("", "note: %s", rep.Config.Note)
	}
	l := ex.Listener
	where := l.Name + " on " + l.Address + " (" + l.Kind
	if l.RouteConfig != "" {
		where += ", routes " + l.RouteConfig
	}
	kv("Listener:", "%s)", where)
	if ex.Outcome != proxy.OutcomeTCP {
		r := ex.Request
		kv("Request:", "%s %s  Host: %s", r.Method, r.Target, r.Authority)
		for _, name := range sortedKeys(r.Headers) {
			for _, v := range r.Headers[name] {
				kv("", "%s: %s", name, v)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ex.Routes) > 0 {
		fmt.Fprintln(out, "\nRoutes (in order, first match wins):")
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tROUTE\tRESULT")
		for _, v := range ex.Routes {
			res := "no: " + v.Reason
			if v.Matched {
				res = "MATCHED"
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\n", v.Index, valueOrDash(v.Name), res)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	printMatchedRoute(out, ex)
	for i := range ex.Clusters {
		printCluster(out, &ex.Clusters[i], ex.Outcome == proxy.OutcomeTCP)
	}
	printInbound(out, rep.Inbound)
	if len(ex.Notes) > 0 {
		fmt.Fprintln(out, "\nNotes:")
		for _, n := range ex.Notes {
			fmt.Fprintln(out, "  - "+n)
		}
	}
	return nil
}

func printMatchedRoute(out io.Writer, ex *proxy.Explanation) {
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	kv := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	switch {
	case ex.Outcome == proxy.OutcomeTCP:
		kv("Outcome:", "TCP proxy to %s", plural(len(ex.Clusters), "cluster"))
		return
	case ex.Route == nil:
		kv("Outcome:", "no route matched: the proxy answers %d (x-trellis-reason: %s)", ex.Reply.Status, ex.Reply.Reason)
		return
	}
	rt := ex.Route
	if len(ex.Routes) > 0 {
		for _, c := range ex.Routes[len(ex.Routes)-1].Checks {
			kv("Matched on:", "%s %s (got %s)", c.Field, c.Want, c.Got)
		}
	}
	switch ex.Outcome {
	case proxy.OutcomeForward:
		split := ""
		if rt.Action == "weighted_clusters" {
			split = ", split by weight"
		}
		kv("Outcome:", "forward to %s%s", plural(len(ex.Clusters), "cluster"), split)
	case proxy.OutcomeRedirect:
		kv("Outcome:", "redirect %d to %s", ex.Reply.Status, ex.Reply.Location)
	case proxy.OutcomeDirectResponse:
		body := ""
		if ex.Reply.Body != "" {
			body = fmt.Sprintf(", body %q", ex.Reply.Body)
		}
		loc := ""
		if ex.Reply.Location != "" {
			loc = ", Location " + ex.Reply.Location
		}
		kv("Outcome:", "direct response %d%s%s", ex.Reply.Status, body, loc)
	}
	if ex.Reply != nil {
		for _, op := range ex.Reply.ResponseHeaders {
			kv("", "response header %s", headerOp(op))
		}
	}
	if ex.Outcome == proxy.OutcomeForward {
		kv("Timeout:", "%s", rt.Timeout)
		kv("Retries:", "%s", retryLine(rt.Retry))
		if rt.Retry != nil && len(rt.Retry.RetriableRequestHeaders) > 0 {
			kv("", "only requests matching: %s", strings.Join(rt.Retry.RetriableRequestHeaders, " or "))
		}
	}
	for _, h := range rt.Hash {
		line := h.Kind
		if h.Name != "" {
			line += " " + h.Name
		}
		if h.CookieTTL != "" {
			line += " (ttl " + h.CookieTTL + ")"
		}
		kv("Hash policy:", "%s = %s", line, h.Value)
	}
	if len(rt.Filters) == 0 {
		kv("Filters:", "none")
	}
	for i := range rt.Filters {
		k := ""
		if i == 0 {
			k = "Filters:"
		}
		kv(k, "%s", filterLine(&rt.Filters[i]))
	}
	for _, m := range rt.Mirrors {
		missing := ""
		if m.Missing {
			missing = " (cluster not in the config: copies are dropped)"
		}
		kv("Mirror:", "%s %.4g%% of requests, authority %s%s", m.Cluster, m.Percent, m.Authority, missing)
	}
}

func retryLine(r *proxy.RetryDetail) string {
	if r == nil {
		return "none (no retry policy)"
	}
	s := fmt.Sprintf("up to %d on %s", r.NumRetries, strings.Join(r.RetryOn, ","))
	if len(r.RetriableStatusCodes) > 0 {
		codes := make([]string, len(r.RetriableStatusCodes))
		for i, c := range r.RetriableStatusCodes {
			codes[i] = fmt.Sprint(c)
		}
		s += " (status " + strings.Join(codes, ",") + ")"
	}
	s += "; per try timeout " + r.PerTryTimeout + "; back-off " + r.BackOff
	if r.PreviousHosts {
		s += "; other endpoints first"
	}
	if r.Applies {
		return s + "; applies to this request"
	}
	return s + "; NOT for this request: " + r.Reason
}

func filterLine(f *proxy.FilterDetail) string {
	s := f.Filter + " (" + f.Kind + ", " + f.Level + "): "
	switch {
	case f.Fault != nil:
		var parts []string
		if f.Fault.Delay != "" {
			parts = append(parts, fmt.Sprintf("delay %s on %.4g%%", f.Fault.Delay, f.Fault.DelayPercent))
		}
		switch {
		case f.Fault.AbortGRPCStatus != nil:
			parts = append(parts, fmt.Sprintf("abort with grpc-status %d on %.4g%%", *f.Fault.AbortGRPCStatus, f.Fault.AbortPercent))
		case f.Fault.AbortStatus != 0:
			parts = append(parts, fmt.Sprintf("abort %d on %.4g%%", f.Fault.AbortStatus, f.Fault.AbortPercent))
		}
		if f.Fault.UpstreamCluster != "" {
			parts = append(parts, "only to "+f.Fault.UpstreamCluster)
		}
		if len(f.Fault.Headers) > 0 {
			parts = append(parts, "only when "+strings.Join(f.Fault.Headers, " and "))
		}
		s += strings.Join(parts, ", ")
	case f.JWT != nil:
		s += "token " + f.JWT.Result
		if f.JWT.Principal != "" {
			s += ", principal " + f.JWT.Principal
		}
		if f.JWT.Error != "" {
			s += " (" + f.JWT.Error + ")"
		}
		if f.JWT.Result == "invalid" {
			return s + ": 401"
		}
		return s
	case f.RBAC != nil:
		verdict := "allowed"
		if !f.RBAC.Allowed {
			verdict = "DENIED (403)"
		}
		switch {
		case f.RBAC.Policy != "":
			s += fmt.Sprintf("%s by policy %s (%s, %d policies)", verdict, f.RBAC.Policy, f.RBAC.Action, f.RBAC.Policies)
		default:
			s += fmt.Sprintf("%s: no policy matched (%s, %d policies)", verdict, f.RBAC.Action, f.RBAC.Policies)
		}
		return s
	case f.Limit != nil:
		s += fmt.Sprintf("%d tokens, +%d every %s, over the limit %d", f.Limit.MaxTokens, f.Limit.TokensPerFill, f.Limit.FillInterval, f.Limit.Status)
		if !f.Limit.Enforced {
			s += " (not enforced)"
		}
	case f.MaxRequestBytes > 0:
		s += fmt.Sprintf("the whole request body is read first, at most %d bytes (413 beyond)", f.MaxRequestBytes)
	}
	if f.Applies {
		return s + "; applies"
	}
	if f.Fault == nil && f.Limit == nil {
		return s + f.Reason
	}
	return s + "; " + f.Reason
}

func printCluster(out io.Writer, c *proxy.ClusterDetail, tcp bool) {
	share := ""
	if c.Weight > 0 {
		share = fmt.Sprintf("  weight %d (%.4g%%)", c.Weight, 100*c.Probability)
	}
	fmt.Fprintf(out, "\nCluster %s%s\n", c.Name, share)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	kv := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, a...)) }
	switch c.Result {
	case proxy.ClusterNotFound:
		kv("result:", "not in the config: the proxy answers 503 (x-trellis-reason: %s)", c.Result)
		_ = tw.Flush()
		return
	case proxy.ClusterNoneHealthy:
		kv("result:", "no usable endpoint: the proxy answers 503 (x-trellis-reason: %s)", c.Result)
	}
	if c.Service != "" {
		subset := ""
		if c.Subset != "" {
			subset = " subset " + c.Subset
		}
		kv("service:", "%s%s port %d", c.Service, subset, c.Port)
	}
	kv("protocol:", "%s, connect timeout %s", c.Protocol, c.ConnectTimeout)
	if len(c.SecureNaming) > 0 {
		kv("served by:", "%s (mTLS, secure naming)", strings.Join(c.SecureNaming, ", "))
	}
	lbLine := c.LoadBalancer.Policy
	if c.Pick != "" {
		lbLine += ": " + c.Pick
	}
	kv("balancer:", "%s", lbLine)
	if c.Endpoint != "" {
		kv("endpoint:", "%s", c.Endpoint)
	}
	for i, e := range c.Endpoints {
		k := ""
		if i == 0 {
			k = "endpoints:"
		}
		usable := "usable"
		if !e.Usable {
			usable = "not used"
		}
		kv(k, "%s %s %s %s", e.Address, e.Health, valueOrDash(e.Workload), usable)
	}
	if len(c.Endpoints) == 0 {
		kv("endpoints:", "none")
	}
	b := c.Breakers
	kv("circuit breakers:", "max connections %d, pending %d, requests %d, retries %d", b.MaxConnections, b.MaxPendingRequests, b.MaxRequests, b.MaxRetries)
	if o := c.Outlier; o != nil {
		kv("outlier detection:", "eject after %d consecutive 5xx (enforced %d%%) or %d gateway failures (enforced %d%%); every %s, for %s and up, at most %d%% ejected",
			o.Consecutive5xx, o.Enforcing5xx, o.ConsecutiveGatewayFailure, o.EnforcingGatewayFailure, o.Interval, o.BaseEjectionTime, o.MaxEjectionPercent)
	} else {
		kv("outlier detection:", "none")
	}
	if !tcp {
		rb := c.RetryBudget
		kv("retry budget:", "%.4g%% of requests + %.4g/s over %s", 100*rb.RetryRatio, rb.MinRetriesPerSecond, rb.TTL)
	}
	if u := c.Upstream; u != nil {
		kv("upstream gets:", "%s  Host: %s", u.Target, u.Authority)
		for _, op := range u.RequestHeaders {
			kv("", "request header %s", headerOp(op))
		}
		for _, op := range u.ResponseHeaders {
			kv("", "response header %s", headerOp(op))
		}
	}
	_ = tw.Flush()
}

// printInbound shows the destination sidecars' side: their inbound route
// and filters (authentication, authorization, local rate limits).
func printInbound(out io.Writer, inbound []proxy.InboundDetail) {
	if len(inbound) == 0 {
		return
	}
	fmt.Fprintln(out, "\nAt the destination (inbound sidecar):")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, in := range inbound {
		route := "route " + in.Route
		if in.Status != 0 {
			route = fmt.Sprintf("no route: %d", in.Status)
		}
		if in.Path != "" {
			route += ", the app receives " + in.Path
		}
		if in.Denied != 0 {
			route += fmt.Sprintf(", refused with %d", in.Denied)
		}
		fmt.Fprintf(tw, "  %s\t%s on %s, %s\n", in.Workload, in.Listener, in.Address, route)
		for i := range in.Filters {
			fmt.Fprintf(tw, "  \t%s\n", filterLine(&in.Filters[i]))
		}
		if len(in.Filters) == 0 {
			fmt.Fprintf(tw, "  \tno authentication, authorization, rate limit or fault\n")
		}
	}
	_ = tw.Flush()
}

func headerOp(op proxy.HeaderOp) string {
	if op.Op == "remove" {
		return "remove " + op.Name
	}
	return fmt.Sprintf("%s %s: %s", op.Op, op.Name, op.Value)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func valueOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
