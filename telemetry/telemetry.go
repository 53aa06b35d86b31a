// Package telemetry gives every Airlock process (worker, CLI, approval
// server) the same tracing, metrics and structured logs, so one cycle can be
// followed from the starter through Temporal into the Job that runs an action.
//
// Tracing goes to an OTLP/HTTP collector named by the standard
// OTEL_EXPORTER_OTLP_* variables and is off (a no-op provider that buffers
// nothing) when none is set. Metrics are served for Prometheus to scrape, on a
// registry of their own. Logs are slog, JSON by default, carrying the trace
// and span ids of the context they are written with.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of Airlock's own spans and metrics.
const ScopeName = "github.com/airlockhq/airlock"

// Log formats accepted by Config.LogFormat.
const (
	LogFormatJSON = "json"
	LogFormatText = "text"
)

// Config says how a process reports. The zero value (plus a ServiceName) is
// what production uses: JSON logs on stderr, a Prometheus endpoint, and
// tracing only if OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
type Config struct {
	// ServiceName becomes the resource's service.name. OTEL_SERVICE_NAME
	// overrides it. Default: "airlock".
	ServiceName string
	// ServiceVersion becomes service.version when set. Default: none.
	ServiceVersion string

	// LogFormat is "json" or "text". Default: "json".
	LogFormat string
	// LogWriter receives the logs. Default: os.Stderr.
	LogWriter io.Writer
	// LogLevel is the minimum level written. Default: slog.LevelInfo.
	LogLevel slog.Leveler

	// DisablePrometheus turns the scrape endpoint off; PrometheusHandler
	// then answers 404. Default: false (enabled).
	DisablePrometheus bool
	// PrometheusRegistry is where metrics are registered for scraping.
	// Default: a new registry of our own, with the Go and process
	// collectors, so nothing leaks in from prometheus.DefaultRegisterer.
	PrometheusRegistry *prometheus.Registry

	// SpanExporter, when set, receives every span synchronously as it ends,
	// whatever the environment says. Meant for tests (tracetest).
	SpanExporter sdktrace.SpanExporter
	// MetricReader, when set, is attached besides Prometheus. Meant for
	// tests (sdkmetric.NewManualReader).
	MetricReader sdkmetric.Reader
}

// Telemetry is what Setup built. Pass it (or its parts) to the code that
// needs it; Shutdown flushes whatever is still buffered.
type Telemetry struct {
	// TracerProvider is the SDK provider when tracing is on, else a no-op.
	TracerProvider trace.TracerProvider
	// MeterProvider is the SDK provider when any reader exists, else a no-op.
	MeterProvider metric.MeterProvider
	// Logger writes structured logs with trace_id/span_id from the context.
	Logger *slog.Logger
	// Metrics are Airlock's own instruments.
	Metrics *Metrics

	propagator propagation.TextMapPropagator
	prom       http.Handler
	shutdowns  []func(context.Context) error

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup builds tracing, metrics and logging from cfg and the environment and
// sets the global propagator to W3C tracecontext + baggage. It does not set
// the global tracer or meter provider, nor slog's default: main decides.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	if cfg.ServiceName == "" {
		cfg.ServiceName = "airlock"
	}
	if cfg.LogWriter == nil {
		cfg.LogWriter = os.Stderr
	}
	logger, err := newLogger(cfg)
	if err != nil {
		return nil, err
	}
	tel := &Telemetry{
		Logger:     logger,
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		prom:       http.NotFoundHandler(),
	}
	otel.SetTextMapPropagator(tel.propagator)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry", slog.Any("error", err))
	}))

	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := tel.setupTracing(ctx, cfg, res); err != nil {
		return nil, err
	}
	if err := tel.setupMetrics(ctx, cfg, res); err != nil {
		_ = tel.Shutdown(ctx)
		return nil, err
	}
	return tel, nil
}

func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	attrs := []resource.Option{
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName)),
	}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(cfg.ServiceVersion)))
	}
	// Later options win: the environment may rename the service.
	attrs = append(attrs, resource.WithTelemetrySDK(), resource.WithFromEnv())
	res, err := resource.New(ctx, attrs...)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	return res, nil
}

