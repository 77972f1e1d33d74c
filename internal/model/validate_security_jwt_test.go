package model

import "testing"

// A valid JWKS of each key type.
const (
	jwksRSA = `{"keys":[{"kty":"RSA","alg":"RS256","kid":"a","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX","e":"AQAB"}]}`
	jwksEC  = `{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`
	jwksOKP = `{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"RSA","use":"enc","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"}]}`
)

func TestValidateRequestAuthentication(t *testing.T) {
	rule := func(s string) string { return ra("jwtRules:\n- " + s) }
	uri := func(u string) string { return rule("{issuer: a, jwksUri: '" + u + "'}") }
	jwks := func(j string) string { return rule("{issuer: a, jwks: '" + j + "'}") }
	const ssrf = "is a cloud metadata / link-local address: refused (SSRF)"
	const p = "spec.jwtRules[0]"
	runSecCases(t, []secCase{
		{name: "inline RSA", doc: jwks(jwksRSA)},
		{name: "inline EC", doc: jwks(jwksEC)},
		{name: "inline Ed25519 beside an encryption key", doc: jwks(jwksOKP)},
		{name: "loopback URI", doc: uri("http://127.0.0.1:8080/jwks.json")},
		{name: "localhost URI", doc: uri("http://localhost/jwks.json")},
		{name: "IPv6 loopback URI", doc: uri("https://[::1]:8443/jwks.json")},
		{name: "every location and output", doc: rule(`issuer: a
  jwksUri: https://example.com/jwks.json
  audiences: [api, web]
  fromHeaders: [{name: x-jwt, prefix: "Bearer "}, {name: authorization}]
  fromParams: [token]
  fromCookies: [session]
  outputPayloadToHeader: x-jwt-payload
  outputClaimToHeaders: [{header: x-sub, claim: sub}, {header: x-group, claim: groups}]
  timeout: 1.5s`)},
		{name: "no issuer", doc: rule("{jwksUri: 'https://a/jwks'}"), path: p + ".issuer", reason: "required"},
		{name: "duplicate issuer", doc: ra("jwtRules:\n- {issuer: a, jwksUri: 'https://a/k'}\n- {issuer: b, jwksUri: 'https://b/k'}\n- {issuer: a, jwksUri: 'https://c/k'}"),
			path: "spec.jwtRules[2].issuer", reason: `duplicate issuer "a" (also spec.jwtRules[0])`},
		{name: "empty audience", doc: rule("{issuer: a, jwksUri: 'https://a/k', audiences: [x, '']}"), path: p + ".audiences[1]", reason: "must not be empty"},
		{name: "jwks and jwksUri", doc: rule("{issuer: a, jwksUri: 'https://a/k', jwks: '" + jwksRSA + "'}"), path: p, reason: "jwks and jwksUri are mutually exclusive"},
		{name: "no keys", doc: rule("{issuer: a}"), path: p, reason: "one of jwksUri and jwks is required"},
		{name: "targetRefs", doc: ra("targetRefs: [{kind: Gateway, name: g}]"), path: "spec.targetRefs", reason: "not supported"},

		{name: "jwks not JSON", doc: jwks("not json"), path: p + ".jwks", reason: "not a JSON Web Key Set"},
		{name: "jwks a single key", doc: jwks(`{"kty":"RSA","n":"AQAB","e":"AQAB"}`), path: p + ".jwks", reason: `want an object {"keys": [...]}`},
		{name: "jwks an array", doc: jwks(`[{"kty":"RSA","n":"AQAB","e":"AQAB"}]`), path: p + ".jwks", reason: "not a JSON Web Key Set"},
		{name: "jwks keys not an array", doc: jwks(`{"keys":{}}`), path: p + ".jwks", reason: "keys: want an array"},
		{name: "jwks empty", doc: jwks(`{"keys":[]}`), path: p + ".jwks", reason: "no signature key"},
		{name: "jwks only encryption keys", doc: jwks(`{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}`), path: p + ".jwks", reason: "no signature key"},
		{name: "jwks key not an object", doc: jwks(`{"keys":[1]}`), path: p + ".jwks", reason: "keys[0]: want an object"},
		{name: "jwks HMAC key", doc: jwks(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), path: p + ".jwks", reason: `keys[0]: kty "oct": symmetric (HMAC) keys are not accepted`},
		{name: "jwks no kty", doc: jwks(`{"keys":[{"n":"AQAB","e":"AQAB"}]}`), path: p + ".jwks", reason: "keys[0]: kty: required"},
		{name: "jwks unknown kty", doc: jwks(`{"keys":[{"kty":"DSA"}]}`), path: p + ".jwks", reason: `kty "DSA" is not one of RSA, EC, OKP`},
		{name: "jwks alg none", doc: jwks(`{"keys":[{"kty":"RSA","alg":"none","n":"AQAB","e":"AQAB"}]}`), path: p + ".jwks", reason: `alg "none" is not one of RS256`},
		{name: "jwks alg HS256", doc: jwks(`{"keys":[{"kty":"RSA","alg":"HS256","n":"AQAB","e":"AQAB"}]}`), path: p + ".jwks", reason: `alg "HS256" is not one of`},
		{name: "jwks alg not a string", doc: jwks(`{"keys":[{"kty":"RSA","alg":1,"n":"AQAB","e":"AQAB"}]}`), path: p + ".jwks", reason: "alg: want a non-empty string"},
		{name: "jwks RSA without n", doc: jwks(`{"keys":[{"kty":"RSA","e":"AQAB"}]}`), path: p + ".jwks", reason: "keys[0]: n: required"},
		{name: "jwks n not base64url", doc: jwks(`{"keys":[{"kty":"RSA","n":"a+b/","e":"AQAB"}]}`), path: p + ".jwks", reason: "n: not base64url"},
		{name: "jwks second key", doc: jwks(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"},{"kty":"EC","crv":"P-256","x":"AQAB"}]}`), path: p + ".jwks", reason: "keys[1]: y: required"},
		{name: "jwks curve", doc: jwks(`{"keys":[{"kty":"EC","crv":"secp256k1","x":"AQAB","y":"AQAB"}]}`), path: p + ".jwks", reason: `crv "secp256k1" is not one of`},
		{name: "jwks curve and alg", doc: jwks(`{"keys":[{"kty":"EC","crv":"P-256","alg":"ES384","x":"AQAB","y":"AQAB"}]}`), path: p + ".jwks", reason: `alg "ES384" does not match the curve (want ES256)`},
		{name: "jwks Ed448", doc: jwks(`{"keys":[{"kty":"OKP","crv":"Ed448","x":"AQAB"}]}`), path: p + ".jwks", reason: "crv: want Ed25519"},

		{name: "URI scheme", doc: uri("ftp://example.com/jwks"), path: p + ".jwksUri", reason: "the scheme must be http or https"},
		{name: "relative URI", doc: uri("/jwks.json"), path: p + ".jwksUri", reason: "the scheme must be http or https"},
		{name: "URI without host", doc: uri("https:///jwks.json"), path: p + ".jwksUri", reason: "want an absolute URL with a host"},
		{name: "opaque URI", doc: uri("https:example.com"), path: p + ".jwksUri", reason: "want an absolute URL with a host"},
		{name: "URI port", doc: uri("https://example.com:0/jwks"), path: p + ".jwksUri", reason: `port "0" is not 1..65535`},
		{name: "URI not parsable", doc: uri("http://%31%36%39.254.169.254/"), path: p + ".jwksUri", reason: "not a URL"},
		{name: "AWS metadata", doc: uri("http://169.254.169.254/latest/meta-data/iam/security-credentials/"), path: p + ".jwksUri", reason: "169.254.169.254 " + ssrf},
		{name: "link-local IPv4", doc: uri("http://169.254.1.1:8080/jwks"), path: p + ".jwksUri", reason: ssrf},
		{name: "link-local IPv6", doc: uri("http://[fe80::1]/jwks"), path: p + ".jwksUri", reason: ssrf},
		{name: "link-local IPv6 with zone", doc: uri("http://[fe80::1%25eth0]/jwks"), path: p + ".jwksUri", reason: ssrf},
		{name: "AWS IPv6 metadata", doc: uri("http://[fd00:ec2::254]/latest/"), path: p + ".jwksUri", reason: ssrf},
		{name: "Alibaba metadata", doc: uri("http://100.100.100.200/latest/meta-data/"), path: p + ".jwksUri", reason: ssrf},
		{name: "GCP metadata name", doc: uri("http://metadata.google.internal/computeMetadata/v1/"), path: p + ".jwksUri", reason: "metadata.google.internal " + ssrf},
		{name: "metadata name with a final dot", doc: uri("http://Metadata.Google.Internal./x"), path: p + ".jwksUri", reason: ssrf},
		{name: "metadata short name", doc: uri("http://METADATA/computeMetadata/v1/"), path: p + ".jwksUri", reason: ssrf},
		{name: "instance-data", doc: uri("http://instance-data/latest/"), path: p + ".jwksUri", reason: ssrf},
		{name: "IPv4-mapped IPv6", doc: uri("http://[::ffff:169.254.169.254]/"), path: p + ".jwksUri", reason: ssrf},
		{name: "NAT64", doc: uri("http://[64:ff9b::a9fe:a9fe]/"), path: p + ".jwksUri", reason: ssrf},
		{name: "decimal IPv4", doc: uri("http://2852039166/"), path: p + ".jwksUri", reason: ssrf},
		{name: "hex IPv4", doc: uri("http://0xA9FEA9FE/"), path: p + ".jwksUri", reason: ssrf},
		{name: "octal IPv4", doc: uri("http://0251.0376.0251.0376/"), path: p + ".jwksUri", reason: ssrf},
		{name: "short IPv4", doc: uri("http://169.254.43518/"), path: p + ".jwksUri", reason: ssrf},
		{name: "IPv4 with a final dot", doc: uri("http://169.254.169.254./"), path: p + ".jwksUri", reason: ssrf},
		{name: "non-standard IPv4", doc: uri("http://0177.0.0.1/jwks"), path: p + ".jwksUri", reason: "an IPv4 address in a non-standard form"},

		{name: "header name", doc: rule("{issuer: a, jwksUri: 'https://a/k', fromHeaders: [{name: 'x jwt'}]}"), path: p + ".fromHeaders[0].name", reason: `"x jwt" is not an HTTP header name`},
		{name: "empty header name", doc: rule("{issuer: a, jwksUri: 'https://a/k', fromHeaders: [{name: ''}]}"), path: p + ".fromHeaders[0].name", reason: "is not an HTTP header name"},
		{name: "header prefix", doc: rule("{issuer: a, jwksUri: 'https://a/k', fromHeaders: [{name: x, prefix: \"Bearer\\r\\n\"}]}"), path: p + ".fromHeaders[0].prefix", reason: "control character"},
		{name: "empty param", doc: rule("{issuer: a, jwksUri: 'https://a/k', fromParams: [t, '']}"), path: p + ".fromParams[1]", reason: "must not be empty"},
		{name: "cookie", doc: rule("{issuer: a, jwksUri: 'https://a/k', fromCookies: ['a;b']}"), path: p + ".fromCookies[0]", reason: "is not a cookie name"},
		{name: "payload to pseudo-header", doc: rule("{issuer: a, jwksUri: 'https://a/k', outputPayloadToHeader: ':path'}"), path: p + ".outputPayloadToHeader", reason: "pseudo-header"},
		{name: "payload to hop-by-hop", doc: rule("{issuer: a, jwksUri: 'https://a/k', outputPayloadToHeader: Connection}"), path: p + ".outputPayloadToHeader", reason: `hop-by-hop or framing header "Connection"`},
		{name: "payload to host", doc: rule("{issuer: a, jwksUri: 'https://a/k', outputPayloadToHeader: host}"), path: p + ".outputPayloadToHeader", reason: "hop-by-hop or framing"},
		{name: "payload to XFCC", doc: rule("{issuer: a, jwksUri: 'https://a/k', outputPayloadToHeader: X-Forwarded-Client-Cert}"), path: p + ".outputPayloadToHeader", reason: "is set by the sidecar"},
		{name: "claim to trellis header", doc: rule("{issuer: a, jwksUri: 'https://a/k', outputClaimToHeaders: [{header: x-trellis-peer, claim: sub}]}"), path: p + ".outputClaimToHeaders[0].header", reason: "is set by the sidecar"},
		{name: "claim to bad header", doc: rule("{issuer: a, jwksUri: 'https://a/k', outputClaimToHeaders: [{header: 'a b', claim: sub}]}"), path: p + ".outputClaimToHeaders[0].header", reason: "is not an HTTP header name"},
		{name: "claim to transfer-encoding", doc: rule("{issuer: a, jwksUri: 'https://a/k', outputClaimToHeaders: [{header: Transfer-Encoding, claim: sub}]}"), path: p + ".outputClaimToHeaders[0].header", reason: "hop-by-hop"},
		{name: "claim without name", doc: rule("{issuer: a, jwksUri: 'https://a/k', outputClaimToHeaders: [{header: x-sub, claim: ''}]}"), path: p + ".outputClaimToHeaders[0].claim", reason: "required"},
		{name: "header written twice", doc: rule("{issuer: a, jwksUri: 'https://a/k', outputPayloadToHeader: x-jwt, outputClaimToHeaders: [{header: X-JWT, claim: sub}]}"),
			path: p + ".outputClaimToHeaders[0].header", reason: `header "X-JWT" is also written by spec.jwtRules[0].outputPayloadToHeader`},
		{name: "zero timeout", doc: rule("{issuer: a, jwksUri: 'https://a/k', timeout: 0s}"), path: p + ".timeout", reason: "must be positive"},
		{name: "negative timeout", doc: rule("{issuer: a, jwksUri: 'https://a/k', timeout: -1s}"), path: p + ".timeout", reason: "must not be negative"},
		{name: "timeout without unit", doc: rule("{issuer: a, jwksUri: 'https://a/k', timeout: '5'}"), path: p + ".timeout", reason: "invalid duration"},
	})
}

func TestParseLegacyIPv4(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" when not an address
	}{
		{"169.254.169.254", "169.254.169.254"},
		{"2852039166", "169.254.169.254"},
		{"0xa9fea9fe", "169.254.169.254"},
		{"0251.0376.0251.0376", "169.254.169.254"},
		{"169.254.43518", "169.254.169.254"},
		{"169.16689662", "169.254.169.254"},
		{"0", "0.0.0.0"},
		{"1.2.3.4.5", ""},
		{"256.1.1.1", ""},
		{"1.2.3.256", ""},
		{"4294967296", ""},
		{"1.2.65536", ""},
		{"08.1.1.1", ""},
		{"0x", ""},
		{"example.com", ""},
		{"", ""},
		{"1..2", ""},
	} {
		a, ok := parseLegacyIPv4(tc.in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("parseLegacyIPv4(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
