package deploy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/airlockhq/airlock/k8s"
)

// The tests in this file send real requests as the worker's and the
// bootstrap's ServiceAccounts (impersonated from the admin config), so they
// prove the applied manifests, not only the authorizer's arithmetic.

var actionImage = "registry.example/airlock/http@sha256:" + strings.Repeat("5e", 32)

func actionSpec(workflowID string, index int) k8s.Spec {
	return k8s.Spec{
		Namespace:      agentNS,
		AgentID:        agentID,
		WorkflowID:     workflowID,
		ActionIndex:    index,
		ActionType:     "http.get",
		Image:          actionImage,
		Command:        []string{"/action"},
		SecretEnv:      []string{"VAULT_TOKEN"},
		Egress:         []k8s.EgressRule{{CIDR: "192.0.2.0/24", Port: 443}, {CIDR: k8s.ClusterDNS}},
		Deadline:       2 * time.Minute,
		PodAnnotations: map[string]string{kwokResult: `{"status":200}`},
	}
}

// uniqueWorkflowID keeps Job names apart when tests run again (-count) on
// the same cluster.
func uniqueWorkflowID(name string) string {
	return fmt.Sprintf("cycle/%s/%s-%d", agentID, name, time.Now().UnixNano())
}

func TestWorkerIdentityCreatesActionObjectsButNothingElse(t *testing.T) {
	c := setup(t)
	ctx := t.Context()

	job, err := k8s.JobFor(actionSpec(uniqueWorkflowID("direct"), 0))
	require.NoError(t, err)
	job, err = c.worker.BatchV1().Jobs(agentNS).Create(ctx, job, metav1.CreateOptions{})
	require.NoError(t, err, "the worker creates its suspended Job")
	assert.True(t, ptr.Deref(job.Spec.Suspend, false), "created suspended")

	secret := k8s.SecretFor(job, map[string][]byte{"VAULT_TOKEN": []byte("s.test-token")}, nil)
	_, err = c.worker.CoreV1().Secrets(agentNS).Create(ctx, secret, metav1.CreateOptions{})
	require.NoError(t, err, "the worker creates the action's Secret")

	policy := k8s.NetworkPolicyFor(job, []k8s.EgressRule{{CIDR: "192.0.2.0/24", Port: 443}})
	_, err = c.worker.NetworkingV1().NetworkPolicies(agentNS).Create(ctx, policy, metav1.CreateOptions{})
	require.NoError(t, err, "the worker creates the action's NetworkPolicy")

	forbidden := []struct {
		name string
		call func(context.Context, kubernetes.Interface) error
	}{
		{"reading another team's secret", func(ctx context.Context, cs kubernetes.Interface) error {
			_, err := cs.CoreV1().Secrets(otherNS).Get(ctx, "database-password", metav1.GetOptions{})
			return err
		}},
		{"reading a secret in airlock-system", func(ctx context.Context, cs kubernetes.Interface) error {
			_, err := cs.CoreV1().Secrets(systemNS).Get(ctx, "database-password", metav1.GetOptions{})
			return err
		}},
		{"listing the agent namespace's secrets", func(ctx context.Context, cs kubernetes.Interface) error {
			_, err := cs.CoreV1().Secrets(agentNS).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"creating a pod directly", func(ctx context.Context, cs kubernetes.Interface) error {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "direct", Namespace: agentNS},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: actionImage}}},
			}
			_, err := cs.CoreV1().Pods(agentNS).Create(ctx, pod, metav1.CreateOptions{})
			return err
		}},
		{"exec into a pod", func(ctx context.Context, cs kubernetes.Interface) error {
			return cs.CoreV1().RESTClient().Post().Namespace(agentNS).Resource("pods").Name("any").SubResource("exec").
				Param("command", "id").Param("stdout", "true").Do(ctx).Error()
		}},
		{"running a job in another team's namespace", func(ctx context.Context, cs kubernetes.Interface) error {
			j := job.DeepCopy()
			j.Namespace, j.ResourceVersion, j.UID = otherNS, "", ""
			_, err := cs.BatchV1().Jobs(otherNS).Create(ctx, j, metav1.CreateOptions{})
			return err
		}},
		{"granting itself cluster-admin in the agent namespace", func(ctx context.Context, cs kubernetes.Interface) error {
			rb := &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "worker-admin", Namespace: agentNS},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: workerRole, Namespace: systemNS}},
			}
			_, err := cs.RbacV1().RoleBindings(agentNS).Create(ctx, rb, metav1.CreateOptions{})
			return err
		}},
		{"creating a namespace", func(ctx context.Context, cs kubernetes.Interface) error {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "worker-made"}}, metav1.CreateOptions{})
			return err
		}},
	}
	for _, tt := range forbidden {
		t.Run("forbidden: "+tt.name, func(t *testing.T) {
			err := tt.call(t.Context(), c.worker)
			assert.True(t, k8serrors.IsForbidden(err), "want Forbidden, got %v", err)
		})
	}
}

