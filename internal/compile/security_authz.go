package compile

// AuthorizationPolicy → Envoy rbac filters (ADR 002): one filter per
// action, trellis.rbac.deny, .allow, .audit in that order, each with one
// config.rbac.v3.Policy per rule keyed ns.<namespace>.<policy>.rule.<i>.
//
//	rule ─► Policy
//	         principals:  [and_ids [or_ids [from entries: and_ids of fields]], source-side when…]
//	         permissions: [and_rules [or_rules [to entries: and_rules of fields]], request-side when…]
//	field ─► or of its values, and not(or of its not-values)

import (
	"errors"
	"fmt"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"

	"github.com/trellis-mesh/trellis/internal/model"
)

// The rbac filters' names (the contract): the type is in the typed config,
// envoy.filters.http.rbac or envoy.filters.network.rbac.
const (
	rbacDenyName      = "trellis.rbac.deny"
	rbacAllowName     = "trellis.rbac.allow"
	rbacAuditName     = "trellis.rbac.audit"
	tcpRBACStatPrefix = "tcp."
)

// errDropRule says an ALLOW rule cannot be checked as written (an
// HTTP-only field on a TCP port, a value that does not parse): the rule
// is left out, so it allows less (Istio).
var errDropRule = errors.New("rule dropped")

// authzFilter is one rbac filter: its name and engine.
type authzFilter struct {
	name  string
	rules *rbacv3.RBAC
}

// authzFilters are the rbac filters of the workload's inbound ports, in
// order: DENY (when a DENY policy contributes a rule), ALLOW (when any
// ALLOW policy applies, even with no rule left: it then denies
// everything), AUDIT (when an AUDIT policy contributes a rule). tcp
// compiles for a TCP port: HTTP-only fields drop an ALLOW rule and are
// dropped from a DENY or AUDIT rule.
func (c *compiler) authzFilters(tcp bool) []authzFilter {
	deny := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
	allow := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	audit := &rbacv3.RBAC{Action: rbacv3.RBAC_LOG, Policies: map[string]*rbacv3.Policy{}}
	anyAllow := false
	for _, ap := range c.ix.authzPolicies(c.self) {
		var dst *rbacv3.RBAC
		switch ap.Spec.Action {
		case model.AuthzAllow, "":
			dst, anyAllow = allow, true
		case model.AuthzDeny:
			dst = deny
		case model.AuthzAudit:
			dst = audit
		default:
			continue // CUSTOM: refused by validation
		}
		b := ruleBuilder{tcp: tcp, allow: dst == allow}
		for i := range ap.Spec.Rules {
			pol, err := b.policy(&ap.Spec.Rules[i])
			if err != nil {
				continue // errDropRule
			}
			dst.Policies[fmt.Sprintf("ns.%s.%s.rule.%d", ap.NamespaceOrDefault(), ap.Name, i)] = pol
		}
	}
	var out []authzFilter
	if len(deny.Policies) > 0 {
		out = append(out, authzFilter{rbacDenyName, deny})
	}
	if anyAllow {
		out = append(out, authzFilter{rbacAllowName, allow})
	}
	if len(audit.Policies) > 0 {
		out = append(out, authzFilter{rbacAuditName, audit})
	}
	return out
}

// ruleBuilder encodes the rules of one policy.
type ruleBuilder struct {
	tcp   bool // a TCP port: HTTP-only fields cannot be checked
	allow bool // an ALLOW policy: what cannot be checked drops the rule, else it drops the field
}

