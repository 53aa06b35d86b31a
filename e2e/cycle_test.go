package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/vault"
)

const ns = "airlock-e2e"

func cycleID(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
}

// leaseSeen is what a test observed of an action's credential while its Job ran.
type leaseSeen struct {
	accessor string
	token    string
	policies []string
	ttl      time.Duration
	maxTTL   time.Duration
}

// watchLease waits for the action's Secret to appear and reads the live
// token from it (what the Job's container would get) and its lease.
func watchLease(ctx context.Context, t *testing.T, ns, jobName string) <-chan leaseSeen {
	out := make(chan leaseSeen, 1)
	go func() {
		defer close(out)
		seen, ok := <-watchSecret(ctx, ns, jobName)
		if !ok {
			return
		}
		l, err := env.broker.Lookup(ctx, seen.accessor)
		if err != nil {
			t.Errorf("lookup live lease %s: %v", seen.accessor, err)
			return
		}
		out <- leaseSeen{accessor: seen.accessor, token: seen.token, policies: l.Policies, ttl: l.TTL, maxTTL: l.MaxTTL}
	}()
	return out
}

func TestInvariant1And5CycleRunsHardenedJobWithScopedShortLivedToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := contract.CycleRequest{
		AgentID: "e2e", CycleID: cycleID(t), Principal: "agent:e2e",
		Thoughts: []contract.Thought{{Step: 1, Content: "write after reading", Confidence: 0.9}},
		Actions: []policy.Proposal{
			{Type: "echo", Params: map[string]any{"text": "hi"}},
			{Type: "slow-write", Params: map[string]any{"target": "db"}},
		},
	}
	wfID := contract.CycleWorkflowID(req.AgentID, req.CycleID)
	seen := watchLease(ctx, t, ns, k8s.JobName(wfID, 1))

	res, err := env.starter.RunCycle(ctx, req)
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res)
	require.Len(t, res.Actions, 2)
	assert.Equal(t, `{"echo":"done"}`, res.Actions[0].Output, "the Job's termination message is the action's output")
	assert.Equal(t, `{"written":true}`, res.Actions[1].Output)

	lease, ok := <-seen
	require.True(t, ok, "the slow Job's Secret was never seen")

	t.Run("token carried exactly the action's policies and a deadline-bound TTL", func(t *testing.T) {
		assert.Equal(t, []string{"airlock-e2e-write"}, lease.policies)
		assert.Positive(t, lease.ttl)
		assert.Equal(t, 3*time.Minute, lease.maxTTL, "max TTL = deadline (1m) + margin (2m); renewal cannot pass it")
		assert.Equal(t, res.Actions[1].LeaseAccessor, lease.accessor)
		// The Secret held the real token: it looked itself up while the Job ran.
		assert.NotEmpty(t, lease.token)
	})

	t.Run("every token is revoked afterwards", func(t *testing.T) {
		for _, a := range res.Actions {
			require.NotEmpty(t, a.LeaseAccessor)
			_, err := env.broker.Lookup(ctx, a.LeaseAccessor)
			assert.ErrorIs(t, err, vault.ErrNotFound, "action %d lease still valid", a.Index)
		}
		vc, err := api.NewClient(&api.Config{Address: env.stack.VaultAddr})
		require.NoError(t, err)
		vc.SetToken(lease.token)
		_, err = vc.Auth().Token().LookupSelf()
		assert.Error(t, err, "the token the Job had no longer works")
	})

	t.Run("Job existed with the hardened pod spec and ran to completion", func(t *testing.T) {
		for _, a := range res.Actions {
			job, err := env.kube.BatchV1().Jobs(ns).Get(ctx, a.Job.Name, metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, int32(0), *job.Spec.BackoffLimit)
			assert.NotNil(t, job.Spec.ActiveDeadlineSeconds)
			assert.NotNil(t, job.Spec.TTLSecondsAfterFinished)
			assert.Equal(t, wfID, job.Annotations["airlock.dev/workflow-id"])
			pods, err := env.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + a.Job.Name})
			require.NoError(t, err)
			require.Len(t, pods.Items, 1, "exactly one Pod ran")
			assertHardened(t, &pods.Items[0])
			assert.Equal(t, corev1.PodSucceeded, pods.Items[0].Status.Phase)
		}
	})

	t.Run("Secret and NetworkPolicy are cleaned up", func(t *testing.T) {
		for _, a := range res.Actions {
			_, err := env.kube.CoreV1().Secrets(ns).Get(ctx, k8s.SecretName(a.Job.Name), metav1.GetOptions{})
			assert.True(t, k8serrors.IsNotFound(err), "secret of %s: %v", a.Job.Name, err)
			_, err = env.kube.NetworkingV1().NetworkPolicies(ns).Get(ctx, k8s.NetworkPolicyName(a.Job.Name), metav1.GetOptions{})
			assert.True(t, k8serrors.IsNotFound(err), "network policy of %s: %v", a.Job.Name, err)
		}
	})

	t.Run("no credential value in the workflow history or the worker's logs", func(t *testing.T) {
		raw := rawHistory(ctx, t, wfID)
		total, encrypted := countPayloads(raw)
		assert.Positive(t, total)
		assert.Equal(t, total, encrypted, "every stored data payload is ciphertext")
		assert.NotContains(t, historyText(t, raw), lease.accessor, "raw history reveals nothing, not even accessors")
		history := historyJSON(ctx, t, wfID)
		assert.True(t, strings.Contains(history, lease.accessor), "sanity: the decoded history mentions the lease accessor")
		assertAbsent(t, "workflow history", history, lease.token)
		assertAbsent(t, "worker logs", env.logs.String(), lease.token)
	})
}

