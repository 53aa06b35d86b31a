package starter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0" // the last Go semconv with the gen_ai names
	"go.opentelemetry.io/otel/trace"

	"github.com/airlockhq/airlock/contract"
)

// ErrBadTraceparent is returned by ContextWithTraceparent for a header that
// is not a valid W3C traceparent.
var ErrBadTraceparent = errors.New("invalid traceparent")

// ContextWithTraceparent returns ctx carrying the agent's span described by
// tp, a W3C traceparent ("00-<trace id>-<span id>-<flags>"), so the cycle
// Start begins from that ctx is part of the agent's own trace: the start
// span (with the request's thoughts as events), the workflow, its
// activities and the Jobs they run become descendants of the agent's span
// (its LLM calls and the cycle are one trace).
//
// An empty tp returns ctx, nil. A malformed tp returns ctx unchanged and an
// error wrapping ErrBadTraceparent: a trace header never fails a cycle, so
// callers should warn whoever sent it and start the cycle anyway.
//
// Agents in Go that already have a span in ctx need none of this: Start
// continues the span in ctx. Either way the Temporal client given to New
// must carry the OpenTelemetry tracing interceptor (worker.Dial with a
// Telemetry, or telemetry.Telemetry.TemporalInterceptors) for the trace to
// cross into the workflow; without it only the start span joins.
func ContextWithTraceparent(ctx context.Context, tp string) (context.Context, error) {
	if tp == "" {
		return ctx, nil
	}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
		propagation.MapCarrier{"traceparent": tp}))
	if !sc.IsValid() {
		return ctx, fmt.Errorf("%w: %q is not 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>", ErrBadTraceparent, clipHeader(tp))
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc), nil
}

// WithTracerProvider sets where Start's span goes.
// Default: the global provider (otel.GetTracerProvider) at the time of Start.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Client) { c.tracerProvider = tp }
}

// Names of the start span's attributes and events (besides the GenAI ones).
const (
	// ThoughtEvent is the span event recorded for each of the request's
	// thought steps.
	ThoughtEvent = "airlock.thought"

	attrAgent       = attribute.Key("airlock.agent")
	attrCycle       = attribute.Key("airlock.cycle") // the workflow id, as on the worker's spans
	attrCycleID     = attribute.Key("airlock.cycle.id")
	attrActionTypes = attribute.Key("airlock.action.types")
	attrStep        = attribute.Key("airlock.thought.step")
	attrConfidence  = attribute.Key("airlock.thought.confidence")
)

// maxThoughtAttr bounds a thought's content in a span event (the audit
// trail keeps it whole).
const maxThoughtAttr = 4096

// startSpan starts the span of proposing req, a child of the span in ctx
// (the agent's, see ContextWithTraceparent), in OpenTelemetry's GenAI terms
// an execute_tool operation by agent req.AgentID. Each thought becomes an
// event carrying its content as a reasoning part of gen_ai.output.messages.
// Only what the audit trail shows is recorded: action types, never their
// parameters.
func (c *Client) startSpan(ctx context.Context, req contract.CycleRequest) (context.Context, trace.Span) {
	tp := c.tracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	var types []string
	seen := map[string]bool{}
	for _, a := range req.Actions {
		if !seen[a.Type] {
			seen[a.Type] = true
			types = append(types, a.Type)
		}
	}
	name := semconv.GenAIOperationNameExecuteTool.Value.AsString()
	attrs := []attribute.KeyValue{
		semconv.GenAIOperationNameExecuteTool,
		semconv.GenAIAgentIDKey.String(req.AgentID),
		attrAgent.String(req.AgentID),
		attrCycleID.String(req.CycleID),
		attrCycle.String(contract.CycleWorkflowID(req.AgentID, req.CycleID)),
		attrActionTypes.StringSlice(types),
	}
	if len(types) == 1 {
		name += " " + types[0]
		attrs = append(attrs, semconv.GenAIToolNameKey.String(types[0]))
	}
	ctx, span := tp.Tracer(tracerScope).Start(ctx, name, trace.WithAttributes(attrs...))
	if !span.IsRecording() {
		return ctx, span
	}
	for _, t := range req.Thoughts {
		span.AddEvent(ThoughtEvent, trace.WithAttributes(
			semconv.GenAIAgentIDKey.String(req.AgentID),
			attrStep.Int(t.Step),
			attrConfidence.Float64(t.Confidence),
			semconv.GenAIOutputMessagesKey.String(reasoningMessage(t.Content)),
		))
	}
	return ctx, span
}

// endSpan ends span with err's outcome.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// tracerScope names the starter's tracer.
const tracerScope = "github.com/airlockhq/airlock/starter"

// reasoningMessage renders a thought as GenAI output messages: one
// assistant message with one reasoning part.
func reasoningMessage(content string) string {
	type part struct {
		Type    string `json:"type"`
		Content string `json:"content"`
	}
	type message struct {
		Role  string `json:"role"`
		Parts []part `json:"parts"`
	}
	b, err := json.Marshal([]message{{Role: "assistant", Parts: []part{{Type: "reasoning", Content: clip(content, maxThoughtAttr)}}}})
	if err != nil {
		return "[]"
	}
	return string(b)
}

// clip cuts s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func clipHeader(s string) string { return clip(s, 80) }
