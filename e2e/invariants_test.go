package e2e

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/internal/devsetup"
	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/worker"
)

// jobsOf lists the Jobs a cycle created in a namespace.
func jobsOf(ctx context.Context, t *testing.T, namespace, wfID string) []batchv1.Job {
	t.Helper()
	list, err := env.kube.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{LabelSelector: k8s.LabelWorkflow + "=" + k8s.WorkflowLabel(wfID)})
	require.NoError(t, err)
	return list.Items
}

func podsOf(ctx context.Context, t *testing.T, namespace, jobName string) []corev1.Pod {
	t.Helper()
	list, err := env.kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jobName})
	require.NoError(t, err)
	return list.Items
}

// Invariant 2: without credentials nothing runs — and the cycle recovers
// once Vault is back.
func TestInvariant2FailClosedVaultOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Signing and verifying the request need Vault too (invariant 9): the
	// agent proves who it is while Vault is up, its write waits for a
	// human, and Vault goes away before the approved write is staged.
	const ns = "airlock-e2e-adv"
	run, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: "e2e-adv", CycleID: cycleID(t),
		Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "outage"}}}})
	require.NoError(t, err)
	var pending []contract.PendingAction
	require.Eventually(t, func() bool {
		pending, err = env.starter.Pending(ctx, run.WorkflowID)
		return err == nil && len(pending) == 1
	}, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, env.stack.StopProcess(devstack.ProcVault))
	// Vault returns (dev mode starts empty: the operator re-applies its
	// setup). A dev Vault comes back empty: its payload key is created anew
	// (as the setup did) and the worker seals with a fresh data key from now
	// on, or payloads written from now would be readable only from its
	// cache. Done on every path, so a failure here does not take the rest
	// of the suite down with it.
	restarted := false
	restore := func(ctx context.Context) error {
		restarted = true
		if err := env.stack.StartProcess(ctx, devstack.ProcVault); err != nil {
			return err
		}
		if err := devsetup.Prepare(ctx, env.catalog, env.broker, k8s.NewRunner(env.kube)); err != nil {
			return err
		}
		if err := configureDatabase(ctx); err != nil {
			return err
		}
		if _, err := worker.NewCodec(ctx, worker.CodecConfig{VaultAddr: env.stack.VaultAddr, VaultToken: env.stack.VaultToken}, true); err != nil {
			return err
		}
		env.codec.Rotate()
		return nil
	}
	defer func() {
		if !restarted {
			if err := restore(context.Background()); err != nil {
				t.Errorf("restore Vault: %v", err)
			}
		}
	}()
	_, err = env.starter.Decide(ctx, run.WorkflowID, contract.Decision{ActionIndex: 0, ActionHash: pending[0].Action.Hash,
		Kind: contract.DecisionApprove, Approver: "U1", Via: "cli"})
	require.NoError(t, err)
	jobName := k8s.JobName(run.WorkflowID, 0)

	// The cycle keeps trying to lease (staging is a local activity, retried
	// by the worker): its intent, the suspended Job, is recorded, and for as
	// long as Vault is down no Secret and no Pod appear.
	require.Eventually(t, func() bool {
		job, err := env.kube.BatchV1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{})
		return err == nil && job.Spec.Suspend != nil && *job.Spec.Suspend
	}, time.Minute, 100*time.Millisecond, "staging records its intent while Vault is down")
	assert.Never(t, func() bool {
		_, err := env.kube.CoreV1().Secrets(ns).Get(ctx, k8s.SecretName(jobName), metav1.GetOptions{})
		return !k8serrors.IsNotFound(err) || len(podsOf(ctx, t, ns, jobName)) > 0
	}, 3*time.Second, 100*time.Millisecond, "no Secret and no Pod without credentials")
	job, err := env.kube.BatchV1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.True(t, *job.Spec.Suspend, "the Job must not start without credentials")
	status, err := env.starter.Status(ctx, run.WorkflowID)
	require.NoError(t, err)
	assert.Empty(t, status.Actions, "the action has not finished")

	require.NoError(t, restore(ctx))
	res, err := run.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
	assert.Len(t, jobsOf(ctx, t, ns, run.WorkflowID), 1)
}

// Invariant 2, the other ways in: no policy (unknown action) and no
// approval (timeout) mean nothing runs.
func TestInvariant2FailClosedNoPolicyNoApproval(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{{Type: "not-in-catalog"}}})
	require.Error(t, err)
	// Approval timeouts are denials: unit-tested with time skipping in
	// workflows (TestAdvisoryTimeoutIsADenialAndNothingIsLeased).
}