func assertHardened(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	spec := pod.Spec
	require.NotNil(t, spec.AutomountServiceAccountToken)
	assert.False(t, *spec.AutomountServiceAccountToken, "no service-account token")
	for _, v := range spec.Volumes {
		assert.Nil(t, v.Projected, "no projected service-account token volume")
	}
	require.NotNil(t, spec.SecurityContext)
	assert.True(t, *spec.SecurityContext.RunAsNonRoot)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, spec.SecurityContext.SeccompProfile.Type)
	assert.Equal(t, corev1.RestartPolicyNever, spec.RestartPolicy)
	require.Len(t, spec.Containers, 1)
	sc := spec.Containers[0].SecurityContext
	require.NotNil(t, sc)
	assert.False(t, *sc.AllowPrivilegeEscalation)
	assert.True(t, *sc.ReadOnlyRootFilesystem)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	assert.Contains(t, spec.Containers[0].Image, "@sha256:")
	assert.False(t, spec.Containers[0].Resources.Limits.Cpu().IsZero())
	assert.False(t, spec.Containers[0].Resources.Limits.Memory().IsZero())
}

// assertAbsent looks for a secret in its raw, base64 and JSON-escaped forms.
func assertAbsent(t *testing.T, where, haystack, secret string) {
	t.Helper()
	require.NotEmpty(t, secret)
	for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), strings.TrimPrefix(secret, "hvs.")} {
		if strings.Contains(haystack, form) {
			t.Errorf("%s contains a credential value", where)
		}
	}
}

var payloadData = regexp.MustCompile(`"data":\s*"([A-Za-z0-9+/=]+)"`)

// historyJSON returns every event of a workflow's history, payloads
// decrypted through the codec, as JSON followed by every payload's decoded
// data, so searches see what the payloads say.
func historyJSON(ctx context.Context, t *testing.T, wfID string) string {
	t.Helper()
	return historyText(t, decodedHistory(t, rawHistory(ctx, t, wfID)))
}

