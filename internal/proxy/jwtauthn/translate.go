package jwtauthn

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Defaults from Envoy's JwtProvider, RemoteJwks and ADR 002.
const (
	DefaultClockSkew     = 60 * time.Second
	DefaultCacheDuration = 5 * time.Minute
	DefaultFetchTimeout  = 5 * time.Second
)

// Filter is one translated envoy.filters.http.jwt_authn config: immutable, safe for
// concurrent use.
type Filter struct {
	verifyNothing bool // no rules, or a rule without requires
	allowMissing  bool
	bypassCORS    bool
	stripFailure  bool

	byIssuer  map[string][]*provider // providers named by the requirement, by issuer
	anyIssuer []*provider            // named providers without an issuer: any iss

	headers []headerGroup
	params  []*location
	cookies []*location

	sanitize []string // forward_payload_header and claim_to_headers of every provider
	warnings []string
	cache    *tokenCache // verified tokens; nil when the Filter verifies nothing
}

// StripFailureResponse reports strip_failure_response: a 401 carries no body or details.
func (f *Filter) StripFailureResponse() bool { return f.stripFailure }

// Warnings lists what Translate accepted but a request will feel: an inline JWKS without
// a usable key (its tokens fail), keys skipped in it. The proxy logs them once.
func (f *Filter) Warnings() []string { return f.warnings }

// Translate reads a JwtAuthentication. Its errors name the field path and refuse fields
// it does not implement in a way that changes behaviour. keys may be nil when no
// provider uses remote_jwks.
func Translate(cfg *jwtauthnv3.JwtAuthentication, keys *KeyCache) (*Filter, error) {
	if cfg == nil {
		return nil, errors.New("jwt_authn: config is nil")
	}
	if cfg.GetFilterStateRules() != nil {
		return nil, errors.New("filter_state_rules: not supported")
	}
	if len(cfg.GetRequirementMap()) > 0 {
		return nil, errors.New("requirement_map: not supported")
	}
	f := &Filter{
		bypassCORS:   cfg.GetBypassCorsPreflight(),
		stripFailure: cfg.GetStripFailureResponse(),
		byIssuer:     make(map[string][]*provider),
	}
	names := make([]string, 0, len(cfg.GetProviders()))
	for name := range cfg.GetProviders() {
		names = append(names, name)
	}
	sort.Strings(names)
	providers := make(map[string]*provider, len(names))
	for _, name := range names {
		path := fmt.Sprintf("providers[%q]", name)
		p, err := translateProvider(name, cfg.GetProviders()[name])
		if err != nil {
			return nil, fmt.Errorf("%s.%w", path, err)
		}
		if p.remoteSpec != nil && keys == nil {
			return nil, fmt.Errorf("%s.remote_jwks: no key cache to fetch it with", path)
		}
		for _, w := range p.warnings {
			f.warnings = append(f.warnings, path+"."+w)
		}
		providers[name] = p
		f.sanitize = appendUnique(f.sanitize, p.outputHeaders()...)
	}
	required, err := f.translateRules(cfg.GetRules(), providers)
	if err != nil {
		return nil, err
	}
	for _, name := range required {
		p := providers[name]
		if p.issuer == "" {
			f.anyIssuer = append(f.anyIssuer, p)
		} else {
			f.byIssuer[p.issuer] = append(f.byIssuer[p.issuer], p)
		}
		f.addLocations(p)
	}
	f.finishLocations()
	if !f.verifyNothing {
		f.cache = newTokenCache(cacheSizes(cfg))
	}

	// Remote key sets last (nothing after this fails, so no entry is acquired in vain),
	// and only for the providers the requirement names: the others are never used.
	var entries []*remoteEntry
	for _, name := range required {
		if p := providers[name]; p.remoteSpec != nil {
			p.remote = keys.acquire(*p.remoteSpec)
			entries = append(entries, p.remote)
		}
	}
	if len(entries) > 0 {
		runtime.AddCleanup(f, releaseAll, entries)
	}
	return f, nil
}

// maxTokenCacheSize caps jwt_cache_size: a cache entry holds up to 8 KiB of token.
const maxTokenCacheSize = 10_000

// cacheSizes reads the providers' jwt_cache_config: the largest size and token size
// set, else Envoy's defaults.
func cacheSizes(cfg *jwtauthnv3.JwtAuthentication) (size, maxToken int) {
	for _, p := range cfg.GetProviders() {
		size = max(size, int(p.GetJwtCacheConfig().GetJwtCacheSize()))
		maxToken = max(maxToken, int(p.GetJwtCacheConfig().GetJwtMaxTokenSize()))
	}
	if size == 0 {
		size = DefaultTokenCacheSize
	}
	if maxToken == 0 {
		maxToken = DefaultTokenCacheMaxToken
	}
	return min(size, maxTokenCacheSize), min(maxToken, MaxTokenSize)
}

func releaseAll(entries []*remoteEntry) {
	for _, e := range entries {
		e.release()
	}
}