// policy encodes one rule; errDropRule when it is left out.
func (b ruleBuilder) policy(r *model.AuthzRule) (*rbacv3.Policy, error) {
	var principals []*rbacv3.Principal
	var permissions []*rbacv3.Permission
	if len(r.From) > 0 {
		froms := make([]*rbacv3.Principal, 0, len(r.From))
		for _, f := range r.From {
			ids, err := b.source(f.Source)
			if err != nil {
				return nil, err
			}
			froms = append(froms, andPrincipal(ids))
		}
		principals = append(principals, orPrincipal(froms))
	}
	if len(r.To) > 0 {
		tos := make([]*rbacv3.Permission, 0, len(r.To))
		for _, t := range r.To {
			rules, err := b.operation(t.Operation)
			if err != nil {
				return nil, err
			}
			tos = append(tos, andPermission(rules))
		}
		permissions = append(permissions, orPermission(tos))
	}
	for _, w := range r.When {
		ids, rules, err := b.condition(w)
		if err != nil {
			return nil, err
		}
		principals = append(principals, ids...)
		permissions = append(permissions, rules...)
	}
	return &rbacv3.Policy{
		Principals:  []*rbacv3.Principal{andPrincipal(principals)},
		Permissions: []*rbacv3.Permission{andPermission(permissions)},
	}, nil
}

// source encodes the fields of one from entry (ANDed by the caller).
func (b ruleBuilder) source(s *model.AuthzSource) ([]*rbacv3.Principal, error) {
	if s == nil {
		return nil, nil
	}
	fields := []struct {
		httpOnly  bool
		values    []string
		notValues []string
		gen       principalGen
	}{
		{false, s.Principals, s.NotPrincipals, sourcePrincipal},
		{true, s.RequestPrincipals, s.NotRequestPrincipals, requestPrincipal},
		{false, s.Namespaces, s.NotNamespaces, sourceNamespace},
		{false, s.IPBlocks, s.NotIPBlocks, directRemoteIP},
		{false, s.RemoteIPBlocks, s.NotRemoteIPBlocks, remoteIP},
	}
	var out []*rbacv3.Principal
	for _, f := range fields {
		ids, err := b.principalField(f.httpOnly, f.values, f.notValues, f.gen)
		if err != nil {
			return nil, err
		}
		out = append(out, ids...)
	}
	return out, nil
}

// operation encodes the fields of one to entry (ANDed by the caller).
func (b ruleBuilder) operation(o *model.AuthzOperation) ([]*rbacv3.Permission, error) {
	if o == nil {
		return nil, nil
	}
	fields := []struct {
		httpOnly  bool
		values    []string
		notValues []string
		gen       permissionGen
	}{
		{true, o.Hosts, o.NotHosts, host},
		{true, o.Methods, o.NotMethods, method},
		{true, o.Paths, o.NotPaths, path},
		{false, o.Ports, o.NotPorts, destinationPort},
	}
	var out []*rbacv3.Permission
	for _, f := range fields {
		rules, err := b.permissionField(f.httpOnly, f.values, f.notValues, f.gen)
		if err != nil {
			return nil, err
		}
		out = append(out, rules...)
	}
	return out, nil
}

// condition encodes a when condition: destination.ip, destination.port
// and connection.sni are request-side (permissions), every other key is
// source-side (principals), as Istio sorts them. An unknown key cannot be
// checked: it drops an ALLOW rule and is dropped from a DENY rule.
func (b ruleBuilder) condition(w model.AuthzCondition) ([]*rbacv3.Principal, []*rbacv3.Permission, error) {
	var pgen principalGen
	var rgen permissionGen
	httpOnly := false
	switch k := w.Key; {
	case k == attrSourceIP:
		pgen = directRemoteIP
	case k == attrRemoteIP:
		pgen = remoteIP
	case k == attrSourceNS:
		pgen = sourceNamespace
	case k == attrSourcePrinc:
		pgen = sourcePrincipal
	case k == attrReqPrincipal:
		pgen, httpOnly = requestPrincipal, true
	case k == attrReqAudiences:
		pgen, httpOnly = requestAudiences, true
	case k == attrReqPresenter:
		pgen, httpOnly = requestPresenter, true
	case strings.HasPrefix(k, attrReqClaims):
		p, err := bracketKey(k, attrReqClaims)
		if err != nil {
			return nil, nil, b.unusable()
		}
		pgen, httpOnly = requestClaim(p), true
	case strings.HasPrefix(k, attrReqHeaders):
		p, err := bracketKey(k, attrReqHeaders)
		if err != nil || len(p) != 1 {
			return nil, nil, b.unusable()
		}
		pgen, httpOnly = requestHeader(p[0]), true
	case k == attrDestIP:
		rgen = destinationIP
	case k == attrDestPort:
		rgen = destinationPort
	case k == attrConnSNI:
		rgen = serverName
	default:
		return nil, nil, b.unusable()
	}
	if pgen != nil {
		ids, err := b.principalField(httpOnly, w.Values, w.NotValues, pgen)
		return ids, nil, err
	}
	rules, err := b.permissionField(httpOnly, w.Values, w.NotValues, rgen)
	return nil, rules, err
}

