package xds

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/peer"
)

// gcpLogger adapts slog to go-control-plane's printf-style logger. Its
// warnings (for example an ADS request naming fewer resources than the
// snapshot holds, which is normal while a client changes its subscription)
// are logged at Info.
type gcpLogger struct{ l *slog.Logger }

func (g gcpLogger) Debugf(format string, args ...any) { g.log(slog.LevelDebug, format, args) }
func (g gcpLogger) Infof(format string, args ...any)  { g.log(slog.LevelDebug, format, args) }
func (g gcpLogger) Warnf(format string, args ...any)  { g.log(slog.LevelInfo, format, args) }
func (g gcpLogger) Errorf(format string, args ...any) { g.log(slog.LevelError, format, args) }

func (g gcpLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !g.l.Enabled(ctx, level) {
		return
	}
	g.l.Log(ctx, level, fmt.Sprintf(format, args...))
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
