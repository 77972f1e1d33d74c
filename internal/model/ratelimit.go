package model

import (
	"fmt"
	"strings"
	"time"
)

// RateLimit (trellis.dev/v1) limits the requests a service's workloads
// accept, with Envoy's local rate limit semantics: every workload of the
// service keeps its own token buckets (per inbound port, per route), and a
// request that finds its bucket empty is answered 429 by the server's
// sidecar without reaching the app.
//
//	apiVersion: trellis.dev/v1
//	kind: RateLimit
//	metadata: {name: ratings}
//	spec:
//	  service: ratings          # required: short name or FQDN
//	  port: 9080                # optional: default every HTTP port of the service
//	  tokenBucket: {maxTokens: 10, tokensPerFill: 10, fillInterval: 1s}
//	  routes:                   # optional, first match wins
//	  - name: api
//	    match: [{uri: {prefix: /api}, method: {exact: POST}}]
//	    tokenBucket: {maxTokens: 2, tokensPerFill: 2, fillInterval: 1s}
//	  responseHeadersToAdd:     # optional: on every 429 of this RateLimit
//	  - {name: x-local-rate-limit, value: "true"}
//
// A request no route matches uses the service-wide bucket, or is not limited
// when there is none. Each entry of a route's match list gets its own bucket
// (it is its own Envoy route, and Envoy keeps one bucket per route). A
// refused request gets 429 with x-ratelimit-* headers, x-trellis-reason:
// rate_limited and the responseHeadersToAdd (RateLimitHeader), whichever
// bucket refused it.
type RateLimit struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       RateLimitSpec `json:"spec"`
}

// Key implements Object.
func (r *RateLimit) Key() Key {
	return Key{Kind: KindRateLimit, Namespace: r.NamespaceOrDefault(), Name: r.Name}
}

// RateLimitSpec is what a RateLimit limits and how.
type RateLimitSpec struct {
	Service     string           `json:"service"`
	Port        uint32           `json:"port,omitempty"`
	TokenBucket *TokenBucket     `json:"tokenBucket,omitempty"`
	Routes      []RateLimitRoute `json:"routes,omitempty"`
	// ResponseHeadersToAdd are added to the reply of every refused request.
	ResponseHeadersToAdd []RateLimitHeader `json:"responseHeadersToAdd,omitempty"`
}

// RateLimitRoute is a bucket for the requests its match selects.
type RateLimitRoute struct {
	Name        string             `json:"name,omitempty"`
	Match       []HTTPMatchRequest `json:"match,omitempty"`
	TokenBucket *TokenBucket       `json:"tokenBucket"`
}

// TokenBucket is Envoy's token bucket: it starts full with MaxTokens, each
// request takes one token, and every FillInterval TokensPerFill tokens are
// added, never beyond MaxTokens.
type TokenBucket struct {
	MaxTokens     uint32   `json:"maxTokens"`
	TokensPerFill *uint32  `json:"tokensPerFill,omitempty"` // Envoy's default: 1
	FillInterval  Duration `json:"fillInterval"`
}

// MinFillInterval is the shortest fill interval Envoy's local rate limit accepts.
const MinFillInterval = 50 * time.Millisecond

// Fill returns the tokens added per fill (default 1) and the interval.
// The bucket must have passed validation.
func (b *TokenBucket) Fill() (tokens uint32, every time.Duration) {
	tokens = 1
	if b.TokensPerFill != nil {
		tokens = *b.TokensPerFill
	}
	every, _ = ParseDuration(b.FillInterval)
	return tokens, every
}

func (v *validator) rateLimit(s *RateLimitSpec) {
	v.serviceHost("spec.service", s.Service)
	v.port("spec.port", s.Port, false)
	if s.TokenBucket == nil && len(s.Routes) == 0 {
		v.errf("spec", "one of tokenBucket and routes is required")
	}
	v.tokenBucket("spec.tokenBucket", s.TokenBucket)
	v.rateLimitHeaders("spec.responseHeadersToAdd", s.ResponseHeadersToAdd)
	for i := range s.Routes {
		r := &s.Routes[i]
		p := fmt.Sprintf("spec.routes[%d]", i)
		if r.TokenBucket == nil {
			v.errf(p+".tokenBucket", "required")
		}
		v.tokenBucket(p+".tokenBucket", r.TokenBucket)
		for j := range r.Match {
			v.rateLimitMatch(fmt.Sprintf("%s.match[%d]", p, j), &r.Match[j])
		}
	}
}

// rateLimitMatch checks a route match: as a VirtualService match, except
// for the fields that select the caller or the port, which mean nothing to a
// limit enforced by the server.
func (v *validator) rateLimitMatch(p string, m *HTTPMatchRequest) {
	v.httpMatch(p, m)
	if m.Port != 0 {
		v.errf(p+".port", "not supported in a RateLimit: use spec.port")
	}
	if len(m.SourceLabels) > 0 {
		v.errf(p+".sourceLabels", "not supported in a RateLimit (the server's sidecar enforces it for every caller)")
	}
	if m.SourceNamespace != "" {
		v.errf(p+".sourceNamespace", "not supported in a RateLimit (the server's sidecar enforces it for every caller)")
	}
	if len(m.Gateways) > 0 {
		v.errf(p+".gateways", "not supported in a RateLimit")
	}
}

func (v *validator) tokenBucket(p string, b *TokenBucket) {
	if b == nil {
		return
	}
	if b.MaxTokens < 1 {
		v.errf(p+".maxTokens", "must be at least 1")
	}
	if b.TokensPerFill != nil && *b.TokensPerFill < 1 {
		v.errf(p+".tokensPerFill", "must be at least 1")
	}
	if b.FillInterval == "" {
		v.errf(p+".fillInterval", "required")
		return
	}
	d, err := ParseDuration(b.FillInterval)
	switch {
	case err != nil:
		v.errf(p+".fillInterval", "%v", err)
	case d < MinFillInterval:
		v.errf(p+".fillInterval", "%s is shorter than %s, the shortest interval Envoy's local rate limit accepts", b.FillInterval, MinFillInterval)
	}
}

// serviceHost checks a service named by short name or FQDN
// ("ratings", "ratings.prod", "ratings.prod.svc.cluster.local").
func (v *validator) serviceHost(p, host string) {
	if host == "" {
		v.errf(p, "required")
		return
	}
	for _, part := range strings.Split(host, ".") {
		if r := dnsLabel(part); r != "" {
			v.errf(p, "%q is not a service name or FQDN: %s", host, r)
			return
		}
	}
}
