package k8s

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// fakeClientset is a fake apiserver that, like the real one, gives every
// created object a uid (owner references need it).
func fakeClientset(objs ...runtime.Object) *fake.Clientset {
	cs := fake.NewClientset(objs...)
	var n atomic.Int64
	cs.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if m, err := meta.Accessor(a.(k8stesting.CreateAction).GetObject()); err == nil && m.GetUID() == "" {
			m.SetUID(types.UID(fmt.Sprintf("uid-%d", n.Add(1))))
			m.SetCreationTimestamp(metav1.Now())
		}
		return false, nil, nil
	})
	return cs
}

func fastRunner(cs *fake.Clientset) *Runner {
	return NewRunner(cs, WithPollInterval(10*time.Millisecond), WithResyncInterval(100*time.Millisecond))
}

func TestCreateJobIsIdempotent(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	r := fastRunner(cs)

	first, err := r.CreateJob(ctx, baseSpec())
	require.NoError(t, err)
	second, err := r.CreateJob(ctx, baseSpec())
	require.NoError(t, err)

	assert.Equal(t, first.UID, second.UID, "the retry gets the job the first call created")
	jobs, err := cs.BatchV1().Jobs("agent-a").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, jobs.Items, 1)
	assert.True(t, ptr.Deref(first.Spec.Suspend, false), "created suspended")
}

func TestCreateJobRefusesAnotherWorkflowsJob(t *testing.T) {
	tests := map[string]func(*batchv1.Job){
		"other workflow id": func(j *batchv1.Job) { j.Annotations[AnnotationWorkflowID] = "cycle/agent-b/9" },
		"other action":      func(j *batchv1.Job) { j.Labels[LabelActionIndex] = "7" },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			existing, err := JobFor(baseSpec())
			require.NoError(t, err)
			mutate(existing)
			r := fastRunner(fakeClientset(existing))

			job, err := r.CreateJob(t.Context(), baseSpec())
			assert.Nil(t, job)
			var conflict *JobConflictError
			require.ErrorAs(t, err, &conflict)
			assert.Equal(t, testWorkflowID, conflict.WantWorkflowID)
			assert.Equal(t, existing.Name, conflict.Name)
		})
	}
}

func TestCreateJobRefusesJobBeingDeleted(t *testing.T) {
	existing, err := JobFor(baseSpec())
	require.NoError(t, err)
	existing.DeletionTimestamp = ptr.To(metav1.Now())
	existing.Finalizers = []string{"foregroundDeletion"}
	r := fastRunner(fakeClientset(existing))

	_, err = r.CreateJob(t.Context(), baseSpec())
	assert.ErrorContains(t, err, "being deleted")
}

func TestStartNeedsNetworkPolicyAndSecret(t *testing.T) {
	ctx := t.Context()
	spec := baseSpec()
	spec.SecretEnv = []string{"VAULT_TOKEN"}
	spec.Egress = []EgressRule{{CIDR: "192.0.2.0/24", Port: 443}}
	cs := fakeClientset()
	r := fastRunner(cs)
	job, err := r.CreateJob(ctx, spec)
	require.NoError(t, err)

	suspended := func() bool {
		j, err := cs.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		require.NoError(t, err)
		return ptr.Deref(j.Spec.Suspend, false)
	}

	err = r.Start(ctx, job.Namespace, job.Name)
	require.ErrorIs(t, err, ErrNotReady)
	assert.ErrorContains(t, err, "network policy")
	assert.True(t, suspended())

	require.NoError(t, r.CreateNetworkPolicy(ctx, job, spec.Egress))
	err = r.Start(ctx, job.Namespace, job.Name)
	require.ErrorIs(t, err, ErrNotReady)
	assert.ErrorContains(t, err, "secret")
	assert.True(t, suspended())

	// A Secret without the key the Pod reads would leave it stuck.
	_, err = cs.CoreV1().Secrets(job.Namespace).Create(ctx, SecretFor(job, map[string][]byte{"OTHER": []byte("x")}, nil), metav1.CreateOptions{})
	require.NoError(t, err)
	err = r.Start(ctx, job.Namespace, job.Name)
	require.ErrorIs(t, err, ErrNotReady)
	assert.ErrorContains(t, err, "no key VAULT_TOKEN")
	assert.NotContains(t, err.Error(), "x\"", "no secret value in errors")
	require.NoError(t, cs.CoreV1().Secrets(job.Namespace).Delete(ctx, SecretName(job.Name), metav1.DeleteOptions{}))

	_, err = r.CreateSecret(ctx, job, map[string][]byte{"VAULT_TOKEN": []byte("s.token")}, nil)
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx, job.Namespace, job.Name))
	assert.False(t, suspended())
	require.NoError(t, r.Start(ctx, job.Namespace, job.Name), "starting twice is harmless")
}

