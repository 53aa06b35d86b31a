package telemetry_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/airlockhq/airlock/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clearOTelEnv makes the test independent of the OTEL_* variables of the
// machine it runs on. It unsets rather than empties them: child processes
// may refuse an empty value (the Temporal server fails to start on
// OTEL_TRACES_EXPORTER="").
func clearOTelEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		"OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_TRACES_SAMPLER",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
		"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION",
	} {
		t.Setenv(k, "") // restored after the test
		require.NoError(t, os.Unsetenv(k))
	}
}

// setup runs Setup with logs into a buffer and shuts down at the end.
func setup(t *testing.T, cfg telemetry.Config) (*telemetry.Telemetry, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	if cfg.LogWriter == nil {
		cfg.LogWriter = &syncWriter{w: &logs}
	}
	tel, err := telemetry.Setup(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, tel.Shutdown(context.Background())) })
	return tel, &logs
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestInjectedExporterReceivesSpans(t *testing.T) {
	clearOTelEnv(t)
	exp := tracetest.NewInMemoryExporter()
	tel, _ := setup(t, telemetry.Config{ServiceName: "airlock-test", SpanExporter: exp})

	ctx, span := tel.Tracer().Start(t.Context(), "cycle")
	_, child := tel.Tracer().Start(ctx, "stage")
	child.End()
	span.End()

	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	assert.Equal(t, "stage", spans[0].Name)
	assert.Equal(t, "cycle", spans[1].Name)
	assert.Equal(t, spans[1].SpanContext.SpanID(), spans[0].Parent.SpanID(), "stage is a child of cycle")
	assert.Equal(t, "airlock-test", serviceName(spans[1]))
}

func serviceName(s tracetest.SpanStub) string {
	for _, kv := range s.Resource.Attributes() {
		if kv.Key == "service.name" {
			return kv.Value.AsString()
		}
	}
	return ""
}

func TestServiceNameDefaultsAndEnvOverrides(t *testing.T) {
	tests := map[string]struct {
		cfgName, env, want string
	}{
		"configured":             {cfgName: "airlock-worker", want: "airlock-worker"},
		"default":                {want: "airlock"},
		"OTEL_SERVICE_NAME wins": {cfgName: "airlock-worker", env: "renamed", want: "renamed"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv("OTEL_SERVICE_NAME", tc.env)
			exp := tracetest.NewInMemoryExporter()
			tel, _ := setup(t, telemetry.Config{ServiceName: tc.cfgName, SpanExporter: exp})
			_, span := tel.Tracer().Start(t.Context(), "x")
			span.End()
			require.Len(t, exp.GetSpans(), 1)
			assert.Equal(t, tc.want, serviceName(exp.GetSpans()[0]))
		})
	}
}

func TestTracingOffWithoutEndpoint(t *testing.T) {
	tests := map[string]map[string]string{
		"no endpoint":               {},
		"OTEL_SDK_DISABLED":         {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"},
		"OTEL_TRACES_EXPORTER=none": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"},
	}
	for name, env := range tests {
		t.Run(name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			tel, _ := setup(t, telemetry.Config{})

			ctx, span := tel.Tracer().Start(t.Context(), "cycle")
			defer span.End()
			assert.False(t, span.IsRecording(), "a span of the no-op provider records nothing")
			assert.False(t, span.SpanContext().IsValid())
			assert.Empty(t, telemetry.TraceParent(ctx))
			_, isSDK := tel.TracerProvider.(interface{ ForceFlush(context.Context) error })
			assert.False(t, isSDK, "no SDK provider, so no exporter and no buffer: %T", tel.TracerProvider)
		})
	}
}

func TestTracingOffPassesUpstreamContextOn(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := setup(t, telemetry.Config{})
	const upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	ctx := telemetry.ContextFromTraceParent(t.Context(), upstream)
	ctx, span := tel.Tracer().Start(ctx, "activity")
	defer span.End()

	assert.Equal(t, upstream, telemetry.TraceParent(ctx), "the cycle's trace still reaches the Job")
}

func TestSetupSetsW3CPropagator(t *testing.T) {
	clearOTelEnv(t)
	exp := tracetest.NewInMemoryExporter()
	tel, _ := setup(t, telemetry.Config{SpanExporter: exp})
	ctx, span := tel.Tracer().Start(t.Context(), "cycle")
	defer span.End()

	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	assert.Equal(t, telemetry.TraceParent(ctx), carrier.Get("traceparent"))
	assert.ElementsMatch(t, []string{"traceparent", "tracestate", "baggage"}, otel.GetTextMapPropagator().Fields())
}

