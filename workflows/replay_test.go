package workflows_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/workflows"
)

// Histories in testdata/ were recorded on the real stack, one per phase
// path (go test ./e2e -run TestRecordHistories -record-histories). Every
// change to AgentCycle must still replay them, or running cycles would break.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 20, "one history per phase path and per version of the cycle's commands")
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflows.AgentCycle, workflow.RegisterOptions{Name: contract.CycleWorkflowName})
			fh, err := os.Open(f)
			require.NoError(t, err)
			defer fh.Close()
			h, err := client.HistoryFromJSON(fh, client.HistoryJSONOptions{})
			require.NoError(t, err)
			// The real workflow id: child workflow ids derive from it.
			id := h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowId()
			require.NotEmpty(t, id)
			require.NoError(t, r.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{
				OriginalExecution: workflow.Execution{ID: id, RunID: h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetOriginalExecutionRunId()},
			}))
		})
	}
}

// changedAgentCycle is AgentCycle as a careless edit might leave it: it now
// waits before planning. Replaying real histories must catch that.
func changedAgentCycle(ctx workflow.Context, req contract.CycleRequest) (contract.CycleResult, error) {
	if err := workflow.Sleep(ctx, time.Second); err != nil {
		return contract.CycleResult{}, err
	}
	return workflows.AgentCycle(ctx, req)
}

func TestReplayCatchesANonDeterministicChange(t *testing.T) {
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(changedAgentCycle, workflow.RegisterOptions{Name: contract.CycleWorkflowName})
	err := r.ReplayWorkflowHistoryFromJSONFile(nil, "testdata/advisory-approved.json")
	require.Error(t, err, "the changed workflow must not replay")
	// TMPRL1100 is the SDK's code for a non-determinism error.
	assert.Contains(t, err.Error(), "TMPRL1100")
}

// The Agent workflow's recorded history (seeded, killed — its KillAgent
// activity and the cancelled cycles' reports — then resumed): still
// running when recorded, it replays up to its last event.
func TestReplayRecordedAgentHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/agent/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflows.Agent, workflow.RegisterOptions{Name: contract.AgentWorkflowName})
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}