// Invariant 3 and the lease-accounting test: after cycles that succeed,
// fail and are cancelled mid-Job, no lease of theirs is still valid.
func TestInvariant3EveryLeaseIsRevokedWhateverTheOutcome(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var accessors, dbLeases []string
	for i, acts := range [][]policy.Proposal{
		{{Type: "echo", Params: map[string]any{"text": "ok"}}, {Type: "db-report"}},
		{{Type: "broken"}},
		{{Type: "echo", Params: map[string]any{"text": "a"}}, {Type: "slow-write", Params: map[string]any{"target": "b"}}},
	} {
		res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t) + "-" + strconv.Itoa(i), Actions: acts})
		require.NoError(t, err)
		for _, a := range res.Actions {
			if a.LeaseAccessor != "" {
				accessors = append(accessors, a.LeaseAccessor)
			}
			if a.DBLeaseID != "" {
				dbLeases = append(dbLeases, a.DBLeaseID)
			}
		}
	}

	// Cancellation while the Job runs: the Job and its Pods are deleted and
	// the lease revoked, on a disconnected context.
	run, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t) + "-cancel",
		Actions: []policy.Proposal{{Type: "slow-write", Params: map[string]any{"target": "c"}}}})
	require.NoError(t, err)
	jobName := k8s.JobName(run.WorkflowID, 0)
	lease := <-watchLease(ctx, t, ns, jobName)
	require.NotEmpty(t, lease.accessor)
	accessors = append(accessors, lease.accessor)
	require.NoError(t, env.starter.Cancel(ctx, run.WorkflowID))
	_, err = run.Get(ctx)
	var canceled *temporal.CanceledError
	require.True(t, errors.As(err, &canceled), "got %v", err)
	require.Eventually(t, func() bool {
		_, err := env.kube.BatchV1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{})
		return k8serrors.IsNotFound(err) && len(podsOf(ctx, t, ns, jobName)) == 0
	}, 30*time.Second, 100*time.Millisecond, "cancellation deletes the Job and its Pods")

	require.GreaterOrEqual(t, len(accessors), 6)
	for _, acc := range accessors {
		_, err := env.broker.Lookup(ctx, acc)
		assert.ErrorIs(t, err, vault.ErrNotFound, "lease %s still valid", acc)
	}
	require.Len(t, dbLeases, 1)
	for _, id := range dbLeases {
		valid, err := env.broker.LeaseValid(ctx, id)
		require.NoError(t, err)
		assert.False(t, valid, "dynamic database lease %s still valid", id)
	}
}

// Invariant 4: the NetworkPolicy exists before the Pod. A watch started
// before the cycle sees the Pod's ADDED event at its creation revision;
// resourceVersions are etcd revisions here, so they order writes across
// resource types.
func TestInvariant4NetworkPolicyExistsBeforeThePod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t),
		Actions: []policy.Proposal{{Type: "slow-write", Params: map[string]any{"target": "np"}}}}
	jobName := k8s.JobName(contract.CycleWorkflowID(req.AgentID, req.CycleID), 0)
	w, err := env.kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jobName})
	require.NoError(t, err)
	defer w.Stop()
	run, err := env.starter.Start(ctx, req)
	require.NoError(t, err)
	var podRV int64
	for ev := range w.ResultChan() {
		if pod, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
			podRV, _ = strconv.ParseInt(pod.ResourceVersion, 10, 64)
			break
		}
	}
	require.NotZero(t, podRV, "the Pod was never seen")
	np, err := env.kube.NetworkingV1().NetworkPolicies(ns).Get(ctx, k8s.NetworkPolicyName(jobName), metav1.GetOptions{})
	require.NoError(t, err, "the NetworkPolicy exists while the Pod runs")
	npRV, _ := strconv.ParseInt(np.ResourceVersion, 10, 64)
	assert.Less(t, npRV, podRV, "the NetworkPolicy was written before the Pod was created")
	_, err = run.Get(ctx)
	require.NoError(t, err)
}

func podsOfNoT(ctx context.Context, jobName string) []corev1.Pod {
	list, err := env.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jobName})
	if err != nil {
		return nil
	}
	return list.Items
}

