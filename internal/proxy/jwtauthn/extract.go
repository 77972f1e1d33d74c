package jwtauthn

import (
	"fmt"
	"sort"
	"strings"
)

type locKind uint8

const (
	locHeader locKind = iota
	locParam
	locCookie
)

// location is one place a token may be: a header with a value prefix, a query
// parameter, or a cookie; with the providers that listed it.
type location struct {
	kind      locKind
	name      string // header name (lowercase), parameter or cookie name
	prefix    string // headers only
	providers []*provider
	// remove is Outcome.RemoveHeaders when a token found here verifies with a provider
	// whose forward is false: the Filter's sanitize list plus this header.
	remove []string
}

// headerGroup is every location reading one header, longest prefix first: a value is
// read by the first location whose prefix starts it.
type headerGroup struct {
	name string
	locs []*location
}

const (
	bearerPrefix     = "Bearer "
	accessTokenParam = "access_token"
)

// addLocations registers where p reads tokens; with no from_* field, Envoy's default:
// the Authorization header with "Bearer " and the access_token query parameter.
func (f *Filter) addLocations(p *provider) {
	if p.locs == nil {
		f.location(locHeader, "authorization", bearerPrefix, p)
		f.location(locParam, accessTokenParam, "", p)
		return
	}
	for _, l := range p.locs {
		f.location(l.kind, l.name, l.prefix, p)
	}
}

func (f *Filter) location(kind locKind, name, prefix string, p *provider) {
	var loc *location
	switch kind {
	case locHeader:
		g := f.headerGroup(name)
		for _, l := range g.locs {
			if l.prefix == prefix {
				loc = l
			}
		}
		if loc == nil {
			loc = &location{kind: kind, name: name, prefix: prefix}
			g.locs = append(g.locs, loc)
		}
	case locParam, locCookie:
		list := &f.params
		if kind == locCookie {
			list = &f.cookies
		}
		for _, l := range *list {
			if l.name == name {
				loc = l
			}
		}
		if loc == nil {
			loc = &location{kind: kind, name: name}
			*list = append(*list, loc)
		}
	}
	if !containsProvider(loc.providers, p) {
		loc.providers = append(loc.providers, p)
	}
}

func (f *Filter) headerGroup(name string) *headerGroup {
	for i := range f.headers {
		if f.headers[i].name == name {
			return &f.headers[i]
		}
	}
	f.headers = append(f.headers, headerGroup{name: name})
	return &f.headers[len(f.headers)-1]
}

// finishLocations orders prefixes and precomputes each location's removal list.
func (f *Filter) finishLocations() {
	for i := range f.headers {
		g := &f.headers[i]
		sort.SliceStable(g.locs, func(a, b int) bool { return len(g.locs[a].prefix) > len(g.locs[b].prefix) })
		for _, l := range g.locs {
			l.remove = appendUnique(append([]string(nil), f.sanitize...), l.name)
		}
	}
	for _, l := range append(append([]*location(nil), f.params...), f.cookies...) {
		l.remove = f.sanitize
	}
}

func containsProvider(list []*provider, p *provider) bool {
	for _, e := range list {
		if e == p {
			return true
		}
	}
	return false
}

// extract finds the request's token. found is false when there is none; more than one
// (in two locations, or two values of one) is ErrMultiple.
func (f *Filter) extract(r Request) (tok string, loc *location, found bool, err error) {
	n := 0
	for i := range f.headers {
		g := &f.headers[i]
		for _, v := range r.HeaderValues(g.name) {
			if t, l, ok := g.read(v); ok {
				tok, loc, n = t, l, n+1
			}
		}
	}
	if len(f.params) > 0 {
		mq, multi := r.(MultiQueryRequest)
		for _, l := range f.params {
			if multi {
				for _, v := range mq.QueryParamValues(l.name) {
					tok, loc, n = v, l, n+1
				}
			} else if v, ok := r.QueryParam(l.name); ok {
				tok, loc, n = v, l, n+1
			}
		}
	}
	for _, l := range f.cookies {
		if v, ok := r.Cookie(l.name); ok {
			tok, loc, n = v, l, n+1
		}
	}
	switch {
	case n == 0:
		return "", nil, false, nil
	case n > 1:
		return "", nil, true, fmt.Errorf("%w: %d found", ErrMultiple, n)
	}
	return tok, loc, true, nil
}

// read takes the token from one header value: after the longest configured prefix that
// starts it (and any spaces), or the whole value for an empty prefix.
func (g *headerGroup) read(v string) (string, *location, bool) {
	for _, l := range g.locs {
		if rest, ok := strings.CutPrefix(v, l.prefix); ok {
			return strings.TrimLeft(rest, " \t"), l, true
		}
	}
	return "", nil, false
}
