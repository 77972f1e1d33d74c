// Package rbac evaluates Envoy's role based access control policies
// (envoy.config.rbac.v3.RBAC) for the proxy's HTTP and TCP listeners.
//
//	config.rbac.v3.RBAC ──Translate──► *Engine (immutable, regexes compiled)
//	                                      │
//	  request ──► Request (adapter) ──► Evaluate ──► (matched, first policy by name)
//	                                      │
//	  the filter decides: ALLOW denies when nothing matched, DENY denies on
//	  a match, LOG never denies (the match is counted and logged)
//
// A policy matches when one of its permissions (what is done: headers,
// path, destination) and one of its principals (who does it: peer
// identity, source address, request identity) match. Policies are tried in
// the lexicographic order of their names, as in Envoy.
//
// One deviation from Envoy: a header matcher tests every value of a
// repeated header and matches when any value matches; Envoy joins the
// values with "," first, which lets "x-user: a" + "x-user: admin" slip past
// a DENY on "admin" (docs/adr/002-security.md).
//
// Evaluate allocates nothing: the matchers are a tree of precompiled nodes
// and every request property is read through Request.
package rbac

import (
	"net/netip"
)

// Action is what a matching policy means.
type Action int

const (
	// Allow: a request is allowed iff some policy matches.
	Allow Action = iota + 1
	// Deny: a request is denied iff some policy matches.
	Deny
	// Log: requests are never denied; a match is logged and counted.
	Log
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "ALLOW"
	case Deny:
		return "DENY"
	case Log:
		return "LOG"
	}
	return "UNKNOWN"
}

// Request gives the engine read access to one request or TCP connection.
// Strings it returns need only stay valid until Evaluate returns: the
// engine keeps none of them.
type Request interface {
	// PeerPrincipal is the URI SAN (SPIFFE ID) of the verified peer
	// certificate; false on a plaintext connection.
	PeerPrincipal() (string, bool)
	// DirectRemoteIP is the address of the downstream connection.
	DirectRemoteIP() netip.Addr
	// RemoteIP is the original client address: the leftmost
	// x-forwarded-for entry when the peer is a verified sidecar, else the
	// connection's address.
	RemoteIP() netip.Addr
	// DestinationIP and DestinationPort are the local address of the
	// downstream connection.
	DestinationIP() netip.Addr
	DestinationPort() uint32
	// RequestedServerName is the SNI of the TLS handshake ("" for none).
	RequestedServerName() string

	// HTTP reports an HTTP request. On a TCP connection it is false, and
	// the header, url_path and metadata matchers never match.
	HTTP() bool
	// HeaderValue returns a value of the header name (lowercase; the
	// pseudo-headers :method, :authority (also as "host"), :path with the
	// query, and :scheme included) found at or after position pos, and the
	// position to pass next. Starting at 0 and following next visits every
	// value of the header, in order; ok is false when there is none left.
	HeaderValue(name string, pos int) (value string, next int, ok bool)
	// URLPath is the normalized path without the query.
	URLPath() string
	// AuthMetadata returns the dynamic metadata a filter set for the
	// request: for "istio_authn", the request.auth.* values of a verified
	// JWT (a string, []string, bool or number), false when absent.
	AuthMetadata(filter string, path []string) (any, bool)
}

// Engine is one translated RBAC config: immutable, safe for concurrent use.
type Engine struct {
	action   Action
	policies []policy // sorted by name
}

type policy struct {
	name        string
	permissions []matcher // OR
	principals  []matcher // OR
}

// Action returns what a match means.
func (e *Engine) Action() Action { return e.action }

// Policies returns the number of policies. An ALLOW engine with none
// denies everything; a DENY engine with none denies nothing.
func (e *Engine) Policies() int { return len(e.policies) }

// Evaluate reports whether some policy matches r, and the name of the first
// one in lexicographic order. It allocates nothing.
func (e *Engine) Evaluate(r Request) (matched bool, policy string) {
	for i := range e.policies {
		p := &e.policies[i]
		if anyMatch(p.permissions, r) && anyMatch(p.principals, r) {
			return true, p.name
		}
	}
	return false, ""
}

// Allowed applies the engine's action to Evaluate's result: false when the
// request must be denied (never for Log). policy is the matching policy.
func (e *Engine) Allowed(r Request) (allowed bool, matched bool, policy string) {
	matched, policy = e.Evaluate(r)
	switch e.action {
	case Allow:
		return matched, matched, policy
	case Deny:
		return !matched, matched, policy
	}
	return true, matched, policy
}

func anyMatch(ms []matcher, r Request) bool {
	for _, m := range ms {
		if m.match(r) {
			return true
		}
	}
	return false
}
