package telemetry

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys: the ids every Airlock log line may carry.
const (
	LogTraceID    = "trace_id"
	LogSpanID     = "span_id"
	LogAgent      = "agent"
	LogCycle      = "cycle"
	LogAction     = "action"
	LogWorkflowID = "workflow_id"
	LogRunID      = "run_id"
)

func newLogger(cfg Config) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler
	switch cfg.LogFormat {
	case "", LogFormatJSON:
		h = slog.NewJSONHandler(cfg.LogWriter, opts)
	case LogFormatText:
		h = slog.NewTextHandler(cfg.LogWriter, opts)
	default:
		return nil, fmt.Errorf("log format %q: want %q or %q", cfg.LogFormat, LogFormatJSON, LogFormatText)
	}
	return slog.New(NewLogHandler(h)), nil
}

// NewLogHandler wraps h so that a record logged with a context holding a
// valid span (logger.InfoContext(ctx, ...)) carries trace_id and span_id,
// which lets a log line be found from its trace and back. Records logged
// without such a context pass through unchanged.
func NewLogHandler(h slog.Handler) slog.Handler {
	if th, ok := h.(traceHandler); ok {
		return th
	}
	return traceHandler{inner: h}
}

type traceHandler struct {
	inner slog.Handler
}

var _ slog.Handler = traceHandler{}

func (h traceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String(LogTraceID, sc.TraceID().String()), slog.String(LogSpanID, sc.SpanID().String()))
	}
	return h.inner.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{inner: h.inner.WithAttrs(attrs)}
}

// WithGroup nests later attributes; trace_id and span_id then sit in the
// group too, as slog offers no way back to the top level.
func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{inner: h.inner.WithGroup(name)}
}

// WithIDs returns logger with the ids that locate a log line in Airlock:
// agent, cycle, action, workflow_id and run_id. Empty ids are left out. A nil
// logger means slog.Default().
func WithIDs(logger *slog.Logger, agent, cycle, action, workflowID, runID string) *slog.Logger {
	if logger == nil {
		logger = slog.Default()
	}
	var args []any
	for _, kv := range [...]struct{ k, v string }{
		{LogAgent, agent}, {LogCycle, cycle}, {LogAction, action}, {LogWorkflowID, workflowID}, {LogRunID, runID},
	} {
		if kv.v != "" {
			args = append(args, slog.String(kv.k, kv.v))
		}
	}
	if len(args) == 0 {
		return logger
	}
	return logger.With(args...)
}
