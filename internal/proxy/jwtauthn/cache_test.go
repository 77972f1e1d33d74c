package jwtauthn

import (
	"errors"
	"sync"
	"testing"
	"time"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
)

func cacheLen(c *tokenCache) int {
	n := 0
	c.m.Load().Range(func(any, any) bool { n++; return true })
	return n
}

// TestTokenCache: a verified token is served from the cache, but time limits are
// checked on every hit, a token from another location is verified again, and the cache
// stays within its size.
func TestTokenCache(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	p := inlineProvider(testIssuer, jwksJSON(t, jwk{key: key}))
	p.JwtCacheConfig = &jwtauthnv3.JwtCacheConfig{JwtCacheSize: 3}
	p.MaxLifetime = nil
	f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{"p": p}, true), nil)
	tok := sign(t, jose.ES256, key, "", baseClaims())

	first, err := f.Verify(testNow, bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	if cacheLen(f.cache) != 1 {
		t.Fatalf("cache holds %d tokens after one verification", cacheLen(f.cache))
	}
	again, err := f.Verify(testNow, bearer(tok))
	if err != nil || again.Principal != first.Principal {
		t.Fatalf("cached Verify = %+v, %v", again, err)
	}
	if _, err := f.Verify(testNow.Add(2*time.Hour), bearer(tok)); !errors.Is(err, ErrExpired) {
		t.Fatalf("cached token after exp: %v, want ErrExpired", err)
	}
	q, err := f.Verify(testNow, req{query: map[string]string{"access_token": tok}})
	if err != nil || q.RemoveQueryParam != "access_token" {
		t.Fatalf("same token in the query: %+v, %v; want RemoveQueryParam", q, err)
	}
	for i := range 10 {
		if _, err := f.Verify(testNow, bearer(sign(t, jose.ES256, key, "", baseClaims().with("n", i)))); err != nil {
			t.Fatal(err)
		}
	}
	if n := cacheLen(f.cache); n > 3 {
		t.Fatalf("cache holds %d tokens, size 3", n)
	}
	if _, err := f.Verify(testNow, bearer(tok[:len(tok)-2]+"AA")); err == nil {
		t.Fatal("a token differing from a cached one in its signature verified")
	}
}

// TestTokenCacheKeyRotation: a cached token stops verifying once its key leaves the
// remote JWKS.
func TestTokenCacheKeyRotation(t *testing.T) {
	a, b := loadKey(t, "ec-p256.pem"), loadKey(t, "ec-p256-b.pem")
	srv := newJWKSServer(t, jwksJSON(t, jwk{key: a, kid: "a"}))
	f := mustTranslate(t, remoteConfig(srv.URL, 20*time.Millisecond), testCache(t, fastTiming))
	r := bearer(sign(t, jose.ES256, a, "a", baseClaims()))
	eventually(t, "first fetch", func() error { _, err := f.Verify(testNow, r); return err })
	srv.serve(jwksJSON(t, jwk{key: b, kid: "b"}))
	eventually(t, "cached token refused after rotation", func() error {
		if _, err := f.Verify(testNow, r); !errors.Is(err, ErrUnknownKid) {
			return errors.New("still verifies")
		}
		return nil
	})
}

// TestVerifyConcurrent runs Verify from several goroutines over one Filter (-race).
func TestVerifyConcurrent(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	f := mustTranslate(t, istioConfig(map[string]*jwtauthnv3.JwtProvider{
		"p": inlineProvider(testIssuer, jwksJSON(t, jwk{key: key})),
	}, true), nil)
	toks := make([]string, 8)
	for i := range toks {
		toks[i] = sign(t, jose.ES256, key, "", baseClaims().with("n", i))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				o, err := f.Verify(testNow, bearer(toks[(g+i)%len(toks)]))
				if err != nil || !o.Authenticated {
					t.Errorf("Verify = %v, %v", o.Authenticated, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
