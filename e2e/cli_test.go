package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
)

var cliOnce struct {
	sync.Once
	path string
	err  error
}

// airlockCLI builds the real CLI binary once per test run.
func airlockCLI(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "airlock-cli-")
		if err != nil {
			cliOnce.err = err
			return
		}
		cliOnce.path = filepath.Join(dir, "airlock")
		out, err := exec.Command("go", "build", "-o", cliOnce.path, "../cmd/airlock").CombinedOutput()
		if err != nil {
			cliOnce.err = &exec.Error{Name: "go build: " + string(out), Err: err}
		}
	})
	require.NoError(t, cliOnce.err)
	return cliOnce.path
}

// cli runs the airlock binary against the test stack.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(airlockCLI(t), args...)
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+env.stack.TemporalAddress, "VAULT_ADDR="+env.stack.VaultAddr, "VAULT_TOKEN="+env.stack.VaultToken)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestCLIApproveThenAuditShowsApproverAndAccessorNeverTheSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req := contract.CycleRequest{AgentID: "e2e-adv", CycleID: cycleID(t), Principal: "agent:e2e-adv",
		Thoughts: []contract.Thought{{Step: 1, Content: "the queue is backed up", Confidence: 0.6}},
		Actions:  []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "queue"}}}}
	run, err := env.starter.Start(ctx, req)
	require.NoError(t, err)
	seen := watchLease(ctx, t, "airlock-e2e-adv", k8s.JobName(run.WorkflowID, 0))
	require.Eventually(t, func() bool {
		p, err := env.starter.Pending(ctx, run.WorkflowID)
		return err == nil && len(p) == 1
	}, 30*time.Second, 50*time.Millisecond)

	// Listed from visibility (AirlockOutcome="waiting"), which follows the
	// workflow by a moment.
	var out string
	require.Eventually(t, func() bool {
		out, err = cli(t, "cycle", "pending")
		return err == nil && strings.Contains(out, run.WorkflowID)
	}, 10*time.Second, 100*time.Millisecond, "cycle pending lists the waiting cycle: %s", out)
	assert.Contains(t, out, "e2e-adv")
	out, err = cli(t, "cycle", "pending", "--details")
	require.NoError(t, err, out)
	assert.Contains(t, out, "quick-write", "--details queries the cycle for its action")
	out, err = cli(t, "__complete", "approve", "")
	require.NoError(t, err, out)
	assert.Contains(t, out, run.WorkflowID+"\t", "Tab after `airlock approve` offers the waiting cycle")

	out, err = cli(t, "approve", run.WorkflowID, "--approver", "U9")
	require.Error(t, err, "a non-approver is refused")
	assert.Contains(t, out, "U9 is not an approver of agent e2e-adv")

	out, err = cli(t, "approve", run.WorkflowID, "--approver", "U2", "--comment", "ok for the queue")
	require.NoError(t, err, out)
	assert.Contains(t, out, "approved")
	res, err := run.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome)
	lease := <-seen
	require.NotEmpty(t, lease.token)

	out, err = cli(t, "cycle", "audit", run.WorkflowID)
	require.NoError(t, err, out)
	assert.Contains(t, out, "approve by U2 via cli", "the approver")
	assert.Contains(t, out, res.Actions[0].LeaseAccessor, "the credential accessor")
	assert.Contains(t, out, "the queue is backed up", "the thought")
	assert.Contains(t, out, "chain verified")
	assertAbsent(t, "cycle audit output", out, lease.token)

	t.Run("a tampered export is caught at the exact entry", func(t *testing.T) {
		js, err := cli(t, "cycle", "audit", run.WorkflowID, "--json")
		require.NoError(t, err, js)
		lines := strings.Split(strings.TrimSpace(js), "\n")
		require.Greater(t, len(lines), 6)
		lines[5] = strings.Replace(lines[5], `"summary":"`, `"summary":"(edited) `, 1)
		file := filepath.Join(t.TempDir(), "trail.jsonl")
		require.NoError(t, os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
		out, err := cli(t, "cycle", "audit", "--file", file)
		require.Error(t, err, "a broken chain exits non-zero")
		assert.Contains(t, out, "BROKEN at entry 5: content does not match its hash (entry altered)")
	})

	t.Run("cycles are searchable by the Airlock search attributes", func(t *testing.T) {
		require.Eventually(t, func() bool {
			out, err := cli(t, "cycle", "list", "--query", `AirlockAgent="e2e-adv" AND AirlockOutcome="succeeded"`)
			return err == nil && strings.Contains(out, run.WorkflowID)
		}, 10*time.Second, 200*time.Millisecond)
		out, err := cli(t, "cycle", "list", "--query", `AirlockAgent="e2e-adv" AND AirlockOutcome="denied"`)
		require.NoError(t, err, out)
		assert.NotContains(t, out, run.WorkflowID)
	})
}
