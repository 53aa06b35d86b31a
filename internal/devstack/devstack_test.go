package devstack_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/airlockhq/airlock/internal/devstack"
)

var stack *devstack.Stack

func TestMain(m *testing.M) {
	if os.Getenv(killedRunEnv) != "" {
		// The child of TestRealNodeCleansUpAfterAKilledRun starts its own.
		os.Exit(m.Run())
	}
	os.Exit(devstack.Main(m, devstack.Options{Temporal: true, Vault: true, Kube: true}, &stack))
}

func TestStartTimes(t *testing.T) {
	times := stack.StartTimes()
	names := make([]string, 0, len(times))
	for name := range times {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Logf("%-24s ready after %s", name, times[name])
	}
	for _, name := range []string{"temporal", "vault", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "total"} {
		assert.Contains(t, times, name)
	}
}

func TestTemporal(t *testing.T) {
	ctx := t.Context()
	c, err := client.Dial(client.Options{HostPort: stack.TemporalAddress})
	require.NoError(t, err)
	defer c.Close()

	_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
	require.NoError(t, err)

	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	require.NoError(t, err)
	for _, name := range []string{"AirlockAgent", "AirlockPhase", "AirlockOutcome", "AirlockRisk"} {
		assert.Equal(t, enums.INDEXED_VALUE_TYPE_KEYWORD, resp.GetCustomAttributes()[name], name)
	}
	assert.True(t, strings.HasPrefix(stack.TemporalUIURL, "http://127.0.0.1:"), stack.TemporalUIURL)
}

func TestVault(t *testing.T) {
	cfg := vault.DefaultConfig()
	cfg.Address = stack.VaultAddr
	c, err := vault.NewClient(cfg)
	require.NoError(t, err)
	c.SetToken(stack.VaultToken)

	health, err := c.Sys().Health()
	require.NoError(t, err)
	assert.True(t, health.Initialized)
	assert.False(t, health.Sealed)

	created, err := c.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"default"}, TTL: "10m"})
	require.NoError(t, err)
	token := created.Auth.ClientToken
	require.NotEmpty(t, token)

	looked, err := c.Auth().Token().Lookup(token)
	require.NoError(t, err)
	policies, err := looked.TokenPolicies()
	require.NoError(t, err)
	assert.Equal(t, []string{"default"}, policies)
}

func TestKubernetes(t *testing.T) {
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(stack.RestConfig)
	require.NoError(t, err)

	node, err := cs.CoreV1().Nodes().Get(ctx, stack.NodeName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "kwok", node.Labels["type"])
	assert.Empty(t, node.Spec.Taints)

	ns := restrictedNamespace(t, cs)

	t.Run("job completes with its result as termination message", func(t *testing.T) {
		job := createJob(t, cs, ns, "ok", map[string]string{devstack.AnnotationResult: "hello"})
		begin := time.Now()
		cond := waitJobFinished(t, cs, job)
		t.Logf("job Complete %s after create", time.Since(begin).Round(time.Millisecond))
		assert.Equal(t, batchv1.JobComplete, cond)
		term := jobPodTermination(t, cs, job)
		assert.Equal(t, int32(0), term.ExitCode)
		assert.Equal(t, "Completed", term.Reason)
		assert.Equal(t, "hello", term.Message)
	})

	t.Run("annotated job fails", func(t *testing.T) {
		job := createJob(t, cs, ns, "fail", map[string]string{
			devstack.AnnotationFail:   "true",
			devstack.AnnotationResult: "boom",
		})
		assert.Equal(t, batchv1.JobFailed, waitJobFinished(t, cs, job))
		term := jobPodTermination(t, cs, job)
		assert.Equal(t, int32(1), term.ExitCode)
		assert.Equal(t, "Error", term.Reason)
		assert.Equal(t, "boom", term.Message)
	})

	t.Run("duration annotation keeps the pod running", func(t *testing.T) {
		job := createJob(t, cs, ns, "slow", map[string]string{devstack.AnnotationDurationMS: "2000"})
		begin := time.Now()
		assert.Equal(t, batchv1.JobComplete, waitJobFinished(t, cs, job))
		took := time.Since(begin)
		t.Logf("slow job Complete %s after create", took.Round(time.Millisecond))
		assert.GreaterOrEqual(t, took, 2*time.Second)
		assert.Empty(t, jobPodTermination(t, cs, job).Message)
	})

	t.Run("deleting a job removes its pods", func(t *testing.T) {
		job := createJob(t, cs, ns, "deleted", map[string]string{devstack.AnnotationDurationMS: "600000"})
		selector := "batch.kubernetes.io/job-name=" + job.Name
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			return err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning, err
		}), "pod never ran")
		require.NoError(t, cs.BatchV1().Jobs(ns).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}))
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			return err == nil && len(pods.Items) == 0, err
		}), "pod not removed")
	})

	t.Run("pod security admission rejects non-compliant pods", func(t *testing.T) {
		for name, sc := range map[string]*corev1.SecurityContext{
			"no security context": nil,
			"privileged":          {Privileged: ptr.To(true)},
		} {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "bad-" + strings.ReplaceAll(name, " ", "-"), Namespace: ns},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "main", Image: "busybox", SecurityContext: sc,
				}}},
			}
			_, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			require.Error(t, err, name)
			assert.True(t, k8serrors.IsForbidden(err), "%s: %v", name, err)
			assert.ErrorContains(t, err, `violates PodSecurity "restricted:latest"`, name)
		}
	})
}