func (t *Telemetry) setupTracing(ctx context.Context, cfg Config, res *resource.Resource) error {
	var opt sdktrace.TracerProviderOption
	switch {
	case cfg.SpanExporter != nil:
		opt = sdktrace.WithSyncer(cfg.SpanExporter)
	case tracesEnabled():
		if err := checkProtocol("TRACES"); err != nil {
			return err
		}
		// The exporter reads endpoint, headers, timeout, compression and
		// TLS settings from OTEL_EXPORTER_OTLP_[TRACES_]* itself.
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return fmt.Errorf("otlp trace exporter: %w", err)
		}
		opt = sdktrace.WithBatcher(exp)
	default:
		t.TracerProvider = tracenoop.NewTracerProvider()
		return nil
	}
	// The sampler comes from OTEL_TRACES_SAMPLER; default parent-based
	// always-on.
	tp := sdktrace.NewTracerProvider(opt, sdktrace.WithResource(res))
	t.TracerProvider = tp
	t.shutdowns = append(t.shutdowns, tp.Shutdown)
	return nil
}

func (t *Telemetry) setupMetrics(ctx context.Context, cfg Config, res *resource.Resource) error {
	var readers []sdkmetric.Option
	if !cfg.DisablePrometheus {
		reg := cfg.PrometheusRegistry
		if reg == nil {
			reg = prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		}
		exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
		if err != nil {
			return fmt.Errorf("prometheus exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(exp))
		t.prom = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	}
	if cfg.MetricReader != nil {
		readers = append(readers, sdkmetric.WithReader(cfg.MetricReader))
	}
	if metricsPushEnabled() {
		if err := checkProtocol("METRICS"); err != nil {
			return err
		}
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return fmt.Errorf("otlp metric exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	if len(readers) == 0 {
		t.MeterProvider = metricnoop.NewMeterProvider()
	} else {
		opts := append(readers, sdkmetric.WithResource(res), sdkmetric.WithView(WorkflowViews()...))
		mp := sdkmetric.NewMeterProvider(opts...)
		t.MeterProvider = mp
		t.shutdowns = append(t.shutdowns, mp.Shutdown)
	}
	m, err := NewMetrics(t.MeterProvider.Meter(ScopeName))
	if err != nil {
		return err
	}
	t.Metrics = m
	return nil
}

// tracesEnabled reports whether the environment names a trace collector
// and does not switch tracing off.
func tracesEnabled() bool {
	if sdkDisabled() || exporterIs("OTEL_TRACES_EXPORTER", "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// metricsPushEnabled reports whether metrics are also pushed by OTLP: when a
// metrics endpoint is named, or a shared endpoint is named and
// OTEL_METRICS_EXPORTER asks for otlp. (A bare OTEL_EXPORTER_OTLP_ENDPOINT
// does not push metrics: collectors such as Jaeger take traces only, and
// Prometheus scrapes the metrics anyway.)
func metricsPushEnabled() bool {
	if sdkDisabled() || exporterIs("OTEL_METRICS_EXPORTER", "none") {
		return false
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "" {
		return true
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" && exporterIs("OTEL_METRICS_EXPORTER", "otlp")
}

func sdkDisabled() bool {
	return strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true")
}

// exporterIs reports whether the comma-separated list in env names want.
func exporterIs(env, want string) bool {
	for _, v := range strings.Split(os.Getenv(env), ",") {
		if strings.EqualFold(strings.TrimSpace(v), want) {
			return true
		}
	}
	return false
}

// ErrUnsupportedProtocol is returned by Setup when the environment asks for
// an OTLP protocol other than http/protobuf.
var ErrUnsupportedProtocol = errors.New("unsupported OTLP protocol")

// checkProtocol refuses OTLP over gRPC or JSON rather than sending
// http/protobuf to a port that does not speak it.
func checkProtocol(signal string) error {
	p := os.Getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL")
	if p == "" {
		p = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if p == "" || p == "http/protobuf" {
		return nil
	}
	return fmt.Errorf("%w %q for %s: only http/protobuf", ErrUnsupportedProtocol, p, strings.ToLower(signal))
}

// Tracer returns Airlock's tracer.
func (t *Telemetry) Tracer() trace.Tracer {
	return t.TracerProvider.Tracer(ScopeName)
}

// Propagator is the W3C tracecontext + baggage propagator Setup installed.
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	return t.propagator
}

// PrometheusHandler serves the metrics in the Prometheus text format (mount
// it at /metrics). It answers 404 when Prometheus is disabled.
func (t *Telemetry) PrometheusHandler() http.Handler {
	return t.prom
}

// Shutdown flushes buffered spans and metrics and stops the exporters. It is
// safe to call more than once; later calls return the first result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.shutdownOnce.Do(func() {
		var errs []error
		for i := len(t.shutdowns) - 1; i >= 0; i-- {
			if err := t.shutdowns[i](ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			t.shutdownErr = fmt.Errorf("shutdown telemetry: %w", err)
		}
	})
	return t.shutdownErr
}
