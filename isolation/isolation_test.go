package isolation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
)

func cycleID(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
}

// runProbe runs one action of agent in a cycle and returns its result,
// which must have succeeded.
func runProbe(ctx context.Context, t *testing.T, action string, params map[string]any) contract.ActionResult {
	t.Helper()
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{
		AgentID: agentID, CycleID: cycleID(t), Principal: "agent:" + agentID,
		Thoughts: []contract.Thought{{Step: 1, Content: "probe isolation from inside", Confidence: 0.9}},
		Actions:  []policy.Proposal{{Type: action, Params: params}},
	})
	require.NoError(t, err)
	require.Len(t, res.Actions, 1)
	a := res.Actions[0]
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "action %s: %s %s\noutput:\n%s", action, a.Reason, a.Error, a.Output)
	t.Logf("%s output:\n%s", action, a.Output)
	return a
}

func lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

// The container reads its own secret with its own token, is refused a
// path outside its policies, and once the action is over the very same
// token is refused by Vault — even though the Pod could have kept it.
func TestVaultTokenFromInside(t *testing.T) {
	needNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// Keep the token the Pod gets, as an attacker inside it could: from
	// the Job's Secret, watched from before the cycle starts.
	w, err := env.kube.CoreV1().Secrets("airlock-iso").Watch(ctx, metav1.ListOptions{LabelSelector: k8s.LabelManagedBy + "=" + k8s.ManagedBy})
	require.NoError(t, err)
	defer w.Stop()
	tokens := make(chan string, 1)
	go func() {
		for ev := range w.ResultChan() {
			if s, ok := ev.Object.(*corev1.Secret); ok && ev.Type == watch.Added && s.Annotations[k8s.AnnotationActionType] == "vault-probe" {
				tokens <- string(s.Data["VAULT_TOKEN"])
				return
			}
		}
	}()

	a := runProbe(ctx, t, "vault-probe", nil)
	sum := sha256.Sum256([]byte(env.secret))
	assert.Equal(t, []string{
		"own secret sha256: " + hex.EncodeToString(sum[:]),
		"other secret: refused 403",
	}, lines(a.Output))
	assert.NotContains(t, a.Output, env.secret)

	var token string
	select {
	case token = <-tokens:
	case <-ctx.Done():
		t.Fatal("never saw the action's Secret")
	}
	require.NotEmpty(t, token)
	c, err := env.root.Clone()
	require.NoError(t, err)
	c.SetToken(token)
	_, err = c.Auth().Token().LookupSelfWithContext(ctx)
	require.Error(t, err, "the action's token still works after the action ended")
	var re *vaultapi.ResponseError
	if assert.ErrorAs(t, err, &re) {
		assert.Equal(t, 403, re.StatusCode)
	}
	_, err = c.KVv2("secret").Get(ctx, "airlock/"+readPolicy+"/probe")
	require.Error(t, err, "the revoked token still reads its secret")
}

// Egress: the allowed host:port answers, another port on the same host
// does not; without an egress rule only Vault (which Airlock adds for the
// action's own token) is reachable.
func TestEgressFromInside(t *testing.T) {
	needNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	host := env.stack.PodHostIP
	allowed := fmt.Sprintf("%s:%d", host, env.allowed)
	other := fmt.Sprintf("%s:%d", host, env.other)

	t.Run("allow-list", func(t *testing.T) {
		a := runProbe(ctx, t, "egress-probe", nil)
		assert.Equal(t, []string{
			fmt.Sprintf("reached %s: reached port %d", allowed, env.allowed),
			"blocked " + other,
		}, lines(a.Output))
	})
	t.Run("no rule", func(t *testing.T) {
		a := runProbe(ctx, t, "no-egress-probe", nil)
		assert.Equal(t, []string{
			"blocked " + allowed,
			"blocked " + other,
			"vault: reached",
			"blocked 1.1.1.1:80",
		}, lines(a.Output))
	})
}

