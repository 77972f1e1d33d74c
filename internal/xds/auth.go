package xds

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

var (
	errUnaryRefused = status.Error(codes.Unimplemented, "xds: only the ADS stream is served")
	errNoAuthorizer = errors.New("no authenticator configured")
)

type tokenKey struct{}

type nodeKey struct{}

// NodeIDFromContext returns the node id a stream claims, in the context given
// to ServerOptions.Authenticate on the stream's first request.
func NodeIDFromContext(ctx context.Context) (string, bool) {
	node, ok := ctx.Value(nodeKey{}).(string)
	return node, ok
}

// bearerToken extracts the token of "authorization: Bearer <token>".
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) != 1 {
		return "", fmt.Errorf("want one authorization header, got %d", len(values))
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", errors.New("authorization header is not a bearer token")
	}
	return strings.TrimSpace(token), nil
}

func (s *Server) authenticate(ctx context.Context, token string) error {
	if s.opts.Authenticate == nil {
		return errNoAuthorizer
	}
	return s.opts.Authenticate(ctx, token)
}

// authStream refuses streams without a valid bearer token before the xDS
// handler runs, so a refused stream never sees a resource.
func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	token, err := bearerToken(ctx)
	if err == nil {
		err = s.authenticate(ctx, token)
	}
	if err != nil {
		s.log.Warn("xDS stream refused", "method", info.FullMethod, "peer", peerAddr(ctx), "err", err)
		return status.Errorf(codes.Unauthenticated, "xds: %v", err)
	}
	// Headers now tell the client its stream was accepted.
	if err := ss.SendHeader(metadata.MD{}); err != nil {
		return fmt.Errorf("xds: send headers: %w", err)
	}
	return handler(srv, &tokenStream{ServerStream: ss, ctx: context.WithValue(ctx, tokenKey{}, token)})
}

// authorizeNode is called on a stream's first request: the token must be
// accepted for the node the stream claims.
func (s *Server) authorizeNode(ctx context.Context, node string) error {
	token, _ := ctx.Value(tokenKey{}).(string)
	if err := s.authenticate(context.WithValue(ctx, nodeKey{}, node), token); err != nil {
		s.log.Warn("xDS node refused", "node", node, "peer", peerAddr(ctx), "err", err)
		return status.Errorf(codes.PermissionDenied, "xds: node %q: %v", node, err)
	}
	return nil
}

type tokenStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (t *tokenStream) Context() context.Context { return t.ctx }