func TestSetupRejectsBadConfig(t *testing.T) {
	tests := map[string]struct {
		env map[string]string
		cfg telemetry.Config
	}{
		"grpc protocol":        {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
		"grpc traces protocol": {env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}},
		"unknown log format":   {cfg: telemetry.Config{LogFormat: "xml"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tc.cfg.LogWriter = io.Discard
			tel, err := telemetry.Setup(t.Context(), tc.cfg)
			assert.Error(t, err)
			assert.Nil(t, tel)
		})
	}
}

func TestShutdownTwiceAndNil(t *testing.T) {
	clearOTelEnv(t)
	tel, err := telemetry.Setup(t.Context(), telemetry.Config{SpanExporter: tracetest.NewInMemoryExporter(), LogWriter: io.Discard})
	require.NoError(t, err)
	require.NoError(t, tel.Shutdown(t.Context()))
	assert.NoError(t, tel.Shutdown(t.Context()))
	var none *telemetry.Telemetry
	assert.NoError(t, none.Shutdown(t.Context()))
}

// otlpReceiver is a minimal OTLP/HTTP trace collector: it decodes what the
// exporter really sends.
type otlpReceiver struct {
	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
	paths    []string
	metrics  []string // metric names received on /v1/metrics
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body := io.Reader(r.Body)
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want application/x-protobuf", http.StatusBadRequest)
		return
	}
	if r.URL.Path == "/v1/metrics" {
		var req colmetricpb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					o.metrics = append(o.metrics, m.GetName())
				}
			}
		}
		o.mu.Unlock()
		resp, _ := proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if proto.Unmarshal(raw, &req) != nil {
		http.Error(w, "want application/x-protobuf ExportTraceServiceRequest", http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	o.requests = append(o.requests, &req)
	o.paths = append(o.paths, r.URL.Path)
	o.mu.Unlock()
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

type receivedSpan struct {
	service, name, traceID, path string
}

func (o *otlpReceiver) spans() []receivedSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []receivedSpan
	for i, req := range o.requests {
		for _, rs := range req.GetResourceSpans() {
			var svc string
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					svc = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out = append(out, receivedSpan{service: svc, name: s.GetName(), traceID: trace.TraceID(s.GetTraceId()).String(), path: o.paths[i]})
				}
			}
		}
	}
	return out
}

func TestOTLPHTTPExport(t *testing.T) {
	tests := map[string]struct {
		env, path string
	}{
		"OTEL_EXPORTER_OTLP_ENDPOINT":        {env: "OTEL_EXPORTER_OTLP_ENDPOINT", path: ""},
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": {env: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", path: "/v1/traces"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clearOTelEnv(t)
			recv := &otlpReceiver{}
			srv := httptest.NewServer(recv)
			defer srv.Close()
			t.Setenv(tc.env, srv.URL+tc.path)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

			tel, err := telemetry.Setup(t.Context(), telemetry.Config{ServiceName: "airlock-worker", LogWriter: io.Discard})
			require.NoError(t, err)
			_, span := tel.Tracer().Start(t.Context(), "cycle c1")
			span.End()
			assert.Empty(t, recv.spans(), "spans are batched until flushed")
			require.NoError(t, tel.Shutdown(t.Context()))

			got := recv.spans()
			require.Len(t, got, 1)
			assert.Equal(t, receivedSpan{
				service: "airlock-worker", name: "cycle c1",
				traceID: span.SpanContext().TraceID().String(), path: "/v1/traces",
			}, got[0])
		})
	}
}

func (o *otlpReceiver) metricNames() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.metrics...)
}

func TestOTLPMetricsPush(t *testing.T) {
	tests := map[string]struct {
		env      map[string]string // values: "" is replaced by the receiver's URL
		wantPush bool
	}{
		"metrics endpoint":                 {env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "/v1/metrics"}, wantPush: true},
		"shared endpoint, exporter otlp":   {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_METRICS_EXPORTER": "otlp"}, wantPush: true},
		"shared endpoint alone: pull only": {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ""}},
		"metrics exporter none":            {env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "/v1/metrics", "OTEL_METRICS_EXPORTER": "none"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clearOTelEnv(t)
			recv := &otlpReceiver{}
			srv := httptest.NewServer(recv)
			defer srv.Close()
			for k, v := range tc.env {
				if strings.HasPrefix(k, "OTEL_EXPORTER_OTLP_") {
					v = srv.URL + v
				}
				t.Setenv(k, v)
			}
			tel, err := telemetry.Setup(t.Context(), telemetry.Config{LogWriter: io.Discard})
			require.NoError(t, err)
			tel.Metrics.LeaseIssued(t.Context(), "token")
			require.NoError(t, tel.Shutdown(t.Context()))

			if tc.wantPush {
				assert.Contains(t, recv.metricNames(), "airlock_leases_issued_total")
			} else {
				assert.Empty(t, recv.metricNames())
			}
		})
	}
}
