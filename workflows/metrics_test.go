package workflows_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/telemetry"
)

// timerMetrics records what workflows time, by name and agent.
type timerMetrics struct {
	client.MetricsHandler
	mu     *sync.Mutex
	agent  string
	timers map[string][]time.Duration
}

func (m *timerMetrics) WithTags(tags map[string]string) client.MetricsHandler {
	c := *m
	if a, ok := tags[telemetry.AttrAgent]; ok {
		c.agent = a
	}
	return &c
}

func (m *timerMetrics) Timer(name string) client.MetricsTimer {
	return timerFunc(func(d time.Duration) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.timers[name+"{"+m.agent+"}"] = append(m.timers[name+"{"+m.agent+"}"], d)
	})
}

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

func TestClickToRunIsTimedFromTheApprovalToTheContainerStart(t *testing.T) {
	m := &timerMetrics{MetricsHandler: client.MetricsNopHandler, mu: &sync.Mutex{}, timers: map[string][]time.Duration{}}
	s := newEnvWith(t, m)
	// The container starts 4 s after the Job was started (the workflow's
	// clock stands still while activities run in the test environment).
	s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(stageOK)
	s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(activities.ReleaseOutput{}, nil)
	s.env.OnActivity(contract.ActivityPostApproval, mock.Anything, mock.Anything).Return(contract.MessageRef{Channel: "C1", TS: "1.1"}, nil)
	s.env.OnActivity(contract.ActivityUpdateApproval, mock.Anything, mock.Anything).Return(nil)
	s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.RunInput) (activities.RunOutput, error) {
			start := s.env.Now().Add(4 * time.Second)
			return activities.RunOutput{Succeeded: true, StartedAt: start, FinishedAt: start.Add(time.Second)}, nil
		})
	var log decisionLog
	h := hashOf(t, s, "adv", scale)
	s.decideAt(2*time.Minute, &log, contract.Decision{ActionIndex: 0, ActionHash: h, Kind: contract.DecisionApprove, Approver: "U1", Via: "cli"})

	res := runCycle(t, s, request("adv", scale))
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome)
	got := m.timers[telemetry.MetricClickToRun+"{adv}"]
	require.Len(t, got, 1, "one approved action, one sample: %v", m.timers)
	assert.InDelta(t, 4, got[0].Seconds(), 0.5)
	assert.Len(t, m.timers[telemetry.MetricApprovalWait+"{adv}"], 1)
}

func TestClickToRunIsNotTimedWithoutAnApproval(t *testing.T) {
	m := &timerMetrics{MetricsHandler: client.MetricsNopHandler, mu: &sync.Mutex{}, timers: map[string][]time.Duration{}}
	s := newEnvWith(t, m)
	s.mockRunOK()
	var log decisionLog
	h := hashOf(t, s, "adv", scale)
	s.decideAt(time.Minute, &log, contract.Decision{ActionIndex: 0, ActionHash: h, Kind: contract.DecisionDeny, Approver: "U1", Via: "cli"})

	res := runCycle(t, s, request("adv", scale))
	require.Equal(t, contract.OutcomeDenied, res.Outcome)
	assert.Empty(t, m.timers[telemetry.MetricClickToRun+"{adv}"], "a denied action never runs")
}
