package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/trellis-mesh/trellis/internal/store"
)

const (
	kindJoinToken   = "JoinToken"
	systemNamespace = "trellis-system"
)

var errBadToken = errors.New("missing or invalid join token")

// tokens issues and checks join tokens. Only a SHA-256 of each token is
// stored, so reading the store does not reveal a usable token.
type tokens struct {
	store store.Store
}

func (t *tokens) create(ctx context.Context) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	data, _ := json.Marshal(map[string]any{"created": time.Now().UTC()})
	if _, err := t.store.Put(ctx, store.Record{Kind: kindJoinToken, Namespace: systemNamespace, Name: tokenID(token), Data: data}); err != nil {
		return "", fmt.Errorf("store token: %w", err)
	}
	return token, nil
}

func tokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// check returns nil when token was issued by this control plane.
func (t *tokens) check(ctx context.Context, token string) error {
	if token == "" || len(token) > 256 {
		return errBadToken
	}
	if _, err := t.store.Get(ctx, kindJoinToken, systemNamespace, tokenID(token)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errBadToken
		}
		return fmt.Errorf("check token: %w", err)
	}
	return nil
}