// Invariant 6: a retried staging activity (or a restarted worker) neither
// leases twice nor creates a second Job; the Secret is owned by the Job.
func TestInvariant6StagingIsIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	acts := &activities.Activities{Catalog: env.catalog, Broker: env.broker, Jobs: k8s.NewRunner(env.kube)}
	plan, err := env.catalog.Plan("e2e", []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "twice"}}})
	require.NoError(t, err)
	in := activities.StageInput{WorkflowID: "cycle/e2e/" + cycleID(t), AgentID: "e2e", Namespace: ns, Action: plan.Actions[0]}
	var suite testsuite.WorkflowTestSuite
	aenv := suite.NewTestActivityEnvironment()
	aenv.RegisterActivity(acts)
	stage := func() activities.StageOutput {
		v, err := aenv.ExecuteActivity(acts.StageAction, in)
		require.NoError(t, err)
		var out activities.StageOutput
		require.NoError(t, v.Get(&out))
		return out
	}
	first, second := stage(), stage()
	assert.Equal(t, first.LeaseAccessor, second.LeaseAccessor, "the retry reuses the lease")
	assert.Equal(t, first.JobName, second.JobName)
	assert.Len(t, jobsOf(ctx, t, ns, in.WorkflowID), 1)
	job, err := env.kube.BatchV1().Jobs(ns).Get(ctx, first.JobName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(0), *job.Spec.BackoffLimit)
	assert.Equal(t, int64(60), *job.Spec.ActiveDeadlineSeconds)
	assert.NotNil(t, job.Spec.TTLSecondsAfterFinished)
	sec, err := env.kube.CoreV1().Secrets(ns).Get(ctx, first.SecretName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, sec.OwnerReferences, 1)
	assert.Equal(t, job.UID, sec.OwnerReferences[0].UID, "the Secret is owned by the Job")
	v, err := aenv.ExecuteActivity(acts.ReleaseAction, activities.ReleaseInput{Namespace: ns, JobName: first.JobName, DeleteJob: true})
	require.NoError(t, err)
	var out activities.ReleaseOutput
	require.NoError(t, v.Get(&out))
	assert.Equal(t, first.LeaseAccessor, out.RevokedAccessor, "release finds the lease by the Job's Secret")
	_, err = env.broker.Lookup(ctx, first.LeaseAccessor)
	assert.ErrorIs(t, err, vault.ErrNotFound)
}

// Outage: the apiserver restarts while a Job runs; the cycle completes and
// no action runs twice.
func TestApiserverRestartMidCycleCompletesWithoutDuplicateJobs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t),
		Actions: []policy.Proposal{{Type: "slow-write", Params: map[string]any{"target": "restart"}}, {Type: "echo", Params: map[string]any{"text": "after"}}}})
	require.NoError(t, err)
	jobName := k8s.JobName(run.WorkflowID, 0)
	require.Eventually(t, func() bool { return len(podsOfNoT(ctx, jobName)) == 1 }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, env.stack.Restart(ctx, devstack.ProcKubeAPIServer))
	res, err := run.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
	assert.Len(t, jobsOf(ctx, t, ns, run.WorkflowID), 2, "one Job per action")
	assert.Len(t, podsOf(ctx, t, ns, jobName), 1, "the action ran once")
}

// Read actions (and so everything that runs in shadow mode) get tokens from
// the read-only role, which cannot carry a write policy whatever the catalog says.
func TestReadOnlyRoleCannotCarryWritePolicies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := env.broker.IssueToken(ctx, vault.TokenRequest{Policies: []string{"airlock-e2e-write"}, TTL: time.Minute, ReadOnly: true})
	require.Error(t, err, "the read-only role refuses a write policy")
	cred, err := env.broker.IssueToken(ctx, vault.TokenRequest{Policies: []string{"airlock-e2e-read"}, TTL: time.Minute, ReadOnly: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"airlock-e2e-read"}, cred.Policies)
	require.NoError(t, env.broker.Revoke(ctx, cred.Accessor))
}

// Invariant 5: agent namespaces enforce Pod Security "restricted" for real,
// so even a Pod created outside Airlock cannot escalate there.
func TestInvariant5AgentNamespacesEnforceRestricted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nsObj, err := env.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "restricted", nsObj.Labels["pod-security.kubernetes.io/enforce"])
	privileged := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "escalate", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "x", Image: "docker.io/library/busybox" + digest,
			SecurityContext: &corev1.SecurityContext{Privileged: ptrTo(true)},
		}}},
	}
	_, err = env.kube.CoreV1().Pods(ns).Create(ctx, privileged, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.Error(t, err)
	assert.True(t, k8serrors.IsForbidden(err), "got %v", err)
	assert.Contains(t, err.Error(), `violates PodSecurity "restricted`)
}

func ptrTo[T any](v T) *T { return &v }

// An action the apiserver refuses as rendered fails at once, without a
// lease, instead of retrying for half an hour.
func TestInvariant2ARefusedJobFailsFastAndLeasesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Retrying would outlast ctx (staging retries for up to 30 min).
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{{Type: "greedy-write"}}})
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeFailed, res.Outcome)
	assert.Contains(t, res.Actions[0].Error, "not a valid annotation key!")
	assert.Empty(t, res.Actions[0].LeaseAccessor, "nothing was leased")
	assert.Empty(t, jobsOf(ctx, t, ns, res.WorkflowID))
}
