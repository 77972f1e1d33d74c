package jwtauthn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/durationpb"
)

// jwksServer serves a JWKS it can change, fail (status 500) or stop serving.
type jwksServer struct {
	*httptest.Server
	body     atomic.Pointer[string]
	failing  atomic.Bool
	requests atomic.Int64
}

func newJWKSServer(t *testing.T, jwks string) *jwksServer {
	s := &jwksServer{}
	s.body.Store(&jwks)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.failing.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, *s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(jwks string) { s.body.Store(&jwks) }

// testCache is a KeyCache with short timings, stopped when the test ends.
func testCache(t *testing.T, tm timing) *KeyCache {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := NewKeyCache(ctx, &http.Client{}, nil)
	c.timing = tm
	return c
}

var fastTiming = timing{idle: time.Hour, minBackoff: 10 * time.Millisecond, maxBackoff: 40 * time.Millisecond, minKick: time.Hour}

func remoteConfig(uri string, cacheDuration time.Duration) *jwtauthnv3.JwtAuthentication {
	p := remoteProvider(uri)
	p.GetRemoteJwks().CacheDuration = durationpb.New(cacheDuration)
	return istioConfig(map[string]*jwtauthnv3.JwtProvider{"origins-0": p}, true)
}

// eventually retries check until it returns nil or 5 s pass.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after 5s", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKeyCacheFirstFetch: before the first successful fetch a token fails closed
// (ErrNoKeys); once the server answers, the same token verifies.
func TestKeyCacheFirstFetch(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	srv := newJWKSServer(t, jwksJSON(t, jwk{key: key, kid: "a"}))
	srv.failing.Store(true)
	f := mustTranslate(t, remoteConfig(srv.URL+"/jwks", time.Hour), testCache(t, fastTiming))
	r := bearer(sign(t, jose.ES256, key, "a", baseClaims()))

	eventually(t, "failed fetches", func() error {
		if srv.requests.Load() < 2 {
			return errors.New("fewer than 2 requests")
		}
		return nil
	})
	if _, err := f.Verify(testNow, r); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Verify while the JWKS server fails: %v, want ErrNoKeys", err)
	}
	srv.failing.Store(false)
	eventually(t, "Verify after the server recovers", func() error {
		_, err := f.Verify(testNow, r)
		return err
	})
}

// TestKeyCacheRefresh: every cache_duration the set is fetched again and a new key is
// picked up (kicks disabled, so only the refresh can do it).
func TestKeyCacheRefresh(t *testing.T) {
	a, b := loadKey(t, "ec-p256.pem"), loadKey(t, "ec-p256-b.pem")
	srv := newJWKSServer(t, jwksJSON(t, jwk{key: a, kid: "a"}))
	f := mustTranslate(t, remoteConfig(srv.URL, 50*time.Millisecond), testCache(t, fastTiming))
	ra := bearer(sign(t, jose.ES256, a, "a", baseClaims()))
	rb := bearer(sign(t, jose.ES256, b, "b", baseClaims()))
	eventually(t, "first fetch", func() error { _, err := f.Verify(testNow, ra); return err })
	if _, err := f.Verify(testNow, rb); !errors.Is(err, ErrUnknownKid) {
		t.Fatalf("token of key b before rotation: %v, want ErrUnknownKid", err)
	}
	srv.serve(jwksJSON(t, jwk{key: b, kid: "b"}))
	eventually(t, "key b after refresh", func() error { _, err := f.Verify(testNow, rb); return err })
	if _, err := f.Verify(testNow, ra); !errors.Is(err, ErrUnknownKid) {
		t.Fatalf("token of the removed key a: %v, want ErrUnknownKid", err)
	}
}

// TestKeyCacheKick: with a long cache_duration, a token with an unknown kid makes the
// cache fetch again early, so a rotated key is found at once.
func TestKeyCacheKick(t *testing.T) {
	a, b := loadKey(t, "ec-p256.pem"), loadKey(t, "ec-p256-b.pem")
	srv := newJWKSServer(t, jwksJSON(t, jwk{key: a, kid: "a"}))
	tm := fastTiming
	tm.minKick = 20 * time.Millisecond
	f := mustTranslate(t, remoteConfig(srv.URL, time.Hour), testCache(t, tm))
	ra := bearer(sign(t, jose.ES256, a, "a", baseClaims()))
	rb := bearer(sign(t, jose.ES256, b, "b", baseClaims()))
	eventually(t, "first fetch", func() error { _, err := f.Verify(testNow, ra); return err })
	srv.serve(jwksJSON(t, jwk{key: a, kid: "a"}, jwk{key: b, kid: "b"}))
	eventually(t, "key b after a kick", func() error { _, err := f.Verify(testNow, rb); return err })
	// Each kick is a fetch at most every minKick: a flood of bad kids does not flood the server.
	before := srv.requests.Load()
	rx := bearer(sign(t, jose.ES256, b, "unknown", baseClaims()))
	start := time.Now()
	for time.Since(start) < 100*time.Millisecond {
		f.Verify(testNow, rx)
	}
	if n := srv.requests.Load() - before; n > 100/20+1 {
		t.Fatalf("%d fetches in 100ms of unknown kids, want at most %d", n, 100/20+1)
	}
}