func TestStartWithoutSecretEnvNeedsOnlyThePolicy(t *testing.T) {
	ctx := t.Context()
	r := fastRunner(fakeClientset())
	job, err := r.CreateJob(ctx, baseSpec())
	require.NoError(t, err)
	require.NoError(t, r.CreateNetworkPolicy(ctx, job, nil))
	require.NoError(t, r.Start(ctx, job.Namespace, job.Name))
}

func TestStartRefusesForeignNetworkPolicy(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	r := fastRunner(cs)
	job, err := r.CreateJob(ctx, baseSpec())
	require.NoError(t, err)
	// Same name, but left over from an earlier Job with another uid.
	stale := job.DeepCopy()
	stale.UID = "old-uid"
	_, err = cs.NetworkingV1().NetworkPolicies(job.Namespace).Create(ctx, NetworkPolicyFor(stale, nil), metav1.CreateOptions{})
	require.NoError(t, err)

	assert.ErrorIs(t, r.Start(ctx, job.Namespace, job.Name), ErrNotReady)
	assert.ErrorContains(t, r.CreateNetworkPolicy(ctx, job, nil), "not owned by job")
}

func TestCreateSecretAndNetworkPolicyAreIdempotent(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	r := fastRunner(cs)
	job, err := r.CreateJob(ctx, baseSpec())
	require.NoError(t, err)

	got, err := r.GetSecret(ctx, job.Namespace, SecretName(job.Name))
	require.NoError(t, err)
	assert.Nil(t, got, "absent secret is (nil, nil)")

	first, err := r.CreateSecret(ctx, job, map[string][]byte{"VAULT_TOKEN": []byte("one")}, nil)
	require.NoError(t, err)
	second, err := r.CreateSecret(ctx, job, map[string][]byte{"VAULT_TOKEN": []byte("two")}, nil)
	require.NoError(t, err)
	assert.Equal(t, first.UID, second.UID)
	assert.Equal(t, []byte("one"), second.Data["VAULT_TOKEN"], "an existing immutable secret is kept")

	got, err = r.GetSecret(ctx, job.Namespace, SecretName(job.Name))
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, first.UID, got.UID)

	egress := []EgressRule{{CIDR: "192.0.2.0/24", Port: 443}}
	require.NoError(t, r.CreateNetworkPolicy(ctx, job, egress))
	require.NoError(t, r.CreateNetworkPolicy(ctx, job, egress))
	wider := append(egress, EgressRule{CIDR: "198.51.100.0/24", Port: 443})
	require.NoError(t, r.CreateNetworkPolicy(ctx, job, wider))
	np, err := cs.NetworkingV1().NetworkPolicies(job.Namespace).Get(ctx, NetworkPolicyName(job.Name), metav1.GetOptions{})
	require.NoError(t, err)
	assert.Len(t, np.Spec.Egress, 2, "existing policy updated to the rules asked for")

	assert.ErrorContains(t, r.CreateNetworkPolicy(ctx, job, []EgressRule{{CIDR: "0.0.0.1/0", Port: 1}}), "host bits")
}