// The process inside the container: read-only root, writable /tmp, not
// root, no capabilities, no privilege gain, seccomp filtering, no
// service-account token, and no way to the apiserver.
func TestContainerHardeningFromInside(t *testing.T) {
	needNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	a := runProbe(ctx, t, "hardening-probe", nil)
	api := env.stack.RestConfig.Host[strings.LastIndex(env.stack.RestConfig.Host, ":")+1:]
	assert.Equal(t, []string{
		"root fs: read-only",
		"tmp: writable",
		"uid: 65532",
		"CapPrm: 0000000000000000",
		"CapEff: 0000000000000000",
		"CapBnd: 0000000000000000",
		"CapAmb: 0000000000000000",
		"NoNewPrivs: 1",
		"Seccomp: 2", // SECCOMP_MODE_FILTER: the runtime's default profile
		"sa token: absent",
		"apiserver 10.0.0.1:443: unreachable",
		"apiserver " + env.stack.PodHostIP + ":" + api + ": unreachable",
	}, lines(a.Output))
}

// `kubectl logs` of the action shows what it printed, and the cycle's
// result is that same output (read from the log: the container wrote no
// termination message).
func TestLogsAreTheResult(t *testing.T) {
	needNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	a := runProbe(ctx, t, "echo-probe", map[string]any{"word": "airlock"})
	require.NotNil(t, a.Job)
	out, err := exec.CommandContext(ctx, filepath.Join(binDir(t), "kubectl"), "--kubeconfig", env.stack.Kubeconfig,
		"logs", "-n", a.Job.Namespace, "job/"+a.Job.Name).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "line one airlock\nline two\n", string(out))
	assert.Equal(t, string(out), a.Output)
}

// Stopping a cycle mid-Job — cancelling it, or killing its agent — stops
// the container's process on the node, not only the Job object.
func TestStoppingACycleStopsTheProcess(t *testing.T) {
	needNode(t)
	tests := map[string]struct {
		agent, namespace string
		stop             func(ctx context.Context, workflowID string) error
	}{
		"cancel the cycle": {agentID, "airlock-iso", func(ctx context.Context, workflowID string) error {
			return env.starter.Cancel(ctx, workflowID)
		}},
		"kill the agent": {killAgentID, "airlock-iso-kill", func(ctx context.Context, _ string) error {
			_, err := env.starter.Kill(ctx, killAgentID, contract.KillRequest{Reason: "isolation test", By: "U1", Via: "api"})
			return err
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			run, err := env.starter.Start(ctx, contract.CycleRequest{
				AgentID: tc.agent, CycleID: cycleID(t), Principal: "agent:" + tc.agent,
				Actions: []policy.Proposal{{Type: "sleeper"}},
			})
			require.NoError(t, err)
			jobName := k8s.JobName(run.WorkflowID, 0)

			var pids []int
			require.Eventually(t, func() bool {
				pods, err := env.kube.CoreV1().Pods(tc.namespace).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + jobName})
				if err != nil || len(pods.Items) != 1 {
					return false
				}
				st := pods.Items[0].Status.ContainerStatuses
				if len(st) != 1 || st[0].State.Running == nil {
					return false
				}
				pids, _ = devstack.ContainerPIDs(st[0].ContainerID)
				return len(pids) > 0
			}, time.Minute, 50*time.Millisecond, "the sleeper never ran")
			t.Logf("container processes %v", pids)

			require.NoError(t, tc.stop(ctx, run.WorkflowID))
			require.Eventually(t, func() bool {
				for _, pid := range pids {
					if devstack.ProcessAlive(pid) {
						return false
					}
				}
				return true
			}, 30*time.Second, 50*time.Millisecond, "the container's process outlived the stop")
			if res, err := env.starter.Result(ctx, run.WorkflowID); err == nil {
				assert.NotEqual(t, contract.OutcomeSucceeded, res.Outcome)
			}
		})
	}
}

func binDir(t *testing.T) string {
	t.Helper()
	d, err := devstack.DefaultBinDir()
	require.NoError(t, err)
	return d
}
