package proxy

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// translatePathRewrite translates prefix_rewrite and regex_rewrite (only
// one may be set; nil when neither is).
func translatePathRewrite(prefix string, rr *matcherv3.RegexMatchAndSubstitute) (*pathRewrite, error) {
	switch {
	case prefix != "" && rr != nil:
		return nil, fmt.Errorf("prefix_rewrite, regex_rewrite: only one may be set")
	case prefix != "":
		if !strings.HasPrefix(prefix, "/") {
			return nil, fmt.Errorf("prefix_rewrite: %q must start with /", prefix)
		}
		if err := checkPathChars(prefix); err != nil {
			return nil, fmt.Errorf("prefix_rewrite: %w", err)
		}
		return &pathRewrite{prefix: prefix}, nil
	case rr != nil:
		expr := rr.GetPattern().GetRegex()
		if expr == "" {
			return nil, fmt.Errorf("regex_rewrite.pattern.regex: empty regex")
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite.pattern.regex: invalid RE2 %q: %w", expr, err)
		}
		tmpl, err := re2Substitution(rr.GetSubstitution(), re.NumSubexp())
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite.substitution: %w", err)
		}
		if err := checkPathChars(rr.GetSubstitution()); err != nil {
			return nil, fmt.Errorf("regex_rewrite.substitution: %w", err)
		}
		return &pathRewrite{regex: re, template: tmpl}, nil
	}
	return nil, nil
}

// re2Substitution converts an RE2 rewrite string (\0..\9 for groups, \\
// for a backslash) to Go's Expand syntax, refusing what RE2 refuses: other
// escapes, and groups the pattern does not have.
func re2Substitution(s string, groups int) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '$':
			b.WriteString("$$")
		case c != '\\':
			b.WriteByte(c)
		case i+1 < len(s) && s[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case i+1 < len(s) && isDigit(s[i+1]):
			n := int(s[i+1] - '0')
			if n > groups {
				return "", fmt.Errorf("%q refers to group \\%d, the pattern has %d", s, n, groups)
			}
			b.WriteString("${" + strconv.Itoa(n) + "}")
			i++
		default:
			return "", fmt.Errorf("%q: invalid escape (\\0-\\9 and \\\\ are supported)", s)
		}
	}
	return b.String(), nil
}

// checkPathChars refuses bytes that cannot appear in a request target.
func checkPathChars(p string) error {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f || c == '#' {
			return fmt.Errorf("invalid byte %#x in %q", c, p)
		}
	}
	return nil
}

var redirectCodes = map[routev3.RedirectAction_RedirectResponseCode]int{
	routev3.RedirectAction_MOVED_PERMANENTLY:  http.StatusMovedPermanently,
	routev3.RedirectAction_FOUND:              http.StatusFound,
	routev3.RedirectAction_SEE_OTHER:          http.StatusSeeOther,
	routev3.RedirectAction_TEMPORARY_REDIRECT: http.StatusTemporaryRedirect,
	routev3.RedirectAction_PERMANENT_REDIRECT: http.StatusPermanentRedirect,
}

func translateRedirect(r *routev3.RedirectAction) (*localRoute, error) {
	code, ok := redirectCodes[r.GetResponseCode()]
	if !ok {
		return nil, fmt.Errorf("response_code: %s not supported", r.GetResponseCode())
	}
	rc := &redirectConfig{host: r.GetHostRedirect(), stripQuery: r.GetStripQuery()}
	switch s := r.GetSchemeRewriteSpecifier().(type) {
	case nil:
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			rc.scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		if err := checkScheme(s.SchemeRedirect); err != nil {
			return nil, fmt.Errorf("scheme_redirect: %w", err)
		}
		rc.scheme = s.SchemeRedirect
	}
	if rc.host != "" {
		if _, err := hostLine(rc.host); err != nil {
			return nil, fmt.Errorf("host_redirect: %w", err)
		}
	}
	if p := r.GetPortRedirect(); p != 0 {
		if p > 65535 {
			return nil, fmt.Errorf("port_redirect: %d out of range", p)
		}
		rc.port = ":" + strconv.FormatUint(uint64(p), 10)
	}
	switch p := r.GetPathRewriteSpecifier().(type) {
	case nil:
	case *routev3.RedirectAction_PathRedirect:
		if err := checkPathChars(p.PathRedirect); err != nil {
			return nil, fmt.Errorf("path_redirect: %w", err)
		}
		rc.path = p.PathRedirect
		rc.pathHasQuery = strings.Contains(p.PathRedirect, "?")
	case *routev3.RedirectAction_PrefixRewrite:
		rw, err := translatePathRewrite(p.PrefixRewrite, nil)
		if err != nil {
			return nil, err
		}
		rc.rewrite = rw
	case *routev3.RedirectAction_RegexRewrite:
		rw, err := translatePathRewrite("", p.RegexRewrite)
		if err != nil {
			return nil, err
		}
		rc.rewrite = rw
	default:
		return nil, fmt.Errorf("path_rewrite_specifier: %T not supported", p)
	}
	return &localRoute{code: code, redirect: rc}, nil
}

func checkScheme(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && (isDigit(c) || c == '+' || c == '-' || c == '.')) {
			return fmt.Errorf("%q is not a valid scheme", s)
		}
	}
	return nil
}

func translateDirectResponse(d *routev3.DirectResponseAction, maxBody uint32) (*localRoute, error) {
	if d.GetStatus() < 200 || d.GetStatus() >= 600 {
		return nil, fmt.Errorf("status: %d, want 200..599", d.GetStatus())
	}
	if d.GetBodyFormat() != nil {
		return nil, fmt.Errorf("body_format: not supported")
	}
	l := &localRoute{code: int(d.GetStatus())}
	if b := d.GetBody(); b != nil {
		switch s := b.GetSpecifier().(type) {
		case *corev3.DataSource_InlineString:
			l.body = s.InlineString
		case *corev3.DataSource_InlineBytes:
			l.body = string(s.InlineBytes)
		default:
			return nil, fmt.Errorf("body: %T not supported, want inline_string or inline_bytes", s)
		}
		if b.GetWatchedDirectory() != nil {
			return nil, fmt.Errorf("body.watched_directory: not supported")
		}
	}
	if uint64(len(l.body)) > uint64(maxBody) {
		return nil, fmt.Errorf("body: %d bytes, maximum is %d (max_direct_response_body_size_bytes)", len(l.body), maxBody)
	}
	return l, nil
}

func translateMirrorPolicy(mp *routev3.RouteAction_RequestMirrorPolicy) (*mirrorPolicy, error) {
	if mp.GetCluster() == "" {
		return nil, fmt.Errorf("cluster: empty (cluster_header is not supported)")
	}
	if mp.GetClusterHeader() != "" || len(mp.GetRequestHeadersMutations()) > 0 || mp.GetHostRewriteLiteral() != "" {
		return nil, fmt.Errorf("cluster_header/request_headers_mutations/host_rewrite_literal: not supported")
	}
	p := &mirrorPolicy{cluster: mp.GetCluster(), fraction: fraction{num: 100, den: 100}, noSuffix: mp.GetDisableShadowHostSuffixAppend()}
	if rf := mp.GetRuntimeFraction(); rf != nil {
		f, err := translateFraction(rf.GetDefaultValue())
		if err != nil {
			return nil, fmt.Errorf("runtime_fraction.default_value.%w", err)
		}
		p.fraction = f
	}
	return p, nil
}