func TestCleanupAndDeleteAreIdempotent(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	r := fastRunner(cs)
	job, err := r.CreateJob(ctx, baseSpec())
	require.NoError(t, err)
	_, err = r.CreateSecret(ctx, job, map[string][]byte{"K": []byte("v")}, nil)
	require.NoError(t, err)
	require.NoError(t, r.CreateNetworkPolicy(ctx, job, nil))
	pod := jobPod(job, "p1", nil)
	_, err = cs.CoreV1().Pods(job.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)

	require.NoError(t, r.Cleanup(ctx, job.Namespace, job.Name))
	require.NoError(t, r.Cleanup(ctx, job.Namespace, job.Name))
	_, err = cs.CoreV1().Secrets(job.Namespace).Get(ctx, SecretName(job.Name), metav1.GetOptions{})
	assert.True(t, k8serrors.IsNotFound(err), "secret gone: %v", err)
	_, err = cs.NetworkingV1().NetworkPolicies(job.Namespace).Get(ctx, NetworkPolicyName(job.Name), metav1.GetOptions{})
	assert.True(t, k8serrors.IsNotFound(err), "policy gone: %v", err)
	_, err = cs.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
	assert.NoError(t, err, "cleanup keeps the job for inspection")

	require.NoError(t, r.Delete(ctx, job.Namespace, job.Name))
	require.NoError(t, r.Delete(ctx, job.Namespace, job.Name))
	_, err = cs.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
	assert.True(t, k8serrors.IsNotFound(err), "job gone: %v", err)
	pods, err := cs.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, pods.Items)
}

func TestDeleteAgentJobs(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	r := fastRunner(cs)
	for i := range 3 {
		s := baseSpec()
		s.ActionIndex = i
		_, err := r.CreateJob(ctx, s)
		require.NoError(t, err)
	}
	other := baseSpec()
	other.AgentID, other.WorkflowID = "agent-b", "cycle/agent-b/1"
	_, err := r.CreateJob(ctx, other)
	require.NoError(t, err)

	names, err := r.DeleteAgentJobs(ctx, "agent-a", "agent-a")
	require.NoError(t, err)
	assert.Len(t, names, 3)
	jobs, err := cs.BatchV1().Jobs("agent-a").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, jobs.Items, 1)
	assert.Equal(t, "cycle/agent-b/1", jobs.Items[0].Annotations[AnnotationWorkflowID])
}

// jobPod is a Pod of job as the Job controller makes it.
func jobPod(job *batchv1.Job, name string, terminated *corev1.ContainerStateTerminated) *corev1.Pod {
	labels := map[string]string{batchv1.JobNameLabel: job.Name, batchv1.ControllerUidLabel: string(job.UID)}
	for k, v := range job.Spec.Template.Labels {
		labels[k] = v
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: job.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{ownerRef(job)},
		},
	}
	if terminated != nil {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName, State: corev1.ContainerState{Terminated: terminated}}}
	}
	return p
}

// finish marks job finished as the Job controller would. It goes to the
// fake's tracker directly, past reactors that simulate a failing apiserver.
func finish(cs *fake.Clientset, job *batchv1.Job, cond batchv1.JobConditionType, reason string) error {
	gvr := batchv1.SchemeGroupVersion.WithResource("jobs")
	obj, err := cs.Tracker().Get(gvr, job.Namespace, job.Name)
	if err != nil {
		return err
	}
	j := obj.(*batchv1.Job).DeepCopy()
	j.Status.StartTime = ptr.To(metav1.NewTime(time.Unix(100, 0)))
	j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{
		Type: cond, Status: corev1.ConditionTrue, Reason: reason, LastTransitionTime: metav1.NewTime(time.Unix(200, 0)),
	})
	return cs.Tracker().Update(gvr, j, job.Namespace)
}

