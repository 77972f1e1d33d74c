package model

import "strconv"

// Istio's security resources (security.istio.io v1beta1 and v1), with the
// upstream field names. Their meaning is decided by the compiler
// (internal/compile/security*.go); docs/adr/002-security.md is the contract.

// Security kinds.
const (
	KindPeerAuthentication    = "PeerAuthentication"
	KindAuthorizationPolicy   = "AuthorizationPolicy"
	KindRequestAuthentication = "RequestAuthentication"
)

// IstioSecurityVersions are the apiVersions accepted for the security kinds.
var IstioSecurityVersions = []string{
	"security.istio.io/v1beta1",
	"security.istio.io/v1",
}

// RootNamespace is the namespace whose security policies without a
// selector apply to the whole mesh (Istio's default root namespace).
const RootNamespace = "istio-system"

// LabelSelector selects workloads by their labels (Istio's
// type.v1beta1.WorkloadSelector). Nil or empty matchLabels: every workload
// of the policy's namespace.
type LabelSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

// PeerAuthentication says whether a workload's inbound ports accept
// plaintext, mutual TLS or both.
type PeerAuthentication struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       PeerAuthenticationSpec `json:"spec"`
}

// Key implements Object.
func (p *PeerAuthentication) Key() Key {
	return Key{Kind: KindPeerAuthentication, Namespace: p.NamespaceOrDefault(), Name: p.Name}
}

// PeerAuthenticationSpec is the mTLS mode, optionally per port.
type PeerAuthenticationSpec struct {
	Selector *LabelSelector `json:"selector,omitempty"`
	Mtls     *PeerMTLS      `json:"mtls,omitempty"`
	// PortLevelMtls maps a workload (container) port to its mode; only in
	// a policy with a selector (as in Istio).
	PortLevelMtls map[string]PeerMTLS `json:"portLevelMtls,omitempty"`
}

// PeerMTLS is one mode.
type PeerMTLS struct {
	Mode string `json:"mode,omitempty"`
}

// mTLS modes.
const (
	MTLSUnset      = "UNSET"
	MTLSDisable    = "DISABLE"
	MTLSPermissive = "PERMISSIVE"
	MTLSStrict     = "STRICT"
)

// AuthorizationPolicy allows, denies or audits requests to the selected
// workloads.
type AuthorizationPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       AuthorizationPolicySpec `json:"spec"`
}

// Key implements Object.
func (a *AuthorizationPolicy) Key() Key {
	return Key{Kind: KindAuthorizationPolicy, Namespace: a.NamespaceOrDefault(), Name: a.Name}
}

// AuthorizationPolicySpec is Istio's AuthorizationPolicy.
type AuthorizationPolicySpec struct {
	Selector *LabelSelector `json:"selector,omitempty"`
	// TargetRef(s): Gateway API attachment, refused for now (envoyfilter.go).
	TargetRef  *PolicyTargetReference  `json:"targetRef,omitempty"`
	TargetRefs []PolicyTargetReference `json:"targetRefs,omitempty"`
	// Rules: a request matching any rule matches the policy. No rules:
	// an ALLOW policy matches nothing (denies everything), a DENY or
	// AUDIT policy matches nothing.
	Rules []AuthzRule `json:"rules,omitempty"`
	// Action is ALLOW (the default), DENY, AUDIT or CUSTOM (refused).
	Action string `json:"action,omitempty"`
	// Provider is for CUSTOM (ext_authz), which is not supported.
	Provider *AuthzProvider `json:"provider,omitempty"`
}

// Authorization actions.
const (
	AuthzAllow  = "ALLOW"
	AuthzDeny   = "DENY"
	AuthzAudit  = "AUDIT"
	AuthzCustom = "CUSTOM"
)

// AuthzProvider names an extension provider (CUSTOM action).
type AuthzProvider struct {
	Name string `json:"name,omitempty"`
}

// AuthzRule matches when its from, to and when all match (an absent part
// matches everything). Entries of from (and of to) are ORed; when
// conditions are ANDed.
type AuthzRule struct {
	From []AuthzFrom      `json:"from,omitempty"`
	To   []AuthzTo        `json:"to,omitempty"`
	When []AuthzCondition `json:"when,omitempty"`
}

// AuthzFrom is one source.
type AuthzFrom struct {
	Source *AuthzSource `json:"source,omitempty"`
}