// TestStopAndRestart starts a second stack of its own so it can stop it.
func TestStopAndRestart(t *testing.T) {
	ctx := t.Context()
	s, err := devstack.Start(ctx, devstack.Options{Temporal: true, Vault: true, Kube: true, Logf: t.Logf})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })

	t.Run("restart keeps address and token", func(t *testing.T) {
		for _, name := range []string{"vault", "kube-apiserver", "etcd", "temporal"} {
			before := s.Pid(name)
			require.NotZero(t, before, name)
			require.NoError(t, s.StopProcess(name))
			assert.Zero(t, s.Pid(name))
			assert.False(t, alive(before), "%s pid %d survived StopProcess", name, before)
			require.NoError(t, s.StartProcess(ctx, name))
			assert.NotEqual(t, before, s.Pid(name))
		}
		cfg := vault.DefaultConfig()
		cfg.Address = s.VaultAddr
		c, err := vault.NewClient(cfg)
		require.NoError(t, err)
		c.SetToken(s.VaultToken)
		_, err = c.Auth().Token().LookupSelf()
		assert.NoError(t, err)

		cs, err := kubernetes.NewForConfig(s.RestConfig)
		require.NoError(t, err)
		_, err = cs.CoreV1().Nodes().Get(ctx, s.NodeName, metav1.GetOptions{})
		assert.NoError(t, err)

		require.NoError(t, s.Restart(ctx, "kwok"))
	})

	t.Run("stop leaves no processes and no directory", func(t *testing.T) {
		names := []string{"temporal", "vault", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
		pids := map[string]int{}
		for _, name := range names {
			pids[name] = s.Pid(name)
			require.NotZero(t, pids[name], name)
			require.True(t, alive(pids[name]), name)
		}
		begin := time.Now()
		require.NoError(t, s.Stop())
		t.Logf("stop took %s", time.Since(begin).Round(time.Millisecond))
		require.NoError(t, s.Stop(), "second Stop")
		for name, pid := range pids {
			assert.False(t, alive(pid), "%s (pid %d) still running", name, pid)
		}
		_, err := os.Stat(s.Dir)
		assert.True(t, errors.Is(err, os.ErrNotExist), "dir %s still there: %v", s.Dir, err)
		assert.Error(t, s.StartProcess(ctx, "vault"), "StartProcess after Stop")
	})
}

func TestMissingBinary(t *testing.T) {
	_, err := devstack.Start(t.Context(), devstack.Options{Vault: true, BinDir: t.TempDir()})
	var missing *devstack.MissingBinaryError
	require.ErrorAs(t, err, &missing)
	assert.Contains(t, missing.Path, "vault")
	assert.ErrorContains(t, err, "make tools")
}

