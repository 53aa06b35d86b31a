package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
)

// secretSeen is the credential material a Job's Secret held while it ran.
type secretSeen struct {
	token, dbUser, dbPassword, accessor, dbLease string
	data                                         map[string][]byte
}

func watchSecret(ctx context.Context, namespace, jobName string) <-chan secretSeen {
	out := make(chan secretSeen, 1)
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			s, err := env.kube.CoreV1().Secrets(namespace).Get(ctx, k8s.SecretName(jobName), metav1.GetOptions{})
			if err == nil {
				out <- secretSeen{
					token: string(s.Data["VAULT_TOKEN"]), dbUser: string(s.Data["DB_USERNAME"]), dbPassword: string(s.Data["DB_PASSWORD"]),
					accessor: s.Annotations[activities.AnnotationLeaseAccessor], dbLease: s.Annotations[activities.AnnotationDBLease],
					data: s.Data,
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return out
}

// Invariant 1, the secret scan: a cycle leasing a real token and real
// dynamic PostgreSQL credentials leaves no credential value in the decoded
// history, the audit trail or the worker's logs; the raw history is
// ciphertext; the database credentials worked while the Job ran and are
// dead afterwards.
func TestInvariant1SecretScanTokenAndDynamicDatabaseCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{{Type: "db-report"}}}
	wfID := contract.CycleWorkflowID(req.AgentID, req.CycleID)
	seenCh := watchSecret(ctx, ns, k8s.JobName(wfID, 0))
	run, err := env.starter.Start(ctx, req)
	require.NoError(t, err)
	seen := <-seenCh
	require.NotEmpty(t, seen.token)
	require.NotEmpty(t, seen.dbPassword, "the Job got dynamic database credentials")
	require.NotEmpty(t, seen.dbLease)
	out, err := env.pg.Psql(ctx, seen.dbUser, seen.dbPassword, "select count(*) from widgets")
	require.NoError(t, err, "the credentials work while the Job runs")
	assert.Contains(t, out, "2")

	res, err := run.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
	assert.Equal(t, seen.dbLease, res.Actions[0].DBLeaseID, "the result names the lease, not the password")

	valid, err := env.broker.LeaseValid(ctx, seen.dbLease)
	require.NoError(t, err)
	assert.False(t, valid, "the database lease is revoked")
	_, err = env.pg.Psql(ctx, seen.dbUser, seen.dbPassword, "select 1")
	assert.Error(t, err, "the database user is gone")

	raw := rawHistory(ctx, t, wfID)
	rawText := historyText(t, raw)
	decoded := historyJSON(ctx, t, wfID)
	audit, err := env.starter.Audit(ctx, wfID)
	require.NoError(t, err)
	var auditText strings.Builder
	for _, e := range audit {
		auditText.WriteString(e.Summary)
		for k, v := range e.Data {
			auditText.WriteString(k)
			auditText.WriteString(strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(toString(v), "\n", " "), "\t", " ")))
		}
	}
	assert.Contains(t, decoded, seen.dbLease, "sanity: the decoded history is searchable")
	for where, text := range map[string]string{
		"raw history": rawText, "decoded history": decoded, "audit trail": auditText.String(), "worker logs": env.logs.String(),
	} {
		assertAbsent(t, where, text, seen.token)
		assertAbsent(t, where, text, seen.dbPassword)
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return strings.Trim(strings.ReplaceAll(strings.ReplaceAll(fmtAny(v), "map[", "{"), "]", "}"), " ")
}

