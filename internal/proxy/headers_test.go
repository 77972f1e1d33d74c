package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"sort"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func hvo(key, value string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, AppendAction: action}
}

const (
	appendOrAdd    = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	addAbsent      = corev3.HeaderValueOption_ADD_IF_ABSENT
	overwriteOrAdd = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	overwriteIf    = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS
)

// TestHeaderMutation checks Envoy's HeaderParser semantics on both request
// paths: removals first, then each level's decisions against the headers
// after its removals, overwrites, then appends; later levels win.
func TestHeaderMutation(t *testing.T) {
	tests := []struct {
		name   string
		in     [][2]string
		levels []headerConfig
		want   map[string][]string
	}{
		{
			name:   "append adds another field",
			in:     [][2]string{{"X-A", "1"}},
			levels: []headerConfig{{add: []*corev3.HeaderValueOption{hvo("x-a", "2", appendOrAdd), hvo("x-b", "3", appendOrAdd)}}},
			want:   map[string][]string{"X-A": {"1", "2"}, "X-B": {"3"}},
		},
		{
			name:   "add if absent",
			in:     [][2]string{{"X-A", "1"}},
			levels: []headerConfig{{add: []*corev3.HeaderValueOption{hvo("x-a", "2", addAbsent), hvo("x-b", "3", addAbsent)}}},
			want:   map[string][]string{"X-A": {"1"}, "X-B": {"3"}},
		},
		{
			name:   "overwrite or add",
			in:     [][2]string{{"X-A", "1"}, {"X-A", "2"}},
			levels: []headerConfig{{add: []*corev3.HeaderValueOption{hvo("x-a", "3", overwriteOrAdd), hvo("x-b", "4", overwriteOrAdd)}}},
			want:   map[string][]string{"X-A": {"3"}, "X-B": {"4"}},
		},
		{
			name:   "overwrite if exists",
			in:     [][2]string{{"X-A", "1"}},
			levels: []headerConfig{{add: []*corev3.HeaderValueOption{hvo("x-a", "2", overwriteIf), hvo("x-b", "3", overwriteIf)}}},
			want:   map[string][]string{"X-A": {"2"}},
		},
		{
			name: "remove before add in a level",
			in:   [][2]string{{"X-A", "1"}, {"X-C", "1"}},
			levels: []headerConfig{{remove: []string{"x-a", "X-C"},
				add: []*corev3.HeaderValueOption{hvo("x-a", "2", addAbsent), hvo("x-c", "2", overwriteIf)}}},
			want: map[string][]string{"X-A": {"2"}},
		},
		{
			name: "decisions see the level's start, not its own additions",
			in:   nil,
			levels: []headerConfig{{add: []*corev3.HeaderValueOption{
				hvo("x-a", "1", appendOrAdd), hvo("x-a", "2", addAbsent), hvo("x-a", "3", overwriteIf)}}},
			want: map[string][]string{"X-A": {"1", "2"}},
		},
		{
			name: "overwrites apply before appends",
			in:   nil,
			levels: []headerConfig{{add: []*corev3.HeaderValueOption{
				hvo("x-a", "append", appendOrAdd), hvo("x-a", "set", overwriteOrAdd)}}},
			want: map[string][]string{"X-A": {"set", "append"}},
		},
		{
			name: "later level sees earlier level and wins",
			in:   nil,
			levels: []headerConfig{
				{add: []*corev3.HeaderValueOption{hvo("x-a", "route", overwriteOrAdd)}},
				{add: []*corev3.HeaderValueOption{hvo("x-a", "vhost", addAbsent), hvo("x-b", "vhost", overwriteOrAdd)}},
				{add: []*corev3.HeaderValueOption{hvo("x-b", "config", overwriteOrAdd)}, remove: []string{"x-gone"}},
			},
			want: map[string][]string{"X-A": {"route"}, "X-B": {"config"}},
		},
		{
			name: "empty values are dropped unless kept",
			in:   nil,
			levels: []headerConfig{{add: []*corev3.HeaderValueOption{hvo("x-a", "", appendOrAdd),
				{Header: &corev3.HeaderValue{Key: "x-b"}, KeepEmptyValue: true}}}},
			want: map[string][]string{"X-B": {""}},
		},
		{
			name: "deprecated append false overwrites",
			in:   [][2]string{{"X-A", "1"}},
			levels: []headerConfig{{add: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "x-a", Value: "2"}, Append: wrapperspb.Bool(false)},
				{Header: &corev3.HeaderValue{Key: "x-b", Value: "100%% literal"}, Append: wrapperspb.Bool(true)}}}},
			want: map[string][]string{"X-A": {"2"}, "X-B": {"100% literal"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var levels []mutationLevel
			for i, hc := range tt.levels {
				l, err := translateHeaderLevel("add", "remove", hc)
				if err != nil {
					t.Fatalf("level %d: %v", i, err)
				}
				levels = append(levels, l)
			}
			m := buildMutation(levels...)
			// net/http path
			h := http.Header{}
			for _, kv := range tt.in {
				h.Add(kv[0], kv[1])
			}
			m.applyHTTP(h)
			if diff := cmp.Diff(tt.want, map[string][]string(h)); diff != "" {
				t.Errorf("net/http header (-want +got):\n%s", diff)
			}
			// fast path: raw fields + added lines, as sendRequest writes them
			raw := "GET / HTTP/1.1\r\nHost: h\r\n"
			for _, kv := range tt.in {
				raw += kv[0] + ": " + kv[1] + "\r\n"
			}
			var head msgHead
			if err := parseRequestHead([]byte(raw+"\r\n"), &head); err != nil {
				t.Fatal(err)
			}
			var added []*headerAdd
			m.applyRaw(head.fields, &added)
			var out bytes.Buffer
			bw := bufio.NewWriter(&out)
			for _, f := range head.fields {
				if !f.drop {
					_, _ = bw.Write(f.line)
				}
			}
			writeAdded(bw, added)
			_ = bw.Flush()
			got := parseLines(t, out.String())
			delete(got, "Host")
			if diff := cmp.Diff(sortValues(tt.want), sortValues(got)); diff != "" {
				t.Errorf("fast path fields (-want +got):\n%s", diff)
			}
		})
	}
}

