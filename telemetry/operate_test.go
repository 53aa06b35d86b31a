package telemetry_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/telemetry"
)

// gauges flattens a gauge family like series does counters.
func gauges(t *testing.T, fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "metric %s not served", name)
	require.Equal(t, dto.MetricType_GAUGE, f.GetType(), name)
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			if !strings.HasPrefix(l.GetName(), "otel_") {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
		}
		sort.Strings(labels)
		out[strings.Join(labels, ",")] = m.GetGauge().GetValue()
	}
	return out
}

func TestStateGaugesReportWhatTemporalSaysAtScrapeTime(t *testing.T) {
	clearOTelEnv(t)
	tel, logs := setup(t, telemetry.Config{})
	now := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	st := telemetry.State{
		Waiting: []telemetry.WaitingCycle{
			{Agent: "advisor", Since: now.Add(-90 * time.Second)},
			{Agent: "advisor", Since: now.Add(-30 * time.Minute)},
			{Agent: "gone", Since: now.Add(-time.Minute)}, // no longer in the catalog: still counted
		},
		Agents: []telemetry.AgentState{
			{Agent: "advisor", Status: "active", Phases: map[string]string{"read": "autonomous", "write": "advisory"}},
			{Agent: "quiet", Status: "killed", Phases: map[string]string{"write": "shadow"}},
		},
	}
	var readErr error
	reads := 0
	reg, err := tel.Metrics.ObserveState(func(ctx context.Context) (telemetry.State, error) {
		reads++
		_, hasDeadline := ctx.Deadline()
		assert.True(t, hasDeadline, "a scrape never waits on Temporal without a deadline")
		return st, readErr
	}, func() time.Time { return now })
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, reg.Unregister()) })

	fams := scrape(t, tel.PrometheusHandler())
	assert.Equal(t, 1, reads, "read once per scrape")
	want := map[string]map[string]float64{
		"airlock_approvals_pending":                {"agent=advisor": 2, "agent=quiet": 0, "agent=gone": 1},
		"airlock_approvals_pending_oldest_seconds": {"agent=advisor": 1800, "agent=quiet": 0, "agent=gone": 60},
		"airlock_agent_phase": {
			"agent=advisor,class=read,phase=shadow": 0, "agent=advisor,class=read,phase=advisory": 0,
			"agent=advisor,class=read,phase=supervised": 0, "agent=advisor,class=read,phase=autonomous": 1,
			"agent=advisor,class=write,phase=shadow": 0, "agent=advisor,class=write,phase=advisory": 1,
			"agent=advisor,class=write,phase=supervised": 0, "agent=advisor,class=write,phase=autonomous": 0,
			"agent=quiet,class=write,phase=shadow": 1, "agent=quiet,class=write,phase=advisory": 0,
			"agent=quiet,class=write,phase=supervised": 0, "agent=quiet,class=write,phase=autonomous": 0,
		},
		"airlock_agent_status": {
			"agent=advisor,status=active": 1, "agent=advisor,status=suspended": 0, "agent=advisor,status=killed": 0,
			"agent=quiet,status=active": 0, "agent=quiet,status=suspended": 0, "agent=quiet,status=killed": 1,
		},
	}
	for name, w := range want {
		if diff := cmp.Diff(w, gauges(t, fams, name)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	assert.Equal(t, "Age of the oldest cycle waiting for a human, since it started, by agent (0: none waiting).",
		fams["airlock_approvals_pending_oldest_seconds"].GetHelp())

	// The next scrape reads again: the approvals were decided meanwhile.
	st.Waiting = nil
	fams = scrape(t, tel.PrometheusHandler())
	assert.Equal(t, map[string]float64{"agent=advisor": 0, "agent=quiet": 0}, gauges(t, fams, "airlock_approvals_pending"))

	// Temporal unreachable: the endpoint still answers, without made-up
	// values, and says why in the log.
	readErr = errors.New("temporal unavailable")
	fams = scrape(t, tel.PrometheusHandler())
	assert.NotContains(t, fams, "airlock_approvals_pending")
	assert.Contains(t, fams, "go_goroutines")
	assert.Contains(t, logs.String(), "temporal unavailable")
}

func TestKillSwitchCounter(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := setup(t, telemetry.Config{})
	tel.Metrics.KillSwitchUsed(t.Context(), "rogue")
	tel.Metrics.KillSwitchUsed(t.Context(), "rogue")
	tel.Metrics.KillSwitchUsed(t.Context(), "other")
	fams := scrape(t, tel.PrometheusHandler())
	assert.Equal(t, map[string]float64{"agent=rogue": 2, "agent=other": 1}, series(t, fams, "airlock_kill_switch_total"))

	var m *telemetry.Metrics
	assert.NotPanics(t, func() { m.KillSwitchUsed(t.Context(), "x") })
	_, err := m.ObserveState(nil, nil)
	assert.Error(t, err)
}

func TestClickToRunHistogramUsesItsBuckets(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := setup(t, telemetry.Config{})
	tel.TemporalMetricsHandler().WithTags(map[string]string{"agent": "advisor"}).
		Timer(telemetry.MetricClickToRun).Record(3 * time.Second)
	fams := scrape(t, tel.PrometheusHandler())
	f := fams["airlock_click_to_run_seconds"]
	require.NotNil(t, f)
	h := f.GetMetric()[0].GetHistogram()
	assert.Equal(t, 3.0, h.GetSampleSum(), "seconds")
	var bounds []float64
	for _, b := range h.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	assert.Equal(t, []float64{1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600}, bounds[:len(bounds)-1])
}