func historyText(t *testing.T, h *historypb.History) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range h.Events {
		js, err := protojson.Marshal(ev)
		require.NoError(t, err)
		b.Write(js)
		b.WriteByte('\n')
		for _, m := range payloadData.FindAllSubmatch(js, -1) {
			if dec, err := base64.StdEncoding.DecodeString(string(m[1])); err == nil {
				b.Write(dec)
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

func TestFailedJobFailsTheCycleAndStillRevokesAndCleansUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{
		{Type: "broken"},
		{Type: "echo", Params: map[string]any{"text": "never"}},
	}}
	res, err := env.starter.RunCycle(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeFailed, res.Outcome)
	failed := res.Actions[0]
	assert.Equal(t, contract.OutcomeFailed, failed.Outcome)
	assert.Equal(t, int32(1), failed.ExitCode)
	assert.Equal(t, "boom", failed.Output)
	assert.Equal(t, contract.OutcomeSkipped, res.Actions[1].Outcome, "nothing runs after a failure")

	_, err = env.broker.Lookup(ctx, failed.LeaseAccessor)
	assert.ErrorIs(t, err, vault.ErrNotFound, "the failed action's token is revoked")
	_, err = env.kube.CoreV1().Secrets(ns).Get(ctx, k8s.SecretName(failed.Job.Name), metav1.GetOptions{})
	assert.True(t, k8serrors.IsNotFound(err))
	_, err = env.kube.BatchV1().Jobs(ns).Get(ctx, k8s.JobName(res.WorkflowID, 1), metav1.GetOptions{})
	assert.True(t, k8serrors.IsNotFound(err), "the skipped action created no Job")
}

func TestStartingTheSameCycleTwiceRunsItOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "once"}}}}

	var wg sync.WaitGroup
	runs := make([]string, 3)
	for i := range runs {
		wg.Go(func() {
			r, err := env.starter.Start(ctx, req)
			if assert.NoError(t, err) {
				runs[i] = r.RunID
			}
		})
	}
	wg.Wait()
	assert.Equal(t, runs[0], runs[1])
	assert.Equal(t, runs[0], runs[2])
	res, err := env.starter.RunCycle(ctx, req) // after completion: still the same cycle
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome)
	again, err := env.starter.Start(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, runs[0], again.RunID)

	jobs, err := env.kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	n := 0
	for _, j := range jobs.Items {
		if j.Annotations["airlock.dev/workflow-id"] == res.WorkflowID {
			n++
		}
	}
	assert.Equal(t, 1, n, "one Job for one action")
}

func TestInvalidRequestsAreRefusedBeforeAnythingRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tests := map[string]struct {
		req  contract.CycleRequest
		want string
	}{
		"unknown agent":       {contract.CycleRequest{AgentID: "mallory", CycleID: "x", Actions: []policy.Proposal{{Type: "echo"}}}, `agent_id: unknown agent "mallory"`},
		"unknown action type": {contract.CycleRequest{AgentID: "e2e", CycleID: "x", Actions: []policy.Proposal{{Type: "rm-rf"}}}, `actions[0].type: unknown action type "rm-rf"`},
		"missing fields":      {contract.CycleRequest{AgentID: "e2e"}, "cycle_id: required"},
		"params do not validate": {contract.CycleRequest{AgentID: "e2e", CycleID: "x", Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": 42}}}},
			"actions[0].params.text: got number, want string"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := env.starter.Start(ctx, tc.req)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			if tc.req.CycleID != "" {
				_, err := env.tc.DescribeWorkflowExecution(ctx, contract.CycleWorkflowID(tc.req.AgentID, tc.req.CycleID), "")
				assert.Error(t, err, "no workflow was started")
			}
		})
	}

	t.Run("the workflow re-validates requests that bypass the starter", func(t *testing.T) {
		req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{{Type: "rm-rf"}}}
		req, err := starter.SignRequest(ctx, testSigner, req, time.Now()) // a verified agent, proposing nonsense
		require.NoError(t, err)
		id := contract.CycleWorkflowID(req.AgentID, req.CycleID)
		run, err := env.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: contract.TaskQueue},
			contract.CycleWorkflowName, req)
		require.NoError(t, err)
		err = run.Get(ctx, nil)
		var appErr *temporal.ApplicationError
		require.True(t, errors.As(err, &appErr), "got %v", err)
		assert.Equal(t, contract.ErrTypeInvalidRequest, appErr.Type())
		assert.Contains(t, err.Error(), `unknown action type "rm-rf"`)
	})
}
