package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/policy"
)

// prometheusOwn are series Prometheus makes itself rather than scrapes.
var prometheusOwn = []string{"up"}

// TestDashboardAndAlertsReadOnlyExportedMetrics runs cycles down every path
// the dashboard and the alert rules chart (success, failure, an approval
// clicked in Slack, a denial, a kill), scrapes the worker, and checks that
// every metric a dashboard panel or an alert rule reads is one the worker
// exports: a renamed or never-recorded metric would leave a panel empty and
// an alert silent. Expressions are parsed by Prometheus' own PromQL parser
// (promql-names, built by tools/build.sh from the tools/prometheus module,
// so the product's go.mod does not carry Prometheus).
func TestDashboardAndAlertsReadOnlyExportedMetrics(t *testing.T) {
	names := devstack.RequireTool(t, "promql-names")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Autonomous: one success, one failure.
	for _, p := range []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "dash"}}, {Type: "broken"}} {
		_, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t) + "-" + p.Type, Actions: []policy.Proposal{p}})
		require.NoError(t, err)
	}

	// Advisory: the write waits (the backlog gauges show it), a signed
	// Slack click approves it, it runs (click to run is timed).
	endpoint := approvalEndpoint(t)
	run, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: "e2e-adv", CycleID: cycleID(t) + "-approved",
		Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "dash"}}}})
	require.NoError(t, err)
	msg := waitPosted(t, run.WorkflowID)
	require.Eventually(t, func() bool {
		fams := scrape(t)
		return gauge(fams, "airlock_approvals_pending", "e2e-adv") >= 1 &&
			gauge(fams, "airlock_approvals_pending_oldest_seconds", "e2e-adv") > 0
	}, 30*time.Second, 100*time.Millisecond, "the waiting approval shows in the backlog gauges")
	approve := buttonValue(t, msg.Get("blocks"), approval.ActionID(contract.DecisionApprove))
	require.Equal(t, http.StatusOK, click(t, endpoint, "U1", approval.ActionID(contract.DecisionApprove), approve, msg.Get("ts"), time.Now(), signingSecret).StatusCode)
	res, err := run.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome)

	// Advisory, denied: a policy denial.
	run, err = env.starter.Start(ctx, contract.CycleRequest{AgentID: "e2e-adv", CycleID: cycleID(t) + "-denied",
		Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "dash"}}}})
	require.NoError(t, err)
	msg = waitPosted(t, run.WorkflowID)
	deny := buttonValue(t, msg.Get("blocks"), approval.ActionID(contract.DecisionDeny))
	require.Equal(t, http.StatusOK, click(t, endpoint, "U2", approval.ActionID(contract.DecisionDeny), deny, msg.Get("ts"), time.Now(), signingSecret).StatusCode)
	res, err = run.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeDenied, res.Outcome)

	// The kill switch, on an agent of its own.
	_, err = env.starter.KillAgent(ctx, "e2e-ops", "dashboard test", "U1")
	require.NoError(t, err)

	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		fams = scrape(t)
		return gauge(fams, "airlock_approvals_pending", "e2e-adv") == 0 &&
			statusOf(fams, "e2e-ops") == "killed"
	}, 30*time.Second, 100*time.Millisecond, "decided approvals leave the backlog; the killed agent shows as killed")
	assert.Positive(t, sample(fams, "airlock_click_to_run_seconds", map[string]string{"agent": "e2e-adv"}), "the approved action's click to run was timed")
	assert.Positive(t, sample(fams, "airlock_kill_switch_total", map[string]string{"agent": "e2e-ops"}), "the kill was counted")
	assert.Equal(t, "advisory", phaseOf(fams, "e2e-adv", "write"))
	assert.Equal(t, "autonomous", phaseOf(fams, "e2e-adv", "read"))

	exported := map[string]bool{}
	for name, f := range fams {
		exported[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				exported[name+suffix] = true
			}
		}
	}
	for _, n := range prometheusOwn {
		exported[n] = true
	}

	root := filepath.Join("..", "deploy")
	exprs := append(dashboardExprs(t, filepath.Join(root, "grafana", "dashboards", "airlock.json")),
		ruleExprs(t, filepath.Join(root, "prometheus", "airlock-rules.yaml"))...)
	require.GreaterOrEqual(t, len(exprs), 20, "the dashboard's and the rules' expressions")
	referenced := map[string]bool{}
	for _, r := range metricNames(t, names, exprs) {
		if !assert.Empty(t, r.Error, "parse %q", r.Expr) {
			continue
		}
		assert.NotEmpty(t, r.Metrics, "%q reads no metric", r.Expr)
		for _, m := range r.Metrics {
			referenced[m] = true
			assert.True(t, exported[m], "%s (in %q) is not exported by the worker", m, r.Expr)
		}
	}
	for _, want := range []string{
		"airlock_cycles_total", "airlock_approvals_pending", "airlock_approvals_pending_oldest_seconds",
		"airlock_click_to_run_seconds_bucket", "airlock_leases_issued_total", "airlock_leases_revoked_total",
		"airlock_job_duration_seconds_bucket", "airlock_policy_denials_total", "airlock_agent_phase",
		"airlock_kill_switch_total", "up",
	} {
		assert.True(t, referenced[want], "%s is charted or alerted on", want)
	}
}

// gauge is the value of the series of a gauge family for agent (-1: none).
func gauge(fams map[string]*dto.MetricFamily, name, agent string) float64 {
	for _, m := range fams[name].GetMetric() {
		if label(m, "agent") == agent {
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// statusOf and phaseOf read the 1-valued series of the agent gauges.
func statusOf(fams map[string]*dto.MetricFamily, agent string) string {
	for _, m := range fams["airlock_agent_status"].GetMetric() {
		if label(m, "agent") == agent && m.GetGauge().GetValue() == 1 {
			return label(m, "status")
		}
	}
	return ""
}

func phaseOf(fams map[string]*dto.MetricFamily, agent, class string) string {
	for _, m := range fams["airlock_agent_phase"].GetMetric() {
		if label(m, "agent") == agent && label(m, "class") == class && m.GetGauge().GetValue() == 1 {
			return label(m, "phase")
		}
	}
	return ""
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// dashboardExprs returns every query of every panel of a Grafana dashboard.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var d struct {
		Panels []struct {
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	return out
}

// ruleExprs returns the expression of every rule of a rules file.
func ruleExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var f struct {
		Groups []struct {
			Rules []struct {
				Expr string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &f))
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, strings.TrimSpace(r.Expr))
		}
	}
	return slices.DeleteFunc(out, func(s string) bool { return s == "" })
}

type promqlNames struct {
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
	Error   string   `json:"error"`
}

// metricNames asks promql-names which metrics each expression selects.
func metricNames(t *testing.T, bin string, exprs []string) []promqlNames {
	t.Helper()
	in, err := json.Marshal(exprs)
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), bin)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	require.NoError(t, err)
	var res []promqlNames
	require.NoError(t, json.Unmarshal(out, &res))
	require.Len(t, res, len(exprs))
	return res
}