// waitCtx bounds a Wait so a broken one fails the test instead of hanging it.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestWaitOutcome(t *testing.T) {
	started, ended := metav1.NewTime(time.Unix(110, 0)), metav1.NewTime(time.Unix(120, 0))
	long := strings.Repeat("é", 3000) // 6000 bytes
	tests := map[string]struct {
		cond   batchv1.JobConditionType
		reason string
		term   *corev1.ContainerStateTerminated
		want   Outcome
	}{
		"completed with result": {
			cond: batchv1.JobComplete, reason: batchv1.JobReasonCompletionsReached,
			term: &corev1.ContainerStateTerminated{ExitCode: 0, Message: `{"ok":true}`, StartedAt: started, FinishedAt: ended},
			want: Outcome{Succeeded: true, Reason: "Completed", Message: `{"ok":true}`, PodName: "p", StartedAt: started.Time, FinishedAt: ended.Time},
		},
		"failed pod": {
			cond: batchv1.JobFailed, reason: batchv1.JobReasonBackoffLimitExceeded,
			term: &corev1.ContainerStateTerminated{ExitCode: 3, Message: "boom", StartedAt: started, FinishedAt: ended},
			want: Outcome{Reason: "BackoffLimitExceeded", ExitCode: 3, Message: "boom", PodName: "p", StartedAt: started.Time, FinishedAt: ended.Time},
		},
		"failed pod already gone": {
			cond: batchv1.JobFailed, reason: batchv1.JobReasonBackoffLimitExceeded,
			want: Outcome{Reason: "BackoffLimitExceeded", ExitCode: 1, StartedAt: time.Unix(100, 0), FinishedAt: time.Unix(200, 0)},
		},
		"deadline exceeded": {
			cond: batchv1.JobFailed, reason: batchv1.JobReasonDeadlineExceeded,
			want: Outcome{Reason: "DeadlineExceeded", StartedAt: time.Unix(100, 0), FinishedAt: time.Unix(200, 0)},
		},
		"completed without a termination message: the log is the result": {
			cond: batchv1.JobComplete, reason: batchv1.JobReasonCompletionsReached,
			term: &corev1.ContainerStateTerminated{ExitCode: 0, StartedAt: started, FinishedAt: ended},
			// The fake clientset serves every log as "fake logs".
			want: Outcome{Succeeded: true, Reason: "Completed", Message: "fake logs", FromLogs: true, PodName: "p", StartedAt: started.Time, FinishedAt: ended.Time},
		},
		"message capped at 4096 bytes on a rune boundary": {
			cond: batchv1.JobComplete,
			term: &corev1.ContainerStateTerminated{Message: long, StartedAt: started, FinishedAt: ended},
			want: Outcome{Succeeded: true, Reason: "Completed", Message: long[:4096], PodName: "p", StartedAt: started.Time, FinishedAt: ended.Time},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			cs := fakeClientset()
			r := fastRunner(cs)
			job, err := r.CreateJob(ctx, baseSpec())
			require.NoError(t, err)
			if tc.term != nil {
				_, err = cs.CoreV1().Pods(job.Namespace).Create(ctx, jobPod(job, "p", tc.term), metav1.CreateOptions{})
				require.NoError(t, err)
			}
			require.NoError(t, finish(cs, job, tc.cond, tc.reason))

			got, err := r.Wait(waitCtx(t), job.Namespace, job.Name, nil)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestWaitReportsProgressAndSurvivesDroppedWatches(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	r := fastRunner(cs)
	job, err := r.CreateJob(ctx, baseSpec())
	require.NoError(t, err)

	// Every watch is cut at once and every other Get fails, as while the
	// apiserver restarts.
	var watches, gets atomic.Int64
	cs.PrependWatchReactor("jobs", func(k8stesting.Action) (bool, watch.Interface, error) {
		watches.Add(1)
		w := watch.NewFake()
		w.Stop()
		return true, w, nil
	})
	cs.PrependReactor("get", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		if gets.Add(1)%2 == 0 {
			return true, nil, fmt.Errorf("connection refused")
		}
		return false, nil, nil
	})

	var mu sync.Mutex
	var statuses []string
	// outage is closed once Wait has reported the outage and re-watched.
	outage := make(chan struct{})
	var once sync.Once
	progress := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		statuses = append(statuses, s)
		if slices.Contains(statuses, "apiserver unavailable, retrying") && watches.Load() > 1 {
			once.Do(func() { close(outage) })
		}
	}
	go func() {
		select {
		case <-outage:
			assert.NoError(t, finish(cs, job, batchv1.JobComplete, ""))
		case <-ctx.Done():
		}
	}()
	out, err := r.Wait(waitCtx(t), job.Namespace, job.Name, progress)
	require.NoError(t, err)
	assert.True(t, out.Succeeded)
	assert.Greater(t, watches.Load(), int64(1), "re-watched after each drop")
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, statuses, "suspended")
	assert.Contains(t, statuses, "apiserver unavailable, retrying")
}