// AuthzSource: every non-empty field must match (AND); values within a
// field are ORed; not* fields must not match.
type AuthzSource struct {
	Principals           []string `json:"principals,omitempty"`
	NotPrincipals        []string `json:"notPrincipals,omitempty"`
	RequestPrincipals    []string `json:"requestPrincipals,omitempty"`
	NotRequestPrincipals []string `json:"notRequestPrincipals,omitempty"`
	Namespaces           []string `json:"namespaces,omitempty"`
	NotNamespaces        []string `json:"notNamespaces,omitempty"`
	IPBlocks             []string `json:"ipBlocks,omitempty"`
	NotIPBlocks          []string `json:"notIpBlocks,omitempty"`
	RemoteIPBlocks       []string `json:"remoteIpBlocks,omitempty"`
	NotRemoteIPBlocks    []string `json:"notRemoteIpBlocks,omitempty"`
}

// AuthzTo is one operation.
type AuthzTo struct {
	Operation *AuthzOperation `json:"operation,omitempty"`
}

// AuthzOperation: every non-empty field must match (AND); values within a
// field are ORed.
type AuthzOperation struct {
	Hosts      []string `json:"hosts,omitempty"`
	NotHosts   []string `json:"notHosts,omitempty"`
	Ports      []string `json:"ports,omitempty"`
	NotPorts   []string `json:"notPorts,omitempty"`
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	Paths      []string `json:"paths,omitempty"`
	NotPaths   []string `json:"notPaths,omitempty"`
}

// AuthzCondition is a when condition: key matches one of values and none
// of notValues.
type AuthzCondition struct {
	Key       string   `json:"key"`
	Values    []string `json:"values,omitempty"`
	NotValues []string `json:"notValues,omitempty"`
}

// RequestAuthentication says which JWTs the selected workloads accept.
type RequestAuthentication struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       RequestAuthenticationSpec `json:"spec"`
}

// Key implements Object.
func (r *RequestAuthentication) Key() Key {
	return Key{Kind: KindRequestAuthentication, Namespace: r.NamespaceOrDefault(), Name: r.Name}
}

// RequestAuthenticationSpec is Istio's RequestAuthentication.
type RequestAuthenticationSpec struct {
	Selector *LabelSelector `json:"selector,omitempty"`
	// TargetRef(s): Gateway API attachment, refused for now (envoyfilter.go).
	TargetRef  *PolicyTargetReference  `json:"targetRef,omitempty"`
	TargetRefs []PolicyTargetReference `json:"targetRefs,omitempty"`
	JWTRules   []JWTRule               `json:"jwtRules,omitempty"`
}

// JWTRule is one accepted issuer.
type JWTRule struct {
	Issuer                string          `json:"issuer"`
	Audiences             []string        `json:"audiences,omitempty"`
	JwksURI               string          `json:"jwksUri,omitempty"`
	Jwks                  string          `json:"jwks,omitempty"`
	FromHeaders           []JWTHeader     `json:"fromHeaders,omitempty"`
	FromParams            []string        `json:"fromParams,omitempty"`
	FromCookies           []string        `json:"fromCookies,omitempty"`
	OutputPayloadToHeader string          `json:"outputPayloadToHeader,omitempty"`
	ForwardOriginalToken  bool            `json:"forwardOriginalToken,omitempty"`
	OutputClaimToHeaders  []ClaimToHeader `json:"outputClaimToHeaders,omitempty"`
	// Timeout bounds a JWKS fetch (default 5s).
	Timeout *Duration `json:"timeout,omitempty"`
}

// JWTHeader is a header carrying the token, after an optional prefix
// ("Bearer ").
type JWTHeader struct {
	Name   string `json:"name"`
	Prefix string `json:"prefix,omitempty"`
}

// ClaimToHeader copies a claim into a request header.
type ClaimToHeader struct {
	Header string `json:"header"`
	Claim  string `json:"claim"`
}

// Empty reports whether the selector leaves the choice to the namespace:
// nil or no matchLabels, so the policy applies to every workload of its
// namespace (of the mesh, in RootNamespace).
func (s *LabelSelector) Empty() bool { return s == nil || len(s.MatchLabels) == 0 }

// Matches reports whether labels has every label of the selector; an empty
// selector matches every workload.
func (s *LabelSelector) Matches(labels map[string]string) bool {
	if s == nil {
		return true
	}
	for k, want := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// ModeFor returns the mode this policy sets for a workload port: its
// portLevelMtls entry, else (absent, or UNSET, which inherits the
// policy's own mode as in Istio) spec.mtls.mode; MTLSUnset when the policy
// leaves the port to the next level (namespace, then mesh, then the
// default). Ports are the keys as written in portLevelMtls.
func (s *PeerAuthenticationSpec) ModeFor(port uint32) string {
	if m, ok := s.PortLevelMtls[strconv.FormatUint(uint64(port), 10)]; ok && m.Mode != "" && m.Mode != MTLSUnset {
		return m.Mode
	}
	if s.Mtls != nil && s.Mtls.Mode != "" {
		return s.Mtls.Mode
	}
	return MTLSUnset
}
