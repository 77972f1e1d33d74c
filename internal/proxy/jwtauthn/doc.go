// Package jwtauthn is the proxy's envoy.filters.http.jwt_authn: it verifies the JWT a
// request carries against the providers of one JwtAuthentication config, with Envoy's
// semantics and Istio's view of the result (request.auth.*).
//
//	JwtAuthentication ──Translate──► Filter (immutable)
//	                                   │ locations: header+prefix, query param, cookie
//	                                   │ providers: issuer, audiences, skew, output headers
//	                                   │            └─ keys: inline JWKS, or a remote entry ─┐
//	                                   ▼                                                     │
//	Request ──Verify──► extract one token ─► parse (header, payload) ─► provider by iss      │
//	                    ─► exp/nbf/aud ─► signature (go-jose, key by kid/alg) ─► Outcome     │
//	                                                                                         │
//	KeyCache (owned by the Proxy) ◄──────────────────────────────────────────────────────────┘
//	  one entry per (uri, timeout, cache_duration), shared by every Filter that names it:
//	  fetched at once, refreshed every cache_duration, retried with backoff on failure
//	  (last good keys kept), dropped 10 minutes after the last Filter using it is gone.
//	  Requests read the key set through an atomic pointer: no locks on the request path.
//
// Decisions worth knowing (Envoy / Istio, and where this package is stricter):
//
//   - One token per request. A token found in two locations, or twice in one location
//     (two Authorization headers), is an error (401), as in ADR 002.
//   - The token's iss selects the provider among those the requirement names; a provider
//     with an empty issuer accepts any iss, as in Envoy. The provider must also list the
//     location the token came from.
//   - Algorithms: RS256/384/512, PS256/384/512, ES256/384/512, EdDSA. Never "none", never
//     HMAC: JWKS "oct" keys are dropped when the set is parsed, so the RS256-key-as-HMAC
//     confusion has no key to use. A JWK's alg, when set, must equal the token's; keys
//     whose use is not "sig" are skipped. A token kid selects the keys with that kid; when
//     none has it, keys without a kid are tried (Envoy), and with none of those either the
//     token fails (unknown kid). A remote set without the kid is re-fetched early (at most
//     every 30 s), so a key rotation is picked up before cache_duration ends.
//   - exp is optional (unless require_expiration or max_lifetime), nbf optional; both with
//     clock_skew_seconds (default 60). aud may be a string or an array; audiences compare
//     after removing an http:// or https:// prefix and a trailing slash (Envoy).
//   - Token JSON with duplicate member names, a header with crit or b64, a base64 segment
//     that is not strict unpadded base64url, or a token over 8 KiB: refused before any
//     signature work.
//   - Claims: numbers are json.Number (exact, as the token wrote them).
//   - Verified tokens are cached per Filter (jwt_cache_config sizes, default 100 tokens
//     of at most 4 KiB; lock-free reads, emptied when full). A hit re-checks exp, nbf,
//     audiences and max_lifetime, and counts only for the same location and the very key
//     set that verified the token, so a JWKS refresh re-verifies it once.
//   - Header values: a prefix must start the header value (Envoy searches anywhere in it);
//     spaces after the prefix are skipped.
//   - Rules: one rule matching prefix "/" with requires = provider_name, or requires_any of
//     provider names with at most one allow_missing; no rules (or a rule without requires)
//     verifies nothing. Anything else is refused by Translate (NACK).
//   - bypass_cors_preflight is honoured when the Request also implements MethodRequest;
//     otherwise a preflight is verified like any request (fail closed).
package jwtauthn
