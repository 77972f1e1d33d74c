package proxy

import (
	"bufio"
	"net/http"
)

// headerMutation is the request_headers_to_add/remove (or response_*) of
// every level that applies to a request, in Envoy's default order: weighted
// cluster, route, virtual host, route configuration. Each level removes
// first, then decides each addition against the headers as they are after
// its removals, then overwrites, then appends (Envoy's HeaderParser), so a
// later level wins over an earlier one.
type headerMutation struct {
	levels []mutationLevel
}

type mutationLevel struct {
	remove []string // canonical names
	add    []headerAdd
}

type appendAction int

const (
	appendIfExistsOrAdd appendAction = iota // the default
	addIfAbsent
	overwriteIfExistsOrAdd
	overwriteIfExists
)

// headerAdd is one header to add. Values are literal (no %VAR% formatters).
type headerAdd struct {
	name   string // canonical MIME key
	value  string
	line   []byte // "Name: value\r\n", written as is on the fast path
	action appendAction
}

func (a *headerAdd) overwrites() bool {
	return a.action == overwriteIfExistsOrAdd || a.action == overwriteIfExists
}

// empty reports whether m changes nothing (nil-safe).
func (m *headerMutation) empty() bool { return m == nil || len(m.levels) == 0 }

// maxAdds bounds the additions of one level, so the per-request decisions
// fit a fixed array (the translator refuses more).
const maxAdds = 64

// applyHTTP applies m to a net/http header map.
func (m *headerMutation) applyHTTP(h http.Header) {
	if m.empty() {
		return
	}
	for li := range m.levels {
		l := &m.levels[li]
		for _, name := range l.remove {
			delete(h, name)
		}
		var decide [maxAdds]bool
		for i := range l.add {
			decide[i] = decideAdd(&l.add[i], len(h[l.add[i].name]) > 0)
		}
		for i := range l.add {
			if a := &l.add[i]; decide[i] && a.overwrites() {
				h[a.name] = []string{a.value}
			}
		}
		for i := range l.add {
			if a := &l.add[i]; decide[i] && !a.overwrites() {
				h[a.name] = append(h[a.name], a.value)
			}
		}
	}
}

func decideAdd(a *headerAdd, exists bool) bool {
	switch a.action {
	case addIfAbsent:
		return !exists
	case overwriteIfExists:
		return exists
	}
	return true
}

// rawHeaders is the fast path's view of a head being mutated: the parsed
// fields (removal marks them dropped) and the lines added by the mutation.
// The added list lives in the connection and is reused across requests.
type rawHeaders struct {
	fields []hdrField
	added  *[]*headerAdd
}

func (r rawHeaders) has(name string) bool {
	for i := range r.fields {
		if f := &r.fields[i]; !f.drop && equalFold(f.name, name) {
			return true
		}
	}
	for _, a := range *r.added {
		if a.name == name {
			return true
		}
	}
	return false
}

func (r rawHeaders) remove(name string) {
	for i := range r.fields {
		if f := &r.fields[i]; !f.drop && equalFold(f.name, name) {
			f.drop = true
		}
	}
	kept := (*r.added)[:0]
	for _, a := range *r.added {
		if a.name != name {
			kept = append(kept, a)
		}
	}
	*r.added = kept
}

// applyRaw applies m to the fields of a raw head, appending added lines to
// *added. It allocates only when *added grows past its capacity.
func (m *headerMutation) applyRaw(fields []hdrField, added *[]*headerAdd) {
	if m.empty() {
		return
	}
	r := rawHeaders{fields: fields, added: added}
	for li := range m.levels {
		l := &m.levels[li]
		for _, name := range l.remove {
			r.remove(name)
		}
		var decide [maxAdds]bool
		for i := range l.add {
			decide[i] = decideAdd(&l.add[i], r.has(l.add[i].name))
		}
		for i := range l.add {
			if a := &l.add[i]; decide[i] && a.overwrites() {
				r.remove(a.name)
				*added = append(*added, a)
			}
		}
		for i := range l.add {
			if a := &l.add[i]; decide[i] && !a.overwrites() {
				*added = append(*added, a)
			}
		}
	}
}

// writeAdded writes the lines a mutation added.
func writeAdded(bw *bufio.Writer, added []*headerAdd) {
	for _, a := range added {
		_, _ = bw.Write(a.line)
	}
}
