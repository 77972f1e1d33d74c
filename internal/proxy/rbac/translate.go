package rbac

import (
	"fmt"
	"sort"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
)

// AuthnFilter is the only dynamic metadata namespace a metadata matcher
// may read: Istio's request.auth.* from the jwt_authn filter.
const AuthnFilter = "istio_authn"

// maxDepth bounds the nesting of and/or/not matchers, so a hostile config
// cannot exhaust the stack.
const maxDepth = 64

// Translate translates an RBAC config into an Engine. Errors name the field
// path; fields that would change behaviour and are not implemented (CEL
// conditions, the typed matcher extensions, filter_state, sourced_metadata,
// custom matchers, audit logging options) are refused.
func Translate(cfg *rbacv3.RBAC) (*Engine, error) {
	if cfg == nil {
		return nil, fmt.Errorf("rules: missing")
	}
	e := &Engine{}
	switch cfg.GetAction() {
	case rbacv3.RBAC_ALLOW:
		e.action = Allow
	case rbacv3.RBAC_DENY:
		e.action = Deny
	case rbacv3.RBAC_LOG:
		e.action = Log
	default:
		return nil, fmt.Errorf("action: %v not supported, want ALLOW, DENY or LOG", cfg.GetAction())
	}
	if cfg.GetAuditLoggingOptions() != nil {
		return nil, fmt.Errorf("audit_logging_options: not supported")
	}
	names := make([]string, 0, len(cfg.GetPolicies()))
	for name := range cfg.GetPolicies() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p, err := translatePolicy(name, cfg.GetPolicies()[name])
		if err != nil {
			return nil, fmt.Errorf("policies[%q].%w", name, err)
		}
		e.policies = append(e.policies, p)
	}
	return e, nil
}

func translatePolicy(name string, p *rbacv3.Policy) (policy, error) {
	out := policy{name: name}
	if p == nil {
		return out, fmt.Errorf("permissions: empty")
	}
	if p.GetCondition() != nil || p.GetCheckedCondition() != nil || p.GetCelConfig() != nil {
		return out, fmt.Errorf("condition: CEL conditions are not supported")
	}
	if len(p.GetPermissions()) == 0 {
		return out, fmt.Errorf("permissions: empty, want at least one (any: true matches everything)")
	}
	if len(p.GetPrincipals()) == 0 {
		return out, fmt.Errorf("principals: empty, want at least one (any: true matches everything)")
	}
	for i, perm := range p.GetPermissions() {
		m, err := translatePermission(perm, 0)
		if err != nil {
			return out, fmt.Errorf("permissions[%d].%w", i, err)
		}
		out.permissions = append(out.permissions, m)
	}
	for i, pr := range p.GetPrincipals() {
		m, err := translatePrincipal(pr, 0)
		if err != nil {
			return out, fmt.Errorf("principals[%d].%w", i, err)
		}
		out.principals = append(out.principals, m)
	}
	return out, nil
}

func translatePermission(p *rbacv3.Permission, depth int) (matcher, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("rule: nested deeper than %d", maxDepth)
	}
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		if !r.Any {
			return nil, fmt.Errorf("any: false is not a rule, want true")
		}
		return anyMatcher{}, nil
	case *rbacv3.Permission_AndRules:
		ms, err := translatePermissions(r.AndRules.GetRules(), depth)
		if err != nil {
			return nil, fmt.Errorf("and_rules.%w", err)
		}
		return andMatcher(ms), nil
	case *rbacv3.Permission_OrRules:
		ms, err := translatePermissions(r.OrRules.GetRules(), depth)
		if err != nil {
			return nil, fmt.Errorf("or_rules.%w", err)
		}
		return orMatcher(ms), nil
	case *rbacv3.Permission_NotRule:
		m, err := translatePermission(r.NotRule, depth+1)
		if err != nil {
			return nil, fmt.Errorf("not_rule.%w", err)
		}
		return notMatcher{m}, nil
	case *rbacv3.Permission_Header:
		m, err := translateHeader(r.Header)
		if err != nil {
			return nil, fmt.Errorf("header.%w", err)
		}
		return m, nil
	case *rbacv3.Permission_UrlPath:
		m, err := translatePath(r.UrlPath)
		if err != nil {
			return nil, fmt.Errorf("url_path.%w", err)
		}
		return m, nil
	case *rbacv3.Permission_DestinationIp:
		prefix, err := translateCIDR(r.DestinationIp)
		if err != nil {
			return nil, fmt.Errorf("destination_ip.%w", err)
		}
		return ipMatcher{src: ipDestination, prefix: prefix}, nil
	case *rbacv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return nil, fmt.Errorf("destination_port: %d out of range", r.DestinationPort)
		}
		return portMatcher{lo: r.DestinationPort, hi: r.DestinationPort}, nil
	case *rbacv3.Permission_DestinationPortRange:
		lo, hi := r.DestinationPortRange.GetStart(), r.DestinationPortRange.GetEnd()
		if lo < 0 || hi > 65536 || lo >= hi {
			return nil, fmt.Errorf("destination_port_range: [%d, %d) is empty or out of range", lo, hi)
		}
		return portMatcher{lo: uint32(lo), hi: uint32(hi - 1)}, nil
	case *rbacv3.Permission_Metadata:
		m, err := translateMetadata(r.Metadata)
		if err != nil {
			return nil, fmt.Errorf("metadata.%w", err)
		}
		return m, nil
	case *rbacv3.Permission_RequestedServerName:
		s, err := translateString(r.RequestedServerName)
		if err != nil {
			return nil, fmt.Errorf("requested_server_name%w", err)
		}
		return sniMatcher{s}, nil
	case *rbacv3.Permission_Matcher:
		return nil, fmt.Errorf("matcher: extension matchers are not supported")
	case *rbacv3.Permission_UriTemplate:
		return nil, fmt.Errorf("uri_template: not supported")
	case *rbacv3.Permission_SourcedMetadata:
		return nil, fmt.Errorf("sourced_metadata: not supported")
	case nil:
		return nil, fmt.Errorf("rule: missing")
	default:
		return nil, fmt.Errorf("rule: %T not supported", r)
	}
}