// watchOpened returns a channel closed once the first watch on Jobs is
// open: an event written after that reaches the watcher.
func watchOpened(cs *fake.Clientset) <-chan struct{} {
	opened := make(chan struct{})
	var once sync.Once
	cs.PrependWatchReactor("jobs", func(a k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := cs.Tracker().Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return true, nil, err
		}
		once.Do(func() { close(opened) })
		return true, w, nil
	})
	return opened
}

func TestWaitFollowsTheWatch(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	// A long resync: only the watch can deliver the finish in time.
	r := NewRunner(cs, WithPollInterval(10*time.Millisecond), WithResyncInterval(time.Hour))
	job, err := r.CreateJob(ctx, baseSpec())
	require.NoError(t, err)
	watching := watchOpened(cs)
	go func() {
		select {
		case <-watching:
			assert.NoError(t, finish(cs, job, batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded))
		case <-ctx.Done():
		}
	}()
	out, err := r.Wait(waitCtx(t), job.Namespace, job.Name, nil)
	require.NoError(t, err)
	assert.False(t, out.Succeeded)
	assert.Equal(t, "DeadlineExceeded", out.Reason)
}

func TestWaitEnds(t *testing.T) {
	t.Run("job deleted", func(t *testing.T) {
		ctx := t.Context()
		cs := fakeClientset()
		r := fastRunner(cs)
		job, err := r.CreateJob(ctx, baseSpec())
		require.NoError(t, err)
		watching := watchOpened(cs)
		go func() {
			select {
			case <-watching:
				assert.NoError(t, r.Delete(context.Background(), job.Namespace, job.Name))
			case <-ctx.Done():
			}
		}()
		_, err = r.Wait(waitCtx(t), job.Namespace, job.Name, nil)
		assert.ErrorIs(t, err, ErrJobDeleted)
	})
	t.Run("context done", func(t *testing.T) {
		cs := fakeClientset()
		r := fastRunner(cs)
		job, err := r.CreateJob(t.Context(), baseSpec())
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err = r.Wait(ctx, job.Namespace, job.Name, nil)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestEnsureNamespace(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	r := fastRunner(cs)
	require.NoError(t, r.EnsureNamespace(ctx, "agent-a", "agent-a", Quota{}))

	ns, err := cs.CoreV1().Namespaces().Get(ctx, "agent-a", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"])
	assert.Equal(t, "agent-a", ns.Labels[LabelAgent])

	quota, err := cs.CoreV1().ResourceQuotas("agent-a").Get(ctx, ResourceQuotaName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "10", ptr.To(quota.Spec.Hard[corev1.ResourcePods]).String())
	assert.Equal(t, "2Gi", ptr.To(quota.Spec.Hard[corev1.ResourceLimitsMemory]).String())

	sa, err := cs.CoreV1().ServiceAccounts("agent-a").Get(ctx, DefaultServiceAccount, metav1.GetOptions{})
	require.NoError(t, err)
	assert.False(t, ptr.Deref(sa.AutomountServiceAccountToken, true))

	// Drift is repaired: a loosened default-deny policy, a removed label, a new quota.
	deny, err := cs.NetworkingV1().NetworkPolicies("agent-a").Get(ctx, DefaultDenyPolicyName, metav1.GetOptions{})
	require.NoError(t, err)
	deny.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}} // allow all
	_, err = cs.NetworkingV1().NetworkPolicies("agent-a").Update(ctx, deny, metav1.UpdateOptions{})
	require.NoError(t, err)
	delete(ns.Labels, "pod-security.kubernetes.io/enforce")
	ns.Labels["team"] = "x"
	_, err = cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	require.NoError(t, err)

	require.NoError(t, r.EnsureNamespace(ctx, "agent-a", "agent-a", Quota{Pods: 3, CPU: "500m", Memory: "256Mi"}))

	deny, err = cs.NetworkingV1().NetworkPolicies("agent-a").Get(ctx, DefaultDenyPolicyName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Empty(t, deny.Spec.Egress)
	assert.Empty(t, deny.Spec.Ingress)
	assert.ElementsMatch(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, deny.Spec.PolicyTypes)
	ns, err = cs.CoreV1().Namespaces().Get(ctx, "agent-a", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"])
	assert.Equal(t, "x", ns.Labels["team"], "other labels are kept")
	quota, err = cs.CoreV1().ResourceQuotas("agent-a").Get(ctx, ResourceQuotaName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "3", ptr.To(quota.Spec.Hard[corev1.ResourcePods]).String())

	assert.ErrorContains(t, r.EnsureNamespace(ctx, "agent-a", "agent-b", Quota{}), `belongs to agent "agent-a"`)
	assert.ErrorContains(t, r.EnsureNamespace(ctx, "kube-system", "agent-a", Quota{}), "reserved")
	assert.ErrorContains(t, r.EnsureNamespace(ctx, "agent-c", "agent-c", Quota{CPU: "much"}), "quota: cpu")
}

func TestLogs(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	r := fastRunner(cs)
	job, err := r.CreateJob(ctx, baseSpec())
	require.NoError(t, err)

	_, err = r.Logs(ctx, job.Namespace, job.Name, 0)
	assert.ErrorContains(t, err, "no pod")

	_, err = cs.CoreV1().Pods(job.Namespace).Create(ctx, jobPod(job, "p", nil), metav1.CreateOptions{})
	require.NoError(t, err)
	logs, err := r.Logs(ctx, job.Namespace, job.Name, 4)
	require.NoError(t, err)
	assert.Equal(t, "fake", logs, "the fake apiserver's log, cut at the limit")
}

// Rotation writes a Job's Secret in two steps: annotations first (the new
// accessor, a nil value removes one), then the data.
func TestSecretWritesAreConditional(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	r := fastRunner(cs)
	job, err := r.CreateJob(ctx, baseSpec())
	require.NoError(t, err)
	sec, err := r.CreateSecret(ctx, job, map[string][]byte{"VAULT_TOKEN": []byte("one")}, map[string]string{"a": "1"})
	require.NoError(t, err)

	v := "listed"
	annotated, err := r.PatchSecretAnnotations(ctx, sec, map[string]*string{"b": &v, "a": nil})
	require.NoError(t, err)
	assert.Equal(t, "listed", annotated.Annotations["b"])
	assert.NotContains(t, annotated.Annotations, "a")

	updated, err := r.UpdateSecret(ctx, annotated, map[string][]byte{"VAULT_TOKEN": []byte("two")}, map[string]string{"c": "3"})
	require.NoError(t, err)
	assert.Equal(t, []byte("two"), updated.Data["VAULT_TOKEN"])
	assert.Equal(t, "listed", updated.Annotations["b"])
	assert.Equal(t, "3", updated.Annotations["c"])

	// (The fake apiserver does not enforce resourceVersion; the real one
	// refuses a stale write with ErrSecretChanged: runner_integration_test.)
}