// translateRules accepts the shapes Trellis emits (ADR 002) and returns the names of the
// providers the requirement lists, in order.
func (f *Filter) translateRules(rules []*jwtauthnv3.RequirementRule, providers map[string]*provider) ([]string, error) {
	switch len(rules) {
	case 0:
		f.verifyNothing = true
		return nil, nil
	case 1:
	default:
		return nil, errors.New("rules: more than one rule is not supported (use one rule matching prefix \"/\")")
	}
	rule := rules[0]
	if err := checkMatchAll(rule.GetMatch()); err != nil {
		return nil, fmt.Errorf("rules[0].match: %w", err)
	}
	if _, ok := rule.GetRequirementType().(*jwtauthnv3.RequirementRule_RequirementName); ok {
		return nil, errors.New("rules[0].requirement_name: not supported")
	}
	req := rule.GetRequires()
	if req == nil {
		f.verifyNothing = true
		return nil, nil
	}
	known := func(path, name string) error {
		if _, ok := providers[name]; !ok {
			return fmt.Errorf("%s: provider %q is not defined", path, name)
		}
		return nil
	}
	switch r := req.GetRequiresType().(type) {
	case *jwtauthnv3.JwtRequirement_ProviderName:
		if err := known("rules[0].requires.provider_name", r.ProviderName); err != nil {
			return nil, err
		}
		return []string{r.ProviderName}, nil
	case *jwtauthnv3.JwtRequirement_RequiresAny:
		var names []string
		for i, sub := range r.RequiresAny.GetRequirements() {
			path := fmt.Sprintf("rules[0].requires.requires_any.requirements[%d]", i)
			switch s := sub.GetRequiresType().(type) {
			case *jwtauthnv3.JwtRequirement_ProviderName:
				if err := known(path+".provider_name", s.ProviderName); err != nil {
					return nil, err
				}
				names = appendUnique(names, s.ProviderName)
			case *jwtauthnv3.JwtRequirement_AllowMissing:
				if f.allowMissing {
					return nil, fmt.Errorf("%s.allow_missing: given twice", path)
				}
				f.allowMissing = true
			default:
				return nil, fmt.Errorf("%s: only provider_name and allow_missing are supported", path)
			}
		}
		if len(names) == 0 {
			return nil, errors.New("rules[0].requires.requires_any: names no provider")
		}
		return names, nil
	}
	return nil, errors.New("rules[0].requires: only provider_name and requires_any are supported")
}

// checkMatchAll accepts a RouteMatch that matches every request: prefix "/" and nothing
// else (case_sensitive makes no difference to "/").
func checkMatchAll(m *routev3.RouteMatch) error {
	if m == nil {
		return errors.New("required")
	}
	if m.GetPrefix() != "/" {
		return errors.New("only prefix \"/\" is supported")
	}
	rest := proto.Clone(m).(*routev3.RouteMatch)
	rest.PathSpecifier = nil
	rest.CaseSensitive = nil
	if !proto.Equal(rest, &routev3.RouteMatch{}) {
		return errors.New("only prefix \"/\" is supported (no headers, query parameters or other conditions)")
	}
	return nil
}

// remoteSpec identifies a remote JWKS entry in the KeyCache.
type remoteSpec struct {
	uri           string
	timeout       time.Duration
	cacheDuration time.Duration
}

func translateRemote(r *jwtauthnv3.RemoteJwks) (*remoteSpec, error) {
	u := r.GetHttpUri()
	if u == nil {
		return nil, errors.New("remote_jwks.http_uri: required")
	}
	if err := checkJWKSURI(u.GetUri()); err != nil {
		return nil, fmt.Errorf("remote_jwks.http_uri.uri: %w", err)
	}
	spec := &remoteSpec{uri: u.GetUri(), timeout: DefaultFetchTimeout, cacheDuration: DefaultCacheDuration}
	if t := u.GetTimeout(); t != nil {
		d, err := positive(t)
		if err != nil {
			return nil, fmt.Errorf("remote_jwks.http_uri.timeout: %w", err)
		}
		spec.timeout = d
	}
	if c := r.GetCacheDuration(); c != nil {
		d, err := positive(c)
		if err != nil {
			return nil, fmt.Errorf("remote_jwks.cache_duration: %w", err)
		}
		spec.cacheDuration = d
	}
	if r.GetAsyncFetch().GetFailedRefetchDuration() != nil {
		return nil, errors.New("remote_jwks.async_fetch.failed_refetch_duration: not supported (retries back off from 1s to 1m)")
	}
	if r.GetRetryPolicy() != nil {
		return nil, errors.New("remote_jwks.retry_policy: not supported (retries back off from 1s to 1m)")
	}
	return spec, nil
}

// checkJWKSURI accepts absolute http and https URLs, and refuses literal link-local,
// unspecified and multicast addresses (cloud metadata endpoints live at 169.254.169.254).
// Host names are not resolved here: the control plane refuses them at apply.
func checkJWKSURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("no host")
	}
	if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalMulticast() {
			return fmt.Errorf("address %s is not allowed (link-local, unspecified or multicast)", ip)
		}
	}
	return nil
}

func positive(d *durationpb.Duration) (time.Duration, error) {
	if err := d.CheckValid(); err != nil {
		return 0, err
	}
	v := d.AsDuration()
	if v <= 0 {
		return 0, errors.New("want a positive duration")
	}
	return v, nil
}

func inlineJWKS(ds *corev3.DataSource) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case nil:
		return nil, errors.New("local_jwks: inline_string required")
	}
	return nil, errors.New("local_jwks: only inline_string and inline_bytes are supported")
}

func appendUnique(list []string, items ...string) []string {
	for _, s := range items {
		if !contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}
