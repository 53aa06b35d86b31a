package telemetry_test

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/airlockhq/airlock/telemetry"
)

// scrape GETs the Prometheus endpoint and parses the text format.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain"), rec.Header().Get("Content-Type"))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	require.NoError(t, err)
	return fams
}

// series flattens a family into "label=value,..." → value (the count for
// histograms), leaving out the labels every series carries.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "metric %s not served", name)
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			if strings.HasPrefix(l.GetName(), "otel_") {
				continue
			}
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(labels)
		key := strings.Join(labels, ",")
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			out[key] = m.GetCounter().GetValue()
		case dto.MetricType_HISTOGRAM:
			out[key] = float64(m.GetHistogram().GetSampleCount())
		default:
			t.Fatalf("%s: unexpected type %s", name, f.GetType())
		}
	}
	return out
}

func TestMetricsOnPrometheusEndpoint(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := setup(t, telemetry.Config{})
	ctx := t.Context()
	m := tel.Metrics
	// Workflows record cycles, approval waits and denials through the SDK's
	// handler, which reaches the same meter.
	wf := tel.TemporalMetricsHandler()
	tags := func(kv ...string) client.MetricsHandler {
		t := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			t[kv[i]] = kv[i+1]
		}
		return wf.WithTags(t)
	}
	cycle := func(agent, phase, outcome string) {
		tags("agent", agent, "phase", phase, "outcome", outcome).Counter(telemetry.MetricCycles).Inc(1)
	}
	wait := func(agent string, d time.Duration, outcome string) {
		tags("agent", agent, "outcome", outcome).Timer(telemetry.MetricApprovalWait).Record(d)
	}
	denial := func(agent, rule string) {
		tags("agent", agent, "rule", rule).Counter(telemetry.MetricPolicyDenials).Inc(1)
	}

	for range 3 {
		cycle("sre-bot", "done", "succeeded")
	}
	cycle("sre-bot", "approval", "rejected")
	cycle("db-bot", "policy", "denied")
	m.ActionFinished(ctx, "restart-deployment", "succeeded")
	m.ActionFinished(ctx, "restart-deployment", "succeeded")
	m.ActionFinished(ctx, "drop-table", "denied")
	wait("sre-bot", 90*time.Second, "approved")
	wait("sre-bot", 30*time.Second, "approved")
	wait("sre-bot", time.Hour, "timed_out")
	m.JobDuration(ctx, "restart-deployment", 12*time.Second, true)
	m.JobDuration(ctx, "restart-deployment", 3*time.Second, false)
	m.LeaseIssued(ctx, "token")
	m.LeaseIssued(ctx, "token")
	m.LeaseIssued(ctx, "database")
	m.LeaseRevoked(ctx, "token")
	m.LeaseFailed(ctx, "database")
	denial("db-bot", "no-destructive-sql")
	denial("db-bot", "no-destructive-sql")

	fams := scrape(t, tel.PrometheusHandler())
	want := map[string]map[string]float64{
		"airlock_cycles_total": {
			"agent=sre-bot,outcome=succeeded,phase=done":    3,
			"agent=sre-bot,outcome=rejected,phase=approval": 1,
			"agent=db-bot,outcome=denied,phase=policy":      1,
		},
		"airlock_actions_total": {
			"action_type=restart-deployment,outcome=succeeded": 2,
			"action_type=drop-table,outcome=denied":            1,
		},
		"airlock_approval_wait_seconds": {
			"agent=sre-bot,outcome=approved":  2,
			"agent=sre-bot,outcome=timed_out": 1,
		},
		"airlock_job_duration_seconds": {
			"action_type=restart-deployment,outcome=succeeded": 1,
			"action_type=restart-deployment,outcome=failed":    1,
		},
		// Every kind is there from the start, at 0.
		"airlock_leases_issued_total":  {"kind=token": 2, "kind=database": 1},
		"airlock_leases_revoked_total": {"kind=token": 1, "kind=database": 0},
		"airlock_leases_failed_total":  {"kind=database": 1, "kind=token": 0},
		"airlock_policy_denials_total": {"agent=db-bot,rule=no-destructive-sql": 2},
	}
	for name, w := range want {
		if diff := cmp.Diff(w, series(t, fams, name)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}

	sums := map[string]float64{}
	for _, s := range fams["airlock_approval_wait_seconds"].GetMetric() {
		sums[labelValue(s, "outcome")] = s.GetHistogram().GetSampleSum()
	}
	assert.Equal(t, map[string]float64{"approved": 120, "timed_out": 3600}, sums, "seconds, not nanoseconds")
	var bounds []float64
	for _, b := range fams["airlock_approval_wait_seconds"].GetMetric()[0].GetHistogram().GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	assert.Equal(t, []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, math.Inf(1)}, bounds,
		"approval waits use the view's buckets (seconds to a day), not the SDK's defaults")
	assert.Equal(t, "Agent cycles finished, by agent, the phase they ended in and outcome.", fams["airlock_cycles_total"].GetHelp())
	assert.Contains(t, fams, "go_goroutines", "our own registry carries the Go collector")
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestPrometheusOnGivenRegistry(t *testing.T) {
	clearOTelEnv(t)
	reg := prometheus.NewRegistry()
	tel, _ := setup(t, telemetry.Config{PrometheusRegistry: reg})
	tel.Metrics.LeaseIssued(t.Context(), "token")

	fams, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	assert.Contains(t, names, "airlock_leases_issued_total")
	assert.NotContains(t, names, "go_goroutines", "a caller's registry is left as given")
}

func TestPrometheusDisabled(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := setup(t, telemetry.Config{DisablePrometheus: true})
	tel.Metrics.LeaseIssued(t.Context(), "token")

	rec := httptest.NewRecorder()
	tel.PrometheusHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
}

func TestNilMetricsIsNoOp(t *testing.T) {
	var m *telemetry.Metrics
	ctx := context.Background()
	assert.NotPanics(t, func() {
		m.ActionFinished(ctx, "t", "o")
		m.JobDuration(ctx, "t", time.Second, true)
		m.LeaseIssued(ctx, "k")
		m.LeaseRevoked(ctx, "k")
		m.LeaseFailed(ctx, "k")
	})
}
