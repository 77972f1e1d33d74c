package controlplane

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/trellis-mesh/trellis/internal/api"
)

// Who may call the admin API (one listener, three audiences):
//
//	GET /healthz                    anyone
//	sidecar routes (withToken)      a join token (tokens.go), checked by the route
//	GET /v1/info                    a join token, or the operator
//	every other route (operator)    with --admin-token-file: "Authorization: Bearer <token>";
//	                                without: whoever reaches the listener, which is then
//	                                loopback only (checkLoopback)
//
// A route is an operator route unless it says otherwise, so a new route is
// protected by default.

// minAdminTokenLen keeps guessable tokens out.
const minAdminTokenLen = 16

// readAdminToken reads the operator token file and returns the token's
// SHA-256 (nil without a file). Comparing digests in constant time leaks
// neither the token nor its length.
func readAdminToken(path string, logger *slog.Logger) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--admin-token-file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	switch {
	case len(token) < minAdminTokenLen:
		return nil, fmt.Errorf("--admin-token-file %s: the token has %d characters, want at least %d (e.g. openssl rand -hex 32 > %s)", path, len(token), minAdminTokenLen, path)
	case strings.ContainsAny(token, " \t\r\n"):
		return nil, fmt.Errorf("--admin-token-file %s: the token must be one line without spaces", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("the admin token file is readable by other users; chmod 600 it", "file", path, "mode", fi.Mode().Perm().String())
	}
	sum := sha256.Sum256([]byte(token))
	return sum[:], nil
}

var errAdminToken = errors.New("missing or invalid admin token: the control plane runs with --admin-token-file; set " + api.EnvAdminToken)

// isOperator reports whether r may use operator routes: any request when
// there is no admin token (loopback trust), else one bearing the token.
func (cp *ControlPlane) isOperator(r *http.Request) bool {
	if cp.adminToken == nil {
		return true
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], cp.adminToken) == 1
}

// withAdminAuth requires the admin token on every operator route of mux.
func (cp *ControlPlane) withAdminAuth(mux *http.ServeMux) http.Handler {
	if cp.adminToken == nil {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/healthz" {
			mux.ServeHTTP(w, r)
			return
		}
		if h, _ := mux.Handler(r); isSidecarRoute(h) {
			mux.ServeHTTP(w, r) // the route checks its own token
			return
		}
		if !cp.isOperator(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="trellis-admin"`)
			writeError(w, http.StatusUnauthorized, errAdminToken)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