func translatePermissions(ps []*rbacv3.Permission, depth int) ([]matcher, error) {
	if len(ps) == 0 {
		return nil, fmt.Errorf("rules: empty")
	}
	out := make([]matcher, 0, len(ps))
	for i, p := range ps {
		m, err := translatePermission(p, depth+1)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].%w", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func translatePrincipal(p *rbacv3.Principal, depth int) (matcher, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("identifier: nested deeper than %d", maxDepth)
	}
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		if !id.Any {
			return nil, fmt.Errorf("any: false is not an identifier, want true")
		}
		return anyMatcher{}, nil
	case *rbacv3.Principal_AndIds:
		ms, err := translatePrincipals(id.AndIds.GetIds(), depth)
		if err != nil {
			return nil, fmt.Errorf("and_ids.%w", err)
		}
		return andMatcher(ms), nil
	case *rbacv3.Principal_OrIds:
		ms, err := translatePrincipals(id.OrIds.GetIds(), depth)
		if err != nil {
			return nil, fmt.Errorf("or_ids.%w", err)
		}
		return orMatcher(ms), nil
	case *rbacv3.Principal_NotId:
		m, err := translatePrincipal(id.NotId, depth+1)
		if err != nil {
			return nil, fmt.Errorf("not_id.%w", err)
		}
		return notMatcher{m}, nil
	case *rbacv3.Principal_Authenticated_:
		am := authenticatedMatcher{}
		if n := id.Authenticated.GetPrincipalName(); n != nil {
			s, err := translateString(n)
			if err != nil {
				return nil, fmt.Errorf("authenticated.principal_name%w", err)
			}
			am.name = &s
		}
		return am, nil
	case *rbacv3.Principal_SourceIp:
		prefix, err := translateCIDR(id.SourceIp)
		if err != nil {
			return nil, fmt.Errorf("source_ip.%w", err)
		}
		return ipMatcher{src: ipDirectRemote, prefix: prefix}, nil
	case *rbacv3.Principal_DirectRemoteIp:
		prefix, err := translateCIDR(id.DirectRemoteIp)
		if err != nil {
			return nil, fmt.Errorf("direct_remote_ip.%w", err)
		}
		return ipMatcher{src: ipDirectRemote, prefix: prefix}, nil
	case *rbacv3.Principal_RemoteIp:
		prefix, err := translateCIDR(id.RemoteIp)
		if err != nil {
			return nil, fmt.Errorf("remote_ip.%w", err)
		}
		return ipMatcher{src: ipRemote, prefix: prefix}, nil
	case *rbacv3.Principal_Header:
		m, err := translateHeader(id.Header)
		if err != nil {
			return nil, fmt.Errorf("header.%w", err)
		}
		return m, nil
	case *rbacv3.Principal_UrlPath:
		m, err := translatePath(id.UrlPath)
		if err != nil {
			return nil, fmt.Errorf("url_path.%w", err)
		}
		return m, nil
	case *rbacv3.Principal_Metadata:
		m, err := translateMetadata(id.Metadata)
		if err != nil {
			return nil, fmt.Errorf("metadata.%w", err)
		}
		return m, nil
	case *rbacv3.Principal_FilterState:
		return nil, fmt.Errorf("filter_state: not supported")
	case *rbacv3.Principal_SourcedMetadata:
		return nil, fmt.Errorf("sourced_metadata: not supported")
	case *rbacv3.Principal_Custom:
		return nil, fmt.Errorf("custom: extension principals are not supported")
	case nil:
		return nil, fmt.Errorf("identifier: missing")
	default:
		return nil, fmt.Errorf("identifier: %T not supported", id)
	}
}

func translatePrincipals(ps []*rbacv3.Principal, depth int) ([]matcher, error) {
	if len(ps) == 0 {
		return nil, fmt.Errorf("ids: empty")
	}
	out := make([]matcher, 0, len(ps))
	for i, p := range ps {
		m, err := translatePrincipal(p, depth+1)
		if err != nil {
			return nil, fmt.Errorf("ids[%d].%w", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}
