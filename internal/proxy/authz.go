package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellis-mesh/trellis/internal/proxy/rbac"
)

// Authentication and authorization filters of HTTP listeners (ADR 002):
//
//	http_filters, in order ─► jwt_authn: Verify ─ invalid token ─► 401 jwt_invalid
//	                         │     └─ Outcome kept for the request: headers removed/set,
//	                         │        request.auth.* for the rbac filters after it
//	                         └► rbac: shadow_rules (counted, logged) ─► rules
//	                               ALLOW: no policy matched ─► 403 rbac_denied
//	                               DENY: a policy matched   ─► 403 rbac_denied
//	                               LOG: a match is counted and logged, never denies
//
// Both request paths run the same decisions (authorize, replies below)
// over their own views of the request (authz_h1.go, authz_http.go); TCP
// listeners run network rbac filters once per connection (authz_tcp.go).

var (
	typeJWTAuthn = typeURL(&jwtauthnv3.JwtAuthentication{})
	typeHTTPRBAC = typeURL(&rbachttpv3.RBAC{})
)

// Values of x-trellis-reason for the authz filters' replies.
const (
	reasonJWTInvalid = "jwt_invalid"
	reasonRBACDenied = "rbac_denied"
)

// Envoy's bodies of the replies (also their grpc-message).
const (
	bodyJWTInvalid = "Jwt verification fails"
	bodyRBACDenied = "RBAC: access denied"
)

// errNoJWTFilter fails a request closed if a jwt_authn filter was never
// bound (bindAuthn runs for every config that serves).
var errNoJWTFilter = errors.New("jwt_authn filter not translated")

// jwtFilter is one jwt_authn filter. Its Filter needs the Proxy's key
// cache, so it is made by bindAuthn once the listener translated.
type jwtFilter struct {
	cfg    *jwtauthnv3.JwtAuthentication
	field  string // where the config is, for errors: http_filters[i] ("name")
	filter *jwtauthn.Filter
}

// rbacFilter is one HTTP or network rbac filter.
type rbacFilter struct {
	name      string
	rules     *rbac.Engine  // nil: rules absent, nothing is enforced
	shadow    *rbac.Engine  // nil: no shadow rules
	delayDeny time.Duration // network filters: wait before closing a denied connection
}

// translateJWTFilter reads a jwt_authn filter config; bindAuthn translates
// it.
func translateJWTFilter(tc *anypb.Any, field string) (*jwtFilter, error) {
	var cfg jwtauthnv3.JwtAuthentication
	if err := tc.UnmarshalTo(&cfg); err != nil {
		return nil, fmt.Errorf("typed_config: %w", err)
	}
	return &jwtFilter{cfg: &cfg, field: field}, nil
}

// translateHTTPRBAC translates an envoy.filters.http.rbac config. The xDS
// matcher forms are refused; rules absent means no enforcement.
func translateHTTPRBAC(name string, tc *anypb.Any) (*rbacFilter, error) {
	var cfg rbachttpv3.RBAC
	if err := tc.UnmarshalTo(&cfg); err != nil {
		return nil, fmt.Errorf("typed_config: %w", err)
	}
	if cfg.GetMatcher() != nil {
		return nil, fmt.Errorf("typed_config.matcher: the xDS matcher forms are not supported, use rules")
	}
	if cfg.GetShadowMatcher() != nil {
		return nil, fmt.Errorf("typed_config.shadow_matcher: the xDS matcher forms are not supported, use shadow_rules")
	}
	return newRBACFilter(name, cfg.GetRules(), cfg.GetShadowRules())
}

func newRBACFilter(name string, rules, shadow *rbacv3.RBAC) (*rbacFilter, error) {
	f := &rbacFilter{name: name}
	var err error
	if rules != nil {
		if f.rules, err = rbac.Translate(rules); err != nil {
			return nil, fmt.Errorf("typed_config.rules.%w", err)
		}
	}
	if shadow != nil {
		if f.shadow, err = rbac.Translate(shadow); err != nil {
			return nil, fmt.Errorf("typed_config.shadow_rules.%w", err)
		}
	}
	return f, nil
}