func TestStartFailureReportsLog(t *testing.T) {
	tests := map[string]struct {
		script  string
		timeout time.Duration
		want    []string
	}{
		"exits at once": {
			script:  "echo 'Error: flag provided but not defined: -bogus' >&2; exit 3",
			timeout: time.Minute,
			want:    []string{"start vault: exited during start-up", "exit status 3", "flag provided but not defined"},
		},
		"never ready": {
			script:  "echo 'still starting'; exec sleep 60",
			timeout: time.Second,
			want:    []string{"start vault: not ready", "still starting"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			bin := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(bin, "vault"), []byte("#!/bin/sh\n"+tt.script+"\n"), 0o755))
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			begin := time.Now()
			_, err := devstack.Start(ctx, devstack.Options{Vault: true, BinDir: bin})
			require.Error(t, err)
			t.Log(err)
			for _, want := range tt.want {
				assert.ErrorContains(t, err, want)
			}
			assert.Less(t, time.Since(begin), tt.timeout+10*time.Second)
		})
	}
}

// alive reports whether the process pid or anything in its process group
// still exists (signal 0 checks without sending; devstack gives every server
// its own group).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil || syscall.Kill(-pid, 0) == nil
}

func restrictedNamespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ctx := t.Context()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "devstack-",
		Labels:       map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}, metav1.CreateOptions{})
	require.NoError(t, err)
	// Pods are refused until the namespace's default ServiceAccount exists,
	// and the Job controller backs off after a refusal: wait for it.
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}))
	return ns.Name
}

func createJob(t *testing.T, cs kubernetes.Interface, ns, name string, annotations map[string]string) *batchv1.Job {
	t.Helper()
	job, err := cs.BatchV1().Jobs(ns).Create(t.Context(), jobFor(ns, name, annotations), metav1.CreateOptions{})
	require.NoError(t, err)
	return job
}

// jobFor is a Job whose Pod passes the restricted Pod Security Standard.
func jobFor(ns, name string, annotations map[string]string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					AutomountServiceAccountToken: ptr.To(false),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](65532),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:    "main",
						Image:   "busybox@sha256:" + strings.Repeat("ab", 32),
						Command: []string{"true"},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
}

// waitJobFinished returns the Job's Complete or Failed condition type.
func waitJobFinished(t *testing.T, cs kubernetes.Interface, job *batchv1.Job) batchv1.JobConditionType {
	t.Helper()
	var got batchv1.JobConditionType
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		j, err := cs.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range j.Status.Conditions {
			if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
				got = c.Type
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "job %s/%s did not finish", job.Namespace, job.Name)
	return got
}

func jobPodTermination(t *testing.T, cs kubernetes.Interface, job *batchv1.Job) *corev1.ContainerStateTerminated {
	t.Helper()
	pods, err := cs.CoreV1().Pods(job.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job.Name})
	require.NoError(t, err)
	require.Len(t, pods.Items, 1)
	statuses := pods.Items[0].Status.ContainerStatuses
	require.Len(t, statuses, 1)
	term := statuses[0].State.Terminated
	require.NotNil(t, term, fmt.Sprintf("container state %+v", statuses[0].State))
	return term
}

// A persistent Vault keeps its tokens and secrets across a restart and is
// unsealed again by StartProcess; dev mode forgets everything.
func TestPersistentVaultSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	s, err := devstack.Start(ctx, devstack.Options{Vault: true, VaultPersistent: true})
	require.NoError(t, err)
	defer s.Stop()
	cfg := vault.DefaultConfig()
	cfg.Address = s.VaultAddr
	c, err := vault.NewClient(cfg)
	require.NoError(t, err)
	c.SetToken(s.VaultToken)
	_, err = c.KVv2("secret").Put(ctx, "persist/check", map[string]any{"v": "kept"})
	require.NoError(t, err)
	tok, err := c.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"default"}, TTL: "10m"})
	require.NoError(t, err)

	require.NoError(t, s.Restart(ctx, devstack.ProcVault))
	health, err := c.Sys().Health()
	require.NoError(t, err)
	assert.False(t, health.Sealed, "unsealed again")
	kv, err := c.KVv2("secret").Get(ctx, "persist/check")
	require.NoError(t, err)
	assert.Equal(t, "kept", kv.Data["v"])
	_, err = c.Auth().Token().LookupAccessor(tok.Auth.Accessor)
	assert.NoError(t, err, "the token survived the restart")
}
