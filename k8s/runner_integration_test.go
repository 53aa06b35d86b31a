package k8s_test

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/k8s"
)

// stack is a real control plane (etcd, kube-apiserver with PodSecurity
// admission, controller-manager, scheduler) whose one node is simulated by
// kwok: Pods get statuses but run nothing.
var stack *devstack.Stack

func TestMain(m *testing.M) {
	os.Exit(devstack.Main(m, devstack.Options{Kube: true}, &stack))
}

// Pod annotations the kwok stages of devstack act on.
const (
	kwokResult   = "kwok.airlock.dev/result"      // becomes the termination message
	kwokFail     = "kwok.airlock.dev/fail"        // "true": the container exits 1
	kwokDuration = "kwok.airlock.dev/duration-ms" // keeps the Pod running this long
)

func clientset(t *testing.T) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(stack.RestConfig)
	require.NoError(t, err)
	return cs
}

// agentNamespace bootstraps a fresh agent namespace (twice, to show it is idempotent).
func agentNamespace(t *testing.T, r *k8s.Runner, name string) string {
	t.Helper()
	for range 2 {
		require.NoError(t, r.EnsureNamespace(t.Context(), name, "agent-"+name, k8s.Quota{}))
	}
	return name
}

func actionSpec(ns, workflowID string, index int, podAnnotations map[string]string) k8s.Spec {
	return k8s.Spec{
		Namespace:      ns,
		AgentID:        "agent-" + ns,
		WorkflowID:     workflowID,
		ActionIndex:    index,
		ActionType:     "http.get",
		Image:          "registry.example/airlock/http@sha256:" + strings.Repeat("5e", 32),
		Command:        []string{"/action"},
		Env:            map[string]string{"TARGET": "https://api.example.com"},
		SecretEnv:      []string{"VAULT_TOKEN"},
		Egress:         []k8s.EgressRule{{CIDR: "192.0.2.0/24", Port: 443}, {CIDR: k8s.ClusterDNS}},
		Deadline:       2 * time.Minute,
		PodAnnotations: podAnnotations,
	}
}

// prepare creates the Job, its Secret and its NetworkPolicy: everything but Start.
func prepare(t *testing.T, r *k8s.Runner, s k8s.Spec) *batchv1.Job {
	t.Helper()
	ctx := t.Context()
	job, err := r.CreateJob(ctx, s)
	require.NoError(t, err)
	_, err = r.CreateSecret(ctx, job, map[string][]byte{"VAULT_TOKEN": []byte("s.test-token")}, map[string]string{"airlock.dev/lease-accessor": "acc"})
	require.NoError(t, err)
	require.NoError(t, r.CreateNetworkPolicy(ctx, job, s.Egress))
	return job
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestIntegrationRunAction(t *testing.T) {
	ctx := t.Context()
	cs := clientset(t)
	r := k8s.NewRunner(cs, k8s.WithPollInterval(200*time.Millisecond))
	ns := agentNamespace(t, r, "run")
	const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	s := actionSpec(ns, "cycle/agent-run/0001", 0, map[string]string{
		kwokResult:                `{"status":200}`,
		k8s.AnnotationTraceparent: traceparent,
	})

	job, err := r.CreateJob(ctx, s)
	require.NoError(t, err)
	again, err := r.CreateJob(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, job.UID, again.UID, "a retried CreateJob returns the same Job")
	jobs, err := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: k8s.LabelWorkflow + "=" + k8s.WorkflowLabel(s.WorkflowID)})
	require.NoError(t, err)
	assert.Len(t, jobs.Items, 1, "no second Job")

	secret, err := r.GetSecret(ctx, ns, k8s.SecretName(job.Name))
	require.NoError(t, err)
	assert.Nil(t, secret)
	job = prepare(t, r, s)
	require.NoError(t, r.Start(ctx, ns, job.Name))

	var progressCalls atomic.Int64
	out, err := r.Wait(waitCtx(t, time.Minute), ns, job.Name, func(string) { progressCalls.Add(1) })
	require.NoError(t, err)
	assert.True(t, out.Succeeded)
	assert.Equal(t, "Completed", out.Reason)
	assert.Equal(t, `{"status":200}`, out.Message, "the result comes back as the termination message")
	assert.Equal(t, int32(0), out.ExitCode)
	assert.False(t, out.FinishedAt.Before(out.StartedAt))
	assert.Positive(t, progressCalls.Load())
	require.NotEmpty(t, out.PodName)

	// The Pod exists, so PodSecurity "restricted" admitted it; it is also hardened beyond that.
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, out.PodName, metav1.GetOptions{})
	require.NoError(t, err)
	psc := pod.Spec.SecurityContext
	require.NotNil(t, psc)
	assert.True(t, ptr.Deref(psc.RunAsNonRoot, false))
	assert.Equal(t, int64(65532), ptr.Deref(psc.RunAsUser, 0))
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type)
	assert.False(t, ptr.Deref(pod.Spec.AutomountServiceAccountToken, true))
	assert.False(t, ptr.Deref(pod.Spec.EnableServiceLinks, true))
	require.Len(t, pod.Spec.Containers, 1)
	c := pod.Spec.Containers[0]
	csc := c.SecurityContext
	require.NotNil(t, csc)
	assert.False(t, ptr.Deref(csc.AllowPrivilegeEscalation, true))
	assert.False(t, ptr.Deref(csc.Privileged, true))
	assert.True(t, ptr.Deref(csc.ReadOnlyRootFilesystem, false))
	assert.Equal(t, []corev1.Capability{"ALL"}, csc.Capabilities.Drop)
	for _, v := range pod.Spec.Volumes {
		assert.Nil(t, v.Projected, "no service account token volume (%s)", v.Name)
	}
	assert.Contains(t, c.Env, corev1.EnvVar{Name: "TRACEPARENT", Value: traceparent})
	assert.Equal(t, s.WorkflowID, pod.Annotations[k8s.AnnotationWorkflowID])

	// Invariant 4: the NetworkPolicy existed before the Pod.
	np, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, k8s.NetworkPolicyName(job.Name), metav1.GetOptions{})
	require.NoError(t, err)
	assert.False(t, pod.CreationTimestamp.Before(&np.CreationTimestamp),
		"policy created %s, pod %s", np.CreationTimestamp, pod.CreationTimestamp)
	assert.Equal(t, job.UID, np.OwnerReferences[0].UID)

	secret, err = r.GetSecret(ctx, ns, k8s.SecretName(job.Name))
	require.NoError(t, err)
	require.NotNil(t, secret)
	require.Len(t, secret.OwnerReferences, 1)
	owner := secret.OwnerReferences[0]
	assert.Equal(t, "Job", owner.Kind)
	assert.Equal(t, job.Name, owner.Name)
	assert.Equal(t, job.UID, owner.UID)
	assert.True(t, ptr.Deref(owner.Controller, false))
	assert.False(t, ptr.Deref(secret.Immutable, false), "rotation updates the secret")

	// Cleanup drops the credentials and the policy now, keeps the Job.
	require.NoError(t, r.Cleanup(ctx, ns, job.Name))
	require.NoError(t, r.Cleanup(ctx, ns, job.Name))
	secret, err = r.GetSecret(ctx, ns, k8s.SecretName(job.Name))
	require.NoError(t, err)
	assert.Nil(t, secret)
	_, err = cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, k8s.NetworkPolicyName(job.Name), metav1.GetOptions{})
	assert.True(t, k8serrors.IsNotFound(err), "policy gone: %v", err)
	_, err = cs.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
	assert.NoError(t, err, "job kept until its TTL")

	// The finished Job is still found by a retry: it is not run again.
	again, err = r.CreateJob(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, job.UID, again.UID)
}

