package plugin

import (
	"context"
	"fmt"
	"log/slog"
)

// nriLogger routes the NRI stub's messages to slog. The stub logs every
// connection attempt at info level; those become debug so that a runtime
// that is down for a while does not flood the log (Run logs the outage).
type nriLogger struct{ l *slog.Logger }

func (n nriLogger) Debugf(ctx context.Context, format string, args ...any) {
	n.l.DebugContext(ctx, fmt.Sprintf(format, args...), "source", "nri")
}

func (n nriLogger) Infof(ctx context.Context, format string, args ...any) {
	n.l.DebugContext(ctx, fmt.Sprintf(format, args...), "source", "nri")
}

func (n nriLogger) Warnf(ctx context.Context, format string, args ...any) {
	n.l.WarnContext(ctx, fmt.Sprintf(format, args...), "source", "nri")
}

func (n nriLogger) Errorf(ctx context.Context, format string, args ...any) {
	n.l.ErrorContext(ctx, fmt.Sprintf(format, args...), "source", "nri")
}
