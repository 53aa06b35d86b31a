package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
)

// `cycle audit --infra` tells one cycle's story across the trail, Vault's
// file audit device and the apiserver's audit log: the action token issued,
// used, revoked; the Job, its Secret and NetworkPolicy created and deleted.
// On kwok no container runs, so the token's use is the worker reading the
// Job's KV value with the action's own token while staging (the Job's own
// use of its token is shown on the real node, isolation/).
func TestInfraAuditJoinsTrailVaultAndKubernetesWithoutSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	value := fmt.Sprintf("pay-%d-infra-s3cr3t", time.Now().UnixNano())
	root, err := vaultapi.NewClient(&vaultapi.Config{Address: env.stack.VaultAddr})
	require.NoError(t, err)
	root.SetToken(env.stack.VaultToken)
	_, err = root.KVv2("secret").Put(ctx, "airlock/airlock-e2e-read/payments-api", map[string]any{"token": value})
	require.NoError(t, err)

	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Principal: "agent:e2e",
		Thoughts: []contract.Thought{{Step: 1, Content: "check the payments API", Confidence: 0.8}},
		Actions:  []policy.Proposal{{Type: "kv-read"}}}
	wfID := contract.CycleWorkflowID(req.AgentID, req.CycleID)
	jobName := k8s.JobName(wfID, 0)
	seenCh := watchSecret(ctx, ns, jobName)
	res, err := env.starter.RunCycle(ctx, req)
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
	seen := <-seenCh
	require.NotEmpty(t, seen.token)
	acc := res.Actions[0].LeaseAccessor
	require.NotEmpty(t, acc)

	// The Job lives for an hour after it finishes (ttlSecondsAfterFinished);
	// delete it now as the TTL controller would then.
	require.NoError(t, env.kube.BatchV1().Jobs(ns).Delete(ctx, jobName, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}))
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(env.stack.KubeAuditLog)
		return err == nil && bytes.Contains(b, []byte(`"verb":"delete"`)) && bytes.Contains(b, []byte(`"resource":"jobs","namespace":"`+ns+`","name":"`+jobName+`"`))
	}, 10*time.Second, 50*time.Millisecond, "the Job's delete reaches the apiserver audit log")

	out, err := cli(t, "cycle", "audit", wfID, "--infra", "--vault-audit-log", env.stack.VaultAuditLog, "--k8s-audit-log", env.stack.KubeAuditLog)
	require.NoError(t, err, out)
	t.Logf("cycle audit --infra:\n%s", out)
	// What Vault and the apiserver recorded, in order. (Trail entries carry
	// workflow time, a few ms off the systems' clocks: checked apart.)
	steps := []string{
		"create jobs " + ns + "/" + jobName,
		"token issued via auth/token/create/airlock-action-read: accessor " + acc,
		"used: read secret/data/airlock/airlock-e2e-read/payments-api with token accessor " + acc,
		"create secrets " + ns + "/" + k8s.SecretName(jobName),
		"create pods/binding " + ns + "/" + jobName + "-",
		"token revoked: accessor " + acc,
		"delete secrets " + ns + "/" + k8s.SecretName(jobName),
		"delete jobs " + ns + "/" + jobName,
	}
	assertInOrder(t, out, steps)
	// The NetworkPolicy is written while the token is leased, and removed
	// with the Secret, once the token is revoked.
	assertInOrder(t, out, []string{
		"create jobs " + ns + "/" + jobName,
		"create networkpolicies " + ns + "/" + k8s.NetworkPolicyName(jobName),
		"create pods/binding " + ns + "/" + jobName + "-",
		"token revoked: accessor " + acc,
		"delete networkpolicies " + ns + "/" + k8s.NetworkPolicyName(jobName),
		"delete jobs " + ns + "/" + jobName,
	})
	assertInOrder(t, out, []string{"cycle: cycle started", "lease: credential leased (accessor " + acc + ")",
		"job: job " + ns + "/" + jobName, "lease: credential revoked (accessor " + acc + ")",
		"cycle: cycle finished: succeeded", "signature: chain head"})
	assert.Contains(t, out, "token renewed: accessor "+acc, "renewals while the Job ran")
	assert.NotContains(t, out, "token issued via auth/token/renew", "a renewal is not an issue")
	assert.Contains(t, out, "chain head signed by transit key airlock-audit version 1: valid")
	assertAbsent(t, "cycle audit --infra", out, seen.token)
	assertAbsent(t, "cycle audit --infra", out, value)
	assertAbsent(t, "cycle audit --infra", out, env.stack.VaultToken)
	for _, log := range []string{env.stack.VaultAuditLog, env.stack.KubeAuditLog} {
		b, err := os.ReadFile(log)
		require.NoError(t, err)
		assertAbsent(t, filepath.Base(log), string(b), seen.token)
		assertAbsent(t, filepath.Base(log), string(b), value)
	}

	t.Run("an export carries the signature and verifies", func(t *testing.T) {
		js, err := cli(t, "cycle", "audit", wfID, "--json")
		require.NoError(t, err, js)
		file := filepath.Join(t.TempDir(), "trail.jsonl")
		require.NoError(t, os.WriteFile(file, []byte(js), 0o600))
		out, err := cli(t, "cycle", "audit", "--file", file)
		require.NoError(t, err, out)
		assert.Contains(t, out, "chain head signed by transit key airlock-audit version 1: valid")
	})

	t.Run("a rewritten and re-hashed trail fails signature verification", func(t *testing.T) {
		js, err := cli(t, "cycle", "audit", wfID, "--json")
		require.NoError(t, err, js)
		var forged []contract.AuditEntry
		for _, line := range strings.Split(strings.TrimSpace(js), "\n") {
			var e contract.AuditEntry
			require.NoError(t, json.Unmarshal([]byte(line), &e))
			if e.Kind == contract.AuditThought {
				e.Summary = "nothing unusual, carry on"
			}
			if e.Kind == contract.AuditSignature { // point the signature at the forged head too
				e.Data["head"] = forged[len(forged)-1].Hash
			}
			forged = contract.AppendAudit(forged, e.At, e.Kind, e.Action, e.Summary, e.Data)
		}
		require.Nil(t, contract.VerifyAudit(forged), "the forged chain is internally consistent")
		var buf bytes.Buffer
		for _, e := range forged {
			require.NoError(t, json.NewEncoder(&buf).Encode(e))
		}
		file := filepath.Join(t.TempDir(), "forged.jsonl")
		require.NoError(t, os.WriteFile(file, buf.Bytes(), 0o600))
		out, err := cli(t, "cycle", "audit", "--file", file)
		require.Error(t, err, "a forged trail exits non-zero")
		assert.Contains(t, out, "chain verified", "the unkeyed chain alone is fooled")
		assert.Contains(t, out, "chain head signature: NOT VALID")
		assert.Contains(t, out, "signature does not verify")
	})
}

// assertInOrder checks that each of steps appears in out after the one before.
func assertInOrder(t *testing.T, out string, steps []string) {
	t.Helper()
	last, lastStep := -1, ""
	for _, s := range steps {
		i := strings.Index(out, s)
		if !assert.GreaterOrEqual(t, i, 0, "the timeline shows %q", s) {
			continue
		}
		assert.Greater(t, i, last, "%q comes after %q", s, lastStep)
		last, lastStep = i, s
	}
}