func TestIntegrationPodSecurityIsEnforced(t *testing.T) {
	cs := clientset(t)
	r := k8s.NewRunner(cs)
	ns := agentNamespace(t, r, "psa")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "root", Namespace: ns},
		Spec: corev1.PodSpec{
			ServiceAccountName: k8s.DefaultServiceAccount,
			Containers: []corev1.Container{{
				Name:            "c",
				Image:           "registry.example/x@sha256:" + strings.Repeat("00", 32),
				SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
			}},
		},
	}
	_, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	require.Error(t, err)
	assert.True(t, k8serrors.IsForbidden(err), "%v", err)
	assert.ErrorContains(t, err, "violates PodSecurity")
}

func TestIntegrationFailingAction(t *testing.T) {
	cs := clientset(t)
	r := k8s.NewRunner(cs, k8s.WithPollInterval(200*time.Millisecond))
	ns := agentNamespace(t, r, "fail")
	s := actionSpec(ns, "cycle/agent-fail/0001", 3, map[string]string{kwokFail: "true", kwokResult: "connection refused"})
	job := prepare(t, r, s)
	require.NoError(t, r.Start(t.Context(), ns, job.Name))

	out, err := r.Wait(waitCtx(t, time.Minute), ns, job.Name, nil)
	require.NoError(t, err)
	assert.False(t, out.Succeeded)
	assert.Equal(t, batchv1.JobReasonBackoffLimitExceeded, out.Reason)
	assert.Equal(t, int32(1), out.ExitCode)
	assert.Equal(t, "connection refused", out.Message)

	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job.Name})
	require.NoError(t, err)
	assert.Len(t, pods.Items, 1, "backoffLimit 0: the action is not retried")
}

func TestIntegrationStartRefusedWithoutNetworkPolicy(t *testing.T) {
	ctx := t.Context()
	cs := clientset(t)
	r := k8s.NewRunner(cs)
	ns := agentNamespace(t, r, "norun")
	s := actionSpec(ns, "cycle/agent-norun/0001", 0, nil)
	job, err := r.CreateJob(ctx, s)
	require.NoError(t, err)
	_, err = r.CreateSecret(ctx, job, map[string][]byte{"VAULT_TOKEN": []byte("t")}, nil)
	require.NoError(t, err)

	err = r.Start(ctx, ns, job.Name)
	require.ErrorIs(t, err, k8s.ErrNotReady)

	// The Job controller marks a suspended Job Suspended in the same sync
	// in which it would (wrongly) have made its Pod: once the condition is
	// there, any Pod would be too.
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := cs.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == batchv1.JobSuspended && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	}), "the job controller saw the job")
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job.Name})
	require.NoError(t, err)
	assert.Empty(t, pods.Items, "a suspended Job has no Pod")
}

