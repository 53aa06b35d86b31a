package mcpserver

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/trace"

	"github.com/airlockhq/airlock/starter"
)

// Keys of a tools/call request's _meta that carry the caller's W3C trace
// context, as OpenTelemetry's MCP instrumentation propagates it.
const (
	MetaTraceparent = "traceparent"
	MetaTracestate  = "tracestate"
)

// spanContext is the agent's span that tp (a W3C traceparent) and state (its
// tracestate, optional) describe. An empty tp is no span and no error. A
// malformed tp is an error wrapping starter.ErrBadTraceparent and no span; a
// malformed state is an error too, with the span, without the state.
func spanContext(tp, state string) (trace.SpanContext, error) {
	ctx, err := starter.ContextWithTraceparent(context.Background(), tp)
	sc := trace.SpanContextFromContext(ctx)
	if err != nil || !sc.IsValid() || state == "" {
		return sc, err
	}
	ts, err := trace.ParseTraceState(state)
	if err != nil {
		return sc, fmt.Errorf("tracestate dropped: %w", err)
	}
	return sc.WithTraceState(ts), nil
}

// callTrace returns ctx carrying the span of the agent that made the call,
// so the cycle it starts (the start span with its thoughts, the workflow,
// its activities and Jobs) is part of the agent's trace: the call's own
// _meta.traceparent (and tracestate) when it sent one, else the server's
// (Config.Traceparent). A trace header never refuses a call: a malformed
// one is logged as a warning and the call proceeds, in the server's trace
// or in one of its own.
func (s *Server) callTrace(ctx context.Context, meta map[string]any, action string) context.Context {
	sc := s.trace
	if raw, sent := meta[MetaTraceparent]; sent {
		tp, _ := raw.(string)
		state, _ := meta[MetaTracestate].(string)
		callSC, err := spanContext(tp, state)
		if tp == "" && err == nil {
			err = fmt.Errorf("%w: _meta.%s must be a non-empty string", starter.ErrBadTraceparent, MetaTraceparent)
		}
		switch {
		case callSC.IsValid():
			sc = callSC
			if err != nil {
				s.logger.Warn("the call's trace context", "action", action, "err", err)
			}
		case s.trace.IsValid():
			s.logger.Warn("the call's trace context is ignored: the cycle joins the server's trace (TRACEPARENT)", "action", action, "err", err)
		default:
			s.logger.Warn("the call's trace context is ignored: the cycle starts in a trace of its own", "action", action, "err", err)
		}
	}
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}