func parseLines(t *testing.T, s string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		k = http.CanonicalHeaderKey(k)
		out[k] = append(out[k], strings.TrimSpace(v))
	}
	return out
}

// sortValues orders each header's values: the fast path keeps original
// fields in place and writes added lines after them, so only the order of
// values within a name is comparable up to the original/added split.
func sortValues(m map[string][]string) map[string][]string {
	out := map[string][]string{}
	for k, v := range m {
		v = append([]string(nil), v...)
		sort.Strings(v)
		out[k] = v
	}
	return out
}

func TestHeaderLevelRejects(t *testing.T) {
	tests := []struct {
		name string
		hc   headerConfig
		want string
	}{
		{"formatter", headerConfig{add: []*corev3.HeaderValueOption{hvo("x-a", "%REQ(x-b)%", appendOrAdd)}}, "add[0].header.value"},
		{"single percent", headerConfig{add: []*corev3.HeaderValueOption{hvo("x-a", "50%", appendOrAdd)}}, "%VAR% formatter"},
		{"pseudo", headerConfig{add: []*corev3.HeaderValueOption{hvo(":path", "/", appendOrAdd)}}, "add[0].header.key: pseudo-header"},
		{"host", headerConfig{add: []*corev3.HeaderValueOption{hvo("Host", "x", appendOrAdd)}}, "host_rewrite_literal"},
		{"hop-by-hop", headerConfig{add: []*corev3.HeaderValueOption{hvo("connection", "close", appendOrAdd)}}, "hop-by-hop"},
		{"framing", headerConfig{add: []*corev3.HeaderValueOption{hvo("Content-Length", "1", appendOrAdd)}}, "hop-by-hop or framing"},
		{"remove te", headerConfig{remove: []string{"transfer-encoding"}}, "remove[0]: hop-by-hop"},
		{"remove authority", headerConfig{remove: []string{":authority"}}, "remove[0]: pseudo-header"},
		{"remove host", headerConfig{remove: []string{"host"}}, "remove[0]"},
		{"bad name", headerConfig{add: []*corev3.HeaderValueOption{hvo("x a", "1", appendOrAdd)}}, "invalid header name"},
		{"bad value", headerConfig{add: []*corev3.HeaderValueOption{hvo("x-a", "a\r\nb: c", appendOrAdd)}}, "invalid byte"},
		{"append and action", headerConfig{add: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x", Value: "1"},
			Append: wrapperspb.Bool(true), AppendAction: addAbsent}}}, "both append and append_action"},
		{"no header", headerConfig{add: []*corev3.HeaderValueOption{{}}}, "add[0].header: missing"},
		{"value and raw", headerConfig{add: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x", Value: "1", RawValue: []byte("2")}}}}, "both value and raw_value"},
	}
	for _, tt := range tests {
		_, err := translateHeaderLevel("add", "remove", tt.hc)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}