// bindAuthn translates the jwt_authn filters of a listener's chains with
// the Proxy's key cache (remote JWKS are fetched and kept across updates
// there). Errors name the filter.
func (p *Proxy) bindAuthn(lc *listenerConfig) error {
	for c := lc; c != nil; c = c.other {
		for i := range c.filters.chain {
			j := c.filters.chain[i].jwt
			if j == nil || j.filter != nil {
				continue
			}
			f, err := jwtauthn.Translate(j.cfg, p.jwtKeys)
			if err != nil {
				return fmt.Errorf("http_connection_manager.%s.typed_config.%w", j.field, err)
			}
			for _, w := range f.Warnings() {
				p.log.Warn("jwt_authn: "+w, "listener", lc.name, "filter", j.field)
			}
			j.filter = f
		}
	}
	return nil
}

// authorize runs an rbac filter over r: false when the request (or
// connection) is denied. Shadow rules are counted and logged only.
func (f *rbacFilter) authorize(lc *listenerConfig, log *slog.Logger, r rbac.Request) bool {
	if f.shadow != nil {
		if allowed, _, policy := f.shadow.Allowed(r); allowed {
			lc.stats.rbacShadowAllowed.Add(1)
		} else {
			lc.stats.rbacShadowDenied.Add(1)
			log.Info("rbac shadow rules deny", "listener", lc.name, "filter", f.name, "policy", policy)
		}
	}
	if f.rules == nil {
		return true
	}
	allowed, matched, policy := f.rules.Allowed(r)
	switch {
	case f.rules.Action() == rbac.Log:
		if matched {
			lc.stats.rbacAudit.Add(1)
			log.Info("rbac audit", "listener", lc.name, "filter", f.name, "policy", policy)
		}
		return true
	case allowed:
		lc.stats.rbacAllowed.Add(1)
		return true
	}
	lc.stats.rbacDenied.Add(1)
	if log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("rbac denied", "listener", lc.name, "filter", f.name, "action", f.rules.Action().String(), "policy", policy)
	}
	return false
}

// rbacDeniedReply is the 403 of a denied request (gRPC: PERMISSION_DENIED).
func rbacDeniedReply(grpc bool) proxyReply {
	return proxyReply{code: http.StatusForbidden, reason: reasonRBACDenied, body: bodyRBACDenied,
		contentType: "text/plain", grpc: grpc, grpcStatus: -1}
}

// jwtInvalidReply is the 401 of a request with an invalid token (gRPC:
// UNAUTHENTICATED), with www-authenticate naming the request's URI as the
// realm, as Envoy does; strip_failure_response leaves out both.
func jwtInvalidReply(f *jwtauthn.Filter, grpc bool, authenticate []byte) proxyReply {
	lr := proxyReply{code: http.StatusUnauthorized, reason: reasonJWTInvalid, grpc: grpc, grpcStatus: -1}
	if f == nil || !f.StripFailureResponse() {
		lr.body, lr.contentType, lr.authenticate = bodyJWTInvalid, "text/plain", authenticate
	}
	return lr
}

// appendAuthenticate appends the www-authenticate value of a 401:
// Bearer realm="<scheme>://<host><path>", error="invalid_token". Quotes and
// backslashes in the URI are escaped.
func appendAuthenticate[T text](dst []byte, scheme string, host, path T) []byte {
	dst = append(dst, `Bearer realm="`...)
	dst = append(dst, scheme...)
	dst = append(dst, "://"...)
	dst = appendQuoted(dst, host)
	dst = appendQuoted(dst, path)
	return append(dst, `", error="invalid_token"`...)
}

func appendQuoted[T text](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			dst = append(dst, '\\', c)
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}
