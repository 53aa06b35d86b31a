package chaos

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
)

// TestTemporalRestartKeepsPendingApprovals restarts the Temporal server
// (its SQLite file persists) while advisory cycles wait for a human: after
// the restart every approval still lands and every cycle completes.
func TestTemporalRestartKeepsPendingApprovals(t *testing.T) {
	const n = 6
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, 2)
	stamp := fmt.Sprintf("trestart-%d", time.Now().UnixNano())
	ids, _ := startPending(ctx, t, "chaos-adv", stamp, n)
	begin := time.Now()
	require.NoError(t, env.stack.Restart(ctx, devstack.ProcTemporal))
	fmt.Printf("\nTemporal restarted with %d approvals pending in %s\n", n, time.Since(begin).Round(time.Millisecond))

	var wg sync.WaitGroup
	results := make([]contract.CycleResult, n)
	errs := make([]error, n)
	for i, id := range ids {
		wg.Go(func() {
			if errs[i] = approve(ctx, id); errs[i] != nil {
				return
			}
			results[i], errs[i] = env.starter.Result(ctx, id)
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], ids[i])
		assert.Equal(t, contract.OutcomeSucceeded, results[i].Outcome, ids[i])
	}
	r := collect(ctx, t, stamp, ids, f)
	r.print(os.Stdout)
	r.assertClean(t)
}

// TestAPIServerRestartMidJob restarts kube-apiserver while autonomous Jobs
// run on worker processes: the cycles complete, each action ran once, and
// nothing is left.
func TestAPIServerRestartMidJob(t *testing.T) {
	const n = 8
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, 2)
	stamp := fmt.Sprintf("arestart-%d", time.Now().UnixNano())
	ids := make([]string, n)
	runs := make([]func() (contract.CycleResult, error), n)
	for i := range n {
		req := contract.CycleRequest{AgentID: "chaos-auto", CycleID: fmt.Sprintf("%s-%d", stamp, i),
			Actions: []policy.Proposal{{Type: "patch", Params: map[string]any{"seq": i}}}}
		run, err := startRetrying(ctx, req)
		require.NoError(t, err)
		ids[i] = run.WorkflowID
		runs[i] = func() (contract.CycleResult, error) { return run.Get(ctx) }
	}
	// Restart once the first Job exists: cycles are mid-staging or mid-Job.
	require.Eventually(t, func() bool {
		r, err := env.starter.Status(ctx, ids[0])
		return err == nil && len(r.Audit) > 0 && hasLease(r)
	}, time.Minute, 50*time.Millisecond)
	require.NoError(t, env.stack.Restart(ctx, devstack.ProcKubeAPIServer))
	for i, get := range runs {
		res, err := get()
		require.NoError(t, err, ids[i])
		assert.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%s: %+v", ids[i], outcomes(res))
	}
	r := collect(ctx, t, stamp, ids, f)
	fmt.Printf("\nkube-apiserver restarted while %d cycles ran\n", n)
	r.print(os.Stdout)
	r.assertClean(t)
}

func hasLease(r contract.CycleResult) bool {
	for _, e := range r.Audit {
		if e.Kind == contract.AuditLease {
			return true
		}
	}
	return false
}

// TestVaultRestartFailsClosedAndResumes stops the (persistent, non-dev)
// Vault while approved writes are about to be staged: nothing runs while it
// is down — no Pod, no Secret — and once it is back every cycle completes
// with nothing left valid.
func TestVaultRestartFailsClosedAndResumes(t *testing.T) {
	const n = 6
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, 2)
	stamp := fmt.Sprintf("vrestart-%d", time.Now().UnixNano())
	ids, pending := startPending(ctx, t, "chaos-adv", stamp, n)
	require.NoError(t, env.stack.StopProcess(devstack.ProcVault))
	restarted := false
	defer func() {
		if !restarted {
			_ = env.stack.StartProcess(context.Background(), devstack.ProcVault)
		}
	}()
	for i, id := range ids {
		_, err := env.starter.Decide(ctx, id, contract.Decision{ActionIndex: 0, ActionHash: pending[i].Action.Hash,
			Kind: contract.DecisionApprove, Approver: "U1", Via: "cli"})
		require.NoError(t, err)
	}
	// Every approved write is now trying, and failing, to lease: its intent
	// (the suspended Job) is recorded, and while Vault is down no Secret
	// and no Pod of any of them appear.
	for _, id := range ids {
		require.Eventually(t, func() bool { return stagingStarted(ctx, id) }, time.Minute, 100*time.Millisecond,
			"%s stages while Vault is down", id)
	}
	assert.Never(t, func() bool {
		pods, err := env.kube.CoreV1().Pods("airlock-chaos-adv").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, id := range ids {
			job := k8s.JobName(id, 0)
			for _, p := range pods.Items {
				if p.Labels["job-name"] == job {
					return true
				}
			}
			if _, err := env.kube.CoreV1().Secrets("airlock-chaos-adv").Get(ctx, k8s.SecretName(job), metav1.GetOptions{}); !k8serrors.IsNotFound(err) {
				return true
			}
		}
		return false
	}, 3*time.Second, 200*time.Millisecond, "no Pod and no Secret without credentials")

	begin := time.Now()
	require.NoError(t, env.stack.StartProcess(ctx, devstack.ProcVault))
	restarted = true
	fmt.Printf("\nVault (persistent) down with %d approved writes waiting to stage; back and unsealed in %s\n", n, time.Since(begin).Round(time.Millisecond))
	for _, id := range ids {
		res, err := env.starter.Result(ctx, id)
		require.NoError(t, err, id)
		assert.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%s: %v", id, outcomes(res))
	}
	r := collect(ctx, t, stamp, ids, f)
	r.print(os.Stdout)
	r.assertClean(t)
}

// stagingStarted reports whether the cycle's staging recorded its intent:
// the action's Job exists, suspended (it runs nothing without credentials).
func stagingStarted(ctx context.Context, id string) bool {
	job, err := env.kube.BatchV1().Jobs("airlock-chaos-adv").Get(ctx, k8s.JobName(id, 0), metav1.GetOptions{})
	return err == nil && job.Spec.Suspend != nil && *job.Spec.Suspend
}

// startPending starts n single-write cycles of an advisory agent and waits
// until each asks for approval; it returns their ids and pending actions.
func startPending(ctx context.Context, t *testing.T, agent, stamp string, n int) ([]string, []contract.PendingAction) {
	t.Helper()
	ids := make([]string, n)
	pending := make([]contract.PendingAction, n)
	for i := range n {
		req := contract.CycleRequest{AgentID: agent, CycleID: fmt.Sprintf("%s-%d", stamp, i),
			Actions: []policy.Proposal{{Type: "patch", Params: map[string]any{"seq": i}}}}
		run, err := startRetrying(ctx, req)
		require.NoError(t, err)
		ids[i] = run.WorkflowID
	}
	for i, id := range ids {
		require.Eventually(t, func() bool {
			p, err := env.starter.Pending(ctx, id)
			if err != nil || len(p) != 1 {
				return false
			}
			pending[i] = p[0]
			return true
		}, time.Minute, 100*time.Millisecond, "%s waits for approval", id)
	}
	return ids, pending
}