// The long-Job test: action tokens start with a 3 s TTL here; a Job running
// 9 s keeps valid credentials to its end because RunJob renews them.
func TestLongJobKeepsItsCredentialsAliveUntilItEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{{Type: "long-read"}}}
	wfID := contract.CycleWorkflowID(req.AgentID, req.CycleID)
	seenCh := watchSecret(ctx, ns, k8s.JobName(wfID, 0))
	run, err := env.starter.Start(ctx, req)
	require.NoError(t, err)
	seen := <-seenCh
	first, err := env.broker.Lookup(ctx, seen.accessor)
	require.NoError(t, err)
	assert.LessOrEqual(t, first.TTL, 3*time.Second, "the initial TTL is short")

	time.Sleep(7 * time.Second) // well past the initial TTL, Job still running
	still, err := env.broker.Lookup(ctx, seen.accessor)
	require.NoError(t, err, "the token outlived its initial TTL because it was renewed")
	assert.Positive(t, still.TTL)
	require.Len(t, podsOfNoT(ctx, k8s.JobName(wfID, 0)), 1)

	res, err := run.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome)
	_, err = env.broker.Lookup(ctx, seen.accessor)
	assert.ErrorIs(t, err, vault.ErrNotFound, "and it is revoked when the Job ends")
}

// Invariant 3: action tokens are children of the agent's token, so the kill
// switch (revoking the agent) kills every running action's credentials.
func TestInvariant3RevokingTheAgentRevokesEveryActionToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{{Type: "db-report"}}}
	wfID := contract.CycleWorkflowID(req.AgentID, req.CycleID)
	seenCh := watchSecret(ctx, ns, k8s.JobName(wfID, 0))
	run, err := env.starter.Start(ctx, req)
	require.NoError(t, err)
	seen := <-seenCh
	_, err = env.broker.Lookup(ctx, seen.accessor)
	require.NoError(t, err)

	revoked, err := env.agents.RevokeAgent(ctx, "e2e")
	require.NoError(t, err)
	assert.NotEmpty(t, revoked)
	_, err = env.broker.Lookup(ctx, seen.accessor)
	assert.ErrorIs(t, err, vault.ErrNotFound, "the action token died with its agent")
	assert.Eventually(t, func() bool {
		valid, err := env.broker.LeaseValid(ctx, seen.dbLease)
		return err == nil && !valid
	}, 10*time.Second, 100*time.Millisecond, "and so did its database lease")
	_, err = run.Get(ctx)
	require.NoError(t, err, "the cycle still ends cleanly")

	// The next cycle gets a fresh agent token.
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t) + "-after", Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "again"}}}})
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
}

func fmtAny(v any) string { return strings.TrimSpace(strings.ReplaceAll(fmt.Sprint(v), "\n", " ")) }

// KV secrets reach the Job only through its Secret, read with the action's
// own token; the value is nowhere in history, audit or logs.
func TestKVSecretReachesTheJobOnlyThroughItsSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	value := fmt.Sprintf("pay-%d-s3cr3t", time.Now().UnixNano())
	root, err := vaultapi.NewClient(&vaultapi.Config{Address: env.stack.VaultAddr})
	require.NoError(t, err)
	root.SetToken(env.stack.VaultToken)
	_, err = root.KVv2("secret").Put(ctx, "airlock/airlock-e2e-read/payments-api", map[string]any{"token": value})
	require.NoError(t, err)

	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{{Type: "kv-read"}}}
	wfID := contract.CycleWorkflowID(req.AgentID, req.CycleID)
	seenCh := watchSecret(ctx, ns, k8s.JobName(wfID, 0))
	res, err := env.starter.RunCycle(ctx, req)
	require.NoError(t, err)
	seen := <-seenCh
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
	assert.Equal(t, value, string(seen.data["API_TOKEN"]), "the Job's Secret held the KV value")
	pod := podsOf(ctx, t, ns, res.Actions[0].Job.Name)[0]
	var fromSecret bool
	for _, e := range pod.Spec.Containers[0].Env {
		if e.Name == "API_TOKEN" {
			fromSecret = e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.Value == ""
		}
	}
	assert.True(t, fromSecret, "the Pod gets it by reference, not in its spec")
	assertAbsent(t, "decoded history", historyJSON(ctx, t, wfID), value)
	assertAbsent(t, "worker logs", env.logs.String(), value)
}