func TestIntegrationDeleteKillsRunningAction(t *testing.T) {
	ctx := t.Context()
	cs := clientset(t)
	r := k8s.NewRunner(cs, k8s.WithPollInterval(200*time.Millisecond))
	ns := agentNamespace(t, r, "kill")
	s := actionSpec(ns, "cycle/agent-kill/0001", 0, map[string]string{kwokDuration: "600000"})
	job := prepare(t, r, s)
	require.NoError(t, r.Start(ctx, ns, job.Name))

	podsOfJob := func(ctx context.Context) ([]corev1.Pod, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job.Name})
		if err != nil {
			return nil, err
		}
		return pods.Items, nil
	}
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := podsOfJob(ctx)
		return err == nil && len(pods) == 1 && pods[0].Status.Phase == corev1.PodRunning, err
	}), "pod running")

	waitErr := make(chan error, 1)
	go func() {
		_, err := r.Wait(waitCtx(t, time.Minute), ns, job.Name, nil)
		waitErr <- err
	}()

	require.NoError(t, r.Delete(ctx, ns, job.Name))
	require.NoError(t, r.Delete(ctx, ns, job.Name), "idempotent")

	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
		if !k8serrors.IsNotFound(err) {
			return false, nil
		}
		pods, err := podsOfJob(ctx)
		return err == nil && len(pods) == 0, nil
	}), "job and pods gone")
	assert.ErrorIs(t, <-waitErr, k8s.ErrJobDeleted)
}

// Watches break when the apiserver restarts; Wait must ride it out.
func TestIntegrationWaitSurvivesAPIServerRestart(t *testing.T) {
	ctx := t.Context()
	cs := clientset(t)
	r := k8s.NewRunner(cs, k8s.WithPollInterval(200*time.Millisecond))
	ns := agentNamespace(t, r, "restart")
	s := actionSpec(ns, "cycle/agent-restart/0001", 0, map[string]string{kwokResult: "after restart", kwokDuration: "3000"})
	job := prepare(t, r, s)
	require.NoError(t, r.Start(ctx, ns, job.Name))

	type result struct {
		out k8s.Outcome
		err error
	}
	done := make(chan result, 1)
	var sawOutage atomic.Bool
	// waiting is closed at Wait's second report: it has read the Job and
	// opened (or tried to open) its watch.
	waiting := make(chan struct{})
	var reports atomic.Int64
	go func() {
		out, err := r.Wait(waitCtx(t, 2*time.Minute), ns, job.Name, func(status string) {
			if strings.Contains(status, "unavailable") {
				sawOutage.Store(true)
			}
			if reports.Add(1) == 2 {
				close(waiting)
			}
		})
		done <- result{out, err}
	}()
	select {
	case <-waiting:
	case res := <-done:
		require.FailNow(t, "Wait returned before the restart", "%+v", res)
	}
	require.NoError(t, stack.Restart(ctx, devstack.ProcKubeAPIServer))

	res := <-done
	require.NoError(t, res.err)
	assert.True(t, res.out.Succeeded)
	assert.Equal(t, "after restart", res.out.Message)
	assert.True(t, sawOutage.Load(), "Wait went through the outage, reporting it as progress")
}

// The real apiserver refuses a rotation's write to a Secret that changed
// since it was read, and the error carries no value.
func TestIntegrationStaleSecretWritesAreRefused(t *testing.T) {
	ctx := t.Context()
	cs := clientset(t)
	r := k8s.NewRunner(cs)
	ns := agentNamespace(t, r, "rotate")
	job := prepare(t, r, actionSpec(ns, "cycle/rotate/1", 0, nil))
	sec, err := r.GetSecret(ctx, ns, k8s.SecretName(job.Name))
	require.NoError(t, err)
	v := "acc,acc2"
	fresh, err := r.PatchSecretAnnotations(ctx, sec, map[string]*string{"airlock.dev/lease-accessors": &v})
	require.NoError(t, err)

	_, err = r.PatchSecretAnnotations(ctx, sec, map[string]*string{"airlock.dev/lease-accessors": nil})
	assert.ErrorIs(t, err, k8s.ErrSecretChanged)
	_, err = r.UpdateSecret(ctx, sec, map[string][]byte{"VAULT_TOKEN": []byte("s.stale-value")}, nil)
	assert.ErrorIs(t, err, k8s.ErrSecretChanged)
	assert.NotContains(t, err.Error(), "s.stale-value")

	got, err := r.UpdateSecret(ctx, fresh, map[string][]byte{"VAULT_TOKEN": []byte("s.next")}, map[string]string{"airlock.dev/lease-accessor": "acc2"})
	require.NoError(t, err)
	assert.Equal(t, "s.next", string(got.Data["VAULT_TOKEN"]))
	assert.Equal(t, "acc,acc2", got.Annotations["airlock.dev/lease-accessors"])
}