// TestWorkerRunsAnActionWithOnlyItsRole drives the worker's real code, every
// Runner method the activities call, through the worker's identity: a rule
// missing from worker.yaml shows up here as Forbidden.
func TestWorkerRunsAnActionWithOnlyItsRole(t *testing.T) {
	c := setup(t)
	ctx := t.Context()
	r := k8s.NewRunner(c.worker, k8s.WithPollInterval(100*time.Millisecond), k8s.WithResyncInterval(5*time.Second))
	wf := uniqueWorkflowID("runner")
	s := actionSpec(wf, 0)

	dry, err := r.DryRun(ctx, s)
	require.NoError(t, err)
	assert.True(t, dry.Admitted, "dry run refused: %s", dry.Reason)

	job, err := r.CreateJob(ctx, s)
	require.NoError(t, err)
	again, err := r.CreateJob(ctx, s)
	require.NoError(t, err, "a retried CreateJob reads the existing Job")
	assert.Equal(t, job.UID, again.UID)

	sec, err := r.GetSecret(ctx, agentNS, k8s.SecretName(job.Name))
	require.NoError(t, err)
	assert.Nil(t, sec, "no Secret yet")
	for range 2 { // the second call is a retried activity
		_, err = r.CreateSecret(ctx, job, map[string][]byte{"VAULT_TOKEN": []byte("s.test-token")}, nil)
		require.NoError(t, err)
	}
	// A retry with other rules updates the policy this Job owns.
	require.NoError(t, r.CreateNetworkPolicy(ctx, job, s.Egress[:1]))
	require.NoError(t, r.CreateNetworkPolicy(ctx, job, s.Egress))

	require.NoError(t, r.Start(ctx, agentNS, job.Name))
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := r.Wait(waitCtx, agentNS, job.Name, nil)
	require.NoError(t, err)
	assert.True(t, out.Succeeded, "%+v", out)
	assert.Equal(t, `{"status":200}`, out.Message, "the worker reads the result from the Pod it lists")
	assert.NotEmpty(t, out.PodName)

	// Simulated Pods have no logs, but the worker is allowed to ask.
	logCtx, cancelLogs := context.WithTimeout(ctx, 10*time.Second)
	defer cancelLogs()
	_, err = r.Logs(logCtx, agentNS, job.Name, 1024)
	assert.False(t, k8serrors.IsForbidden(err), "reading logs must not be forbidden: %v", err)

	require.NoError(t, r.Cleanup(ctx, agentNS, job.Name))
	sec, err = r.GetSecret(ctx, agentNS, k8s.SecretName(job.Name))
	require.NoError(t, err)
	assert.Nil(t, sec, "credentials are gone after Cleanup")
	require.NoError(t, r.Delete(ctx, agentNS, job.Name))

	// The kill switch sweeps an agent's Jobs.
	other, err := r.CreateJob(ctx, actionSpec(wf, 1))
	require.NoError(t, err)
	deleted, err := r.DeleteAgentJobs(ctx, agentNS, agentID)
	require.NoError(t, err)
	assert.Contains(t, deleted, other.Name)

	// The same code pointed at another team's namespace is refused.
	foreign := s
	foreign.Namespace, foreign.WorkflowID = otherNS, "cycle/agent-a/foreign"
	_, err = r.CreateJob(ctx, foreign)
	assert.True(t, k8serrors.IsForbidden(err), "want Forbidden, got %v", err)
	_, err = r.GetSecret(ctx, otherNS, "database-password")
	assert.True(t, k8serrors.IsForbidden(err), "want Forbidden, got %v", err)
}

func TestBootstrapIdentityBindsOnlyTheWorkerRole(t *testing.T) {
	c := setup(t)
	ctx := t.Context()

	got, err := c.bootstrap.RbacV1().RoleBindings(agentNS).Get(ctx, workerRole, metav1.GetOptions{})
	require.NoError(t, err, "setup bound the worker as the bootstrap identity")
	assert.Equal(t, workerRole, got.RoleRef.Name)

	ns, err := c.bootstrap.CoreV1().Namespaces().Get(ctx, agentNS, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"], "bootstrap applied Pod Security")

	t.Run("re-running bootstrap repairs a loosened namespace", func(t *testing.T) {
		ctx := t.Context()
		policies := c.admin.NetworkingV1().NetworkPolicies(agentNS)
		deny, err := policies.Get(ctx, k8s.DefaultDenyPolicyName, metav1.GetOptions{})
		require.NoError(t, err)
		deny.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}} // allow all egress
		_, err = policies.Update(ctx, deny, metav1.UpdateOptions{})
		require.NoError(t, err)

		// Updating the named objects it manages is all bootstrap needs.
		require.NoError(t, k8s.NewRunner(c.bootstrap).EnsureNamespace(ctx, agentNS, agentID, k8s.Quota{Pods: 5}))
		deny, err = policies.Get(ctx, k8s.DefaultDenyPolicyName, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Empty(t, deny.Spec.Egress, "default deny restored")
		quota, err := c.admin.CoreV1().ResourceQuotas(agentNS).Get(ctx, k8s.ResourceQuotaName, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "5", ptr.To(quota.Spec.Hard[corev1.ResourcePods]).String(), "quota updated")
	})

	for _, role := range []string{"cluster-admin", "admin", "edit"} {
		t.Run("forbidden: binding "+role, func(t *testing.T) {
			rb := &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "sneaky-" + role, Namespace: agentNS},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: workerRole, Namespace: systemNS}},
			}
			_, err := c.bootstrap.RbacV1().RoleBindings(agentNS).Create(t.Context(), rb, metav1.CreateOptions{})
			require.True(t, k8serrors.IsForbidden(err), "want Forbidden, got %v", err)
			assert.True(t, strings.Contains(err.Error(), "escalat") || strings.Contains(err.Error(), "bind"),
				"refused by the RBAC escalation check: %v", err)
		})
	}
	t.Run("forbidden: reading secrets", func(t *testing.T) {
		_, err := c.bootstrap.CoreV1().Secrets(otherNS).Get(t.Context(), "database-password", metav1.GetOptions{})
		assert.True(t, k8serrors.IsForbidden(err), "want Forbidden, got %v", err)
	})
}
