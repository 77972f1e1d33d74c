package model

import (
	"fmt"
	"slices"
	"strings"
)

// RateLimitHeader is a header added to the reply of a request the limit
// refuses (Envoy's LocalRateLimit.response_headers_to_add); allowed
// requests' responses do not get it. Value is literal (a "%" is a "%"; the
// compiler escapes it for Envoy) and may be empty.
//
//	responseHeadersToAdd:
//	- name: x-local-rate-limit
//	  value: "true"
//	  appendAction: OVERWRITE_IF_EXISTS_OR_ADD   # optional
type RateLimitHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// AppendAction is Envoy's HeaderValueOption.append_action, what happens
	// when the reply already has the header: APPEND_IF_EXISTS_OR_ADD (the
	// default), ADD_IF_ABSENT, OVERWRITE_IF_EXISTS_OR_ADD or
	// OVERWRITE_IF_EXISTS (only replaces a header the reply has).
	AppendAction string `json:"appendAction,omitempty"`
}

// Envoy's HeaderValueOption.HeaderAppendAction names, in enum order.
const (
	AppendIfExistsOrAdd    = "APPEND_IF_EXISTS_OR_ADD"
	AddIfAbsent            = "ADD_IF_ABSENT"
	OverwriteIfExistsOrAdd = "OVERWRITE_IF_EXISTS_OR_ADD"
	OverwriteIfExists      = "OVERWRITE_IF_EXISTS"
)

var headerAppendActions = []string{AppendIfExistsOrAdd, AddIfAbsent, OverwriteIfExistsOrAdd, OverwriteIfExists}

// MaxRateLimitHeaders is the most response_headers_to_add Envoy accepts.
const MaxRateLimitHeaders = 10

func (v *validator) rateLimitHeaders(p string, hs []RateLimitHeader) {
	if len(hs) > MaxRateLimitHeaders {
		v.errf(p, "%d headers, at most %d (Envoy's limit)", len(hs), MaxRateLimitHeaders)
	}
	for i := range hs {
		h := &hs[i]
		hp := fmt.Sprintf("%s[%d]", p, i)
		if r := replyHeaderName(h.Name); r != "" {
			v.errf(hp+".name", "%s", r)
		}
		if r := headerValueProblem(h.Value); r != "" {
			v.errf(hp+".value", "%s", r)
		}
		if h.AppendAction != "" && !slices.Contains(headerAppendActions, h.AppendAction) {
			v.errf(hp+".appendAction", "%q is not one of %v", h.AppendAction, headerAppendActions)
		}
	}
}

// replyHeaderName says why name cannot be added to a reply, or "": it must
// be an HTTP token, and neither a pseudo-header, Host, nor a hop-by-hop or
// framing header, which the proxy owns.
func replyHeaderName(name string) string {
	switch {
	case name == "":
		return "required"
	case strings.HasPrefix(name, ":"):
		return fmt.Sprintf("pseudo-header %q cannot be added", name)
	case !headerNameRegex.MatchString(name):
		return fmt.Sprintf("%q is not an HTTP header name", name)
	}
	switch strings.ToLower(name) {
	case "host":
		return fmt.Sprintf("%q cannot be added to a response", name)
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade",
		"trailer", "content-length", "expect", "proxy-authenticate", "proxy-authorization":
		return fmt.Sprintf("hop-by-hop or framing header %q cannot be added", name)
	}
	return ""
}

// headerValueProblem says why v is not a header value, or "": no control
// characters other than tab.
func headerValueProblem(v string) string {
	if i := strings.IndexFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }); i >= 0 {
		return fmt.Sprintf("control character %#x at byte %d", v[i], i)
	}
	return ""
}
