package proxy

import (
	"context"
	"testing"
	"time"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// gRPC over h2 through both sidecars: the server sidecar's authz filters
// answer trailers-only with PERMISSION_DENIED and UNAUTHENTICATED.
func TestRBACAndJWTGRPC(t *testing.T) {
	client, m := grpcFeatureMesh(t, nil, nil)
	iss := newJWTIssuer(t, "https://issuer.test")
	m.setServerFilters(t, jwtFilterEntry(t, iss),
		rbacHTTPFilter(t, "trellis.rbac.deny", rbacv3.RBAC_DENY, map[string]*rbacv3.Policy{
			"ns.default.no-flagged.rule.0": rbacPolicy(permHeaderExact("x-deny", "yes"), prinPeer(smExact(clientID)))}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name   string
		md     []string
		code   codes.Code
		reason string
	}{
		{"denied", []string{"x-deny", "yes"}, codes.PermissionDenied, reasonRBACDenied},
		{"allowed", []string{"x-deny", "no"}, codes.OK, ""},
		{"invalid token", []string{"authorization", "Bearer x.y.z"}, codes.Unauthenticated, reasonJWTInvalid},
		{"valid token", []string{"authorization", "Bearer " + iss.token(t, map[string]any{"sub": "s"})}, codes.OK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr, trl metadata.MD
			cctx := metadata.AppendToOutgoingContext(ctx, tc.md...)
			_, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&trl))
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code %v (%v), want %v", got, err, tc.code)
			}
			if tc.reason == "" {
				return
			}
			got := append(hdr.Get(headerReason), trl.Get(headerReason)...)
			if len(got) != 1 || got[0] != tc.reason {
				t.Errorf("%s = %v, want %s", headerReason, got, tc.reason)
			}
		})
	}
	waitStat(t, m.server, statLine(inName, "rbac_denied", 1))
	waitStat(t, m.server, statLine(inName, "jwt_authn_failed", 1))
}