// unusable is what a part that cannot be checked does: it drops an ALLOW
// rule (errDropRule) and is left out of a DENY or AUDIT rule (nil).
func (b ruleBuilder) unusable() error {
	if b.allow {
		return errDropRule
	}
	return nil
}

// principalField encodes one field: or_ids of its values, not_id(or_ids)
// of its not-values; nothing for an empty or dropped field.
func (b ruleBuilder) principalField(httpOnly bool, values, notValues []string, gen principalGen) ([]*rbacv3.Principal, error) {
	if len(values)+len(notValues) == 0 {
		return nil, nil
	}
	if httpOnly && b.tcp {
		return nil, b.unusable()
	}
	var out []*rbacv3.Principal
	for i, vs := range [][]string{values, notValues} {
		var ids []*rbacv3.Principal
		for _, v := range vs {
			id, err := gen(v)
			if err != nil {
				if err := b.unusable(); err != nil {
					return nil, err
				}
				continue
			}
			ids = append(ids, id)
		}
		if len(ids) == 0 {
			continue
		}
		if i == 0 {
			out = append(out, orPrincipal(ids))
		} else {
			out = append(out, notPrincipal(orPrincipal(ids)))
		}
	}
	return out, nil
}

// permissionField is principalField for request-side fields.
func (b ruleBuilder) permissionField(httpOnly bool, values, notValues []string, gen permissionGen) ([]*rbacv3.Permission, error) {
	if len(values)+len(notValues) == 0 {
		return nil, nil
	}
	if httpOnly && b.tcp {
		return nil, b.unusable()
	}
	var out []*rbacv3.Permission
	for i, vs := range [][]string{values, notValues} {
		var rules []*rbacv3.Permission
		for _, v := range vs {
			r, err := gen(v)
			if err != nil {
				if err := b.unusable(); err != nil {
					return nil, err
				}
				continue
			}
			rules = append(rules, r)
		}
		if len(rules) == 0 {
			continue
		}
		if i == 0 {
			out = append(out, orPermission(rules))
		} else {
			out = append(out, notPermission(orPermission(rules)))
		}
	}
	return out, nil
}

// httpRBACFilters are the rbac filters of an HTTP inbound listener.
func httpRBACFilters(fs []authzFilter) ([]*hcmv3.HttpFilter, error) {
	out := make([]*hcmv3.HttpFilter, 0, len(fs))
	for _, f := range fs {
		a, err := toAny(&rbachttpv3.RBAC{Rules: f.rules})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		out = append(out, typedHTTPFilter(f.name, a))
	}
	return out, nil
}

// networkRBACFilters are the rbac filters of a TCP inbound listener,
// before tcp_proxy.
func networkRBACFilters(fs []authzFilter) ([]*listenerv3.Filter, error) {
	out := make([]*listenerv3.Filter, 0, len(fs))
	for _, f := range fs {
		a, err := toAny(&rbacnetv3.RBAC{Rules: f.rules, StatPrefix: tcpRBACStatPrefix})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		out = append(out, typedNetworkFilter(f.name, a))
	}
	return out, nil
}
