package telemetry_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/airlockhq/airlock/telemetry"
)

func decodeLines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func TestLogsCarryTraceIDsOnlyInsideASpan(t *testing.T) {
	clearOTelEnv(t)
	tel, logs := setup(t, telemetry.Config{SpanExporter: tracetest.NewInMemoryExporter()})

	tel.Logger.InfoContext(t.Context(), "outside")
	ctx, span := tel.Tracer().Start(t.Context(), "cycle")
	tel.Logger.With("agent", "sre-bot").InfoContext(ctx, "inside")
	tel.Logger.Info("inside, but no context given")
	span.End()

	lines := decodeLines(t, logs)
	require.Len(t, lines, 3)
	assert.NotContains(t, lines[0], "trace_id")
	assert.NotContains(t, lines[0], "span_id")
	assert.Equal(t, span.SpanContext().TraceID().String(), lines[1]["trace_id"])
	assert.Equal(t, span.SpanContext().SpanID().String(), lines[1]["span_id"])
	assert.Equal(t, "sre-bot", lines[1]["agent"], "attributes added with With are kept")
	assert.NotContains(t, lines[2], "trace_id")
}

func TestLogFormats(t *testing.T) {
	tests := map[string]struct {
		format string
		want   string
	}{
		"json by default": {format: "", want: `"msg":"hello"`},
		"json":            {format: "json", want: `"msg":"hello"`},
		"text":            {format: "text", want: `msg=hello`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clearOTelEnv(t)
			tel, logs := setup(t, telemetry.Config{LogFormat: tc.format})
			tel.Logger.Info("hello")
			tel.Logger.Debug("hidden at the default level")
			assert.Contains(t, logs.String(), tc.want)
			assert.NotContains(t, logs.String(), "hidden")
		})
	}
}

func TestWithIDs(t *testing.T) {
	tests := map[string]struct {
		agent, cycle, action, workflowID, runID string
		want                                    map[string]any
	}{
		"all": {
			agent: "sre-bot", cycle: "c1", action: "0", workflowID: "cycle/sre-bot/c1", runID: "r-1",
			want: map[string]any{"agent": "sre-bot", "cycle": "c1", "action": "0", "workflow_id": "cycle/sre-bot/c1", "run_id": "r-1"},
		},
		"empty ids left out": {
			agent: "sre-bot", workflowID: "cycle/sre-bot/c1",
			want: map[string]any{"agent": "sre-bot", "workflow_id": "cycle/sre-bot/c1"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&buf, nil))
			telemetry.WithIDs(logger, tc.agent, tc.cycle, tc.action, tc.workflowID, tc.runID).Info("m")
			got := decodeLines(t, &buf)[0]
			for _, k := range []string{"time", "level", "msg"} {
				delete(got, k)
			}
			assert.Equal(t, tc.want, got)
		})
	}
	assert.NotNil(t, telemetry.WithIDs(nil, "a", "", "", "", ""), "nil logger means slog.Default()")
}