// TestKeyCacheKeepsLastGood: when the server fails or goes away, the last good keys
// stay in use while fetches are retried.
func TestKeyCacheKeepsLastGood(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	srv := newJWKSServer(t, jwksJSON(t, jwk{key: key}))
	f := mustTranslate(t, remoteConfig(srv.URL, 20*time.Millisecond), testCache(t, fastTiming))
	r := bearer(sign(t, jose.ES256, key, "", baseClaims()))
	eventually(t, "first fetch", func() error { _, err := f.Verify(testNow, r); return err })

	srv.failing.Store(true)
	failed := srv.requests.Load()
	eventually(t, "failing fetches", func() error {
		if srv.requests.Load() < failed+3 {
			return errors.New("fewer than 3 failed fetches")
		}
		return nil
	})
	if _, err := f.Verify(testNow, r); err != nil {
		t.Fatalf("Verify while the server fails: %v", err)
	}
	srv.serve(`{"keys":[]}`) // a set without keys is not published either
	srv.failing.Store(false)
	seen := srv.requests.Load()
	eventually(t, "empty-set fetches", func() error {
		if srv.requests.Load() < seen+2 {
			return errors.New("fewer than 2 fetches")
		}
		return nil
	})
	srv.Close()
	time.Sleep(100 * time.Millisecond) // several refused connections
	if _, err := f.Verify(testNow, r); err != nil {
		t.Fatalf("Verify with the server gone: %v", err)
	}
}

// TestKeyCacheSharedAndIdle: two Filters naming one JWKS share one entry and one
// fetcher; when no Filter uses it any more, it stops refreshing after the idle timeout.
func TestKeyCacheSharedAndIdle(t *testing.T) {
	key := loadKey(t, "ec-p256.pem")
	srv := newJWKSServer(t, jwksJSON(t, jwk{key: key}))
	tm := fastTiming
	tm.idle = 50 * time.Millisecond
	c := testCache(t, tm)
	f1 := mustTranslate(t, remoteConfig(srv.URL, 20*time.Millisecond), c)
	f2 := mustTranslate(t, remoteConfig(srv.URL, 20*time.Millisecond), c)
	if e1, e2 := f1.byIssuer[testIssuer][0].remote, f2.byIssuer[testIssuer][0].remote; e1 != e2 {
		t.Fatal("two Filters with one JWKS have two entries")
	}
	r := bearer(sign(t, jose.ES256, key, "", baseClaims()))
	eventually(t, "first fetch", func() error { _, err := f2.Verify(testNow, r); return err })

	// f2 stays live for a while after f1 is gone: the entry keeps refreshing.
	f1 = nil
	runtime.GC()
	time.Sleep(150 * time.Millisecond)
	if n := entries(c); n != 1 {
		t.Fatalf("entries with one live Filter = %d, want 1", n)
	}
	before := srv.requests.Load()
	time.Sleep(60 * time.Millisecond)
	if srv.requests.Load() == before {
		t.Fatal("entry stopped refreshing while a Filter uses it")
	}
	if _, err := f2.Verify(testNow, r); err != nil {
		t.Fatal(err)
	}

	f2 = nil
	eventually(t, "entry removed", func() error {
		runtime.GC()
		if n := entries(c); n != 0 {
			return fmt.Errorf("%d entries", n)
		}
		return nil
	})
	stopped := srv.requests.Load()
	time.Sleep(100 * time.Millisecond)
	if n := srv.requests.Load(); n != stopped {
		t.Fatalf("%d fetches after the entry was dropped", n-stopped)
	}
}

func entries(c *KeyCache) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// TestKeyCacheFetchLimits: a fetch fails on a bad status, a redirect (not followed), a
// body over 1 MiB, a timeout, or a set without usable keys.
func TestKeyCacheFetchLimits(t *testing.T) {
	good := jwksJSON(t, jwk{key: loadKey(t, "ec-p256.pem")})
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, good) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/404", http.NotFound)
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"keys":[],"pad":"`+strings.Repeat("x", MaxJWKSSize)+`"}`)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/hmac", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)
	})
	mux.HandleFunc("/html", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>") })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := testCache(t, fastTiming)
	for _, tc := range []struct {
		path string
		want string // "" for success
	}{
		{"/ok", ""},
		{"/redirect", "status 302"},
		{"/404", "status 404"},
		{"/big", "larger than 1 MiB"},
		{"/slow", "deadline exceeded"},
		{"/hmac", "no usable key"},
		{"/html", "not a JSON object"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			e := &remoteEntry{spec: remoteSpec{uri: srv.URL + tc.path, timeout: 200 * time.Millisecond, cacheDuration: time.Hour}}
			_, err := c.fetch(e)
			if tc.want == "" {
				if err != nil || e.keys.Load() == nil {
					t.Fatalf("fetch = %v, keys %v", err, e.keys.Load())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("fetch error = %v, want %q", err, tc.want)
			}
			if e.keys.Load() != nil {
				t.Fatal("keys published after a failed fetch")
			}
		})
	}
}

// TestKeyCacheUnusedProvider: a remote provider that no requirement names is never
// fetched.
func TestKeyCacheUnusedProvider(t *testing.T) {
	srv := newJWKSServer(t, jwksJSON(t, jwk{key: loadKey(t, "ec-p256.pem")}))
	c := testCache(t, fastTiming)
	cfg := istioConfig(map[string]*jwtauthnv3.JwtProvider{
		"used": inlineProvider(testIssuer, jwksJSON(t, jwk{key: loadKey(t, "ec-p256.pem")})),
	}, true)
	cfg.Providers["unused"] = remoteProvider(srv.URL)
	mustTranslate(t, cfg, c)
	time.Sleep(50 * time.Millisecond)
	if n, got := entries(c), srv.requests.Load(); n != 0 || got != 0 {
		t.Fatalf("unused remote provider: %d entries, %d fetches", n, got)
	}
}
