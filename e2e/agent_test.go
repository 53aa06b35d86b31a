package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
)

// killAgent is the e2e catalog's agent for kill tests: nothing else uses
// it, so killing it cannot disturb other tests.
const killAgent, killNS = "e2e-kill", "airlock-e2e-kill"

// tokenValid asks Vault whether the action token behind an accessor is
// still alive (action tokens carry no default policy: they cannot look
// themselves up).
func tokenValid(t *testing.T, accessor string) bool {
	t.Helper()
	_, err := env.broker.Lookup(context.Background(), accessor)
	if errors.Is(err, vault.ErrNotFound) {
		return false
	}
	require.NoError(t, err)
	return true
}

func agentObjects(ctx context.Context, t *testing.T) (jobs, pods int) {
	t.Helper()
	sel := k8s.LabelAgent + "=" + k8s.AgentLabel(killAgent)
	jl, err := env.kube.BatchV1().Jobs(killNS).List(ctx, metav1.ListOptions{LabelSelector: sel})
	require.NoError(t, err)
	pl, err := env.kube.CoreV1().Pods(killNS).List(ctx, metav1.ListOptions{LabelSelector: sel})
	require.NoError(t, err)
	return len(jl.Items), len(pl.Items)
}

// The kill switch end to end (DESIGN: "a kill switch stops an agent at
// once"): two cycles of the agent run Jobs — one holding dynamic
// PostgreSQL credentials — when `airlock agent kill` is called. Afterwards
// the Jobs and Pods are gone, the action tokens and the database lease are
// dead in Vault, both cycles ended canceled and a new cycle is refused.
// Resuming needs two distinct approvers and brings the agent back in shadow.
func TestAgentKillSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	catalog := filepath.Join(env.stack.Dir, "catalog.yaml")

	// Two running cycles: one with a token and a DB lease, one with a token.
	db := contract.CycleRequest{AgentID: killAgent, CycleID: cycleID(t) + "-db", Actions: []policy.Proposal{{Type: "db-slow"}}}
	read := contract.CycleRequest{AgentID: killAgent, CycleID: cycleID(t) + "-read", Actions: []policy.Proposal{{Type: "long-read"}}}
	dbID, readID := contract.CycleWorkflowID(killAgent, db.CycleID), contract.CycleWorkflowID(killAgent, read.CycleID)
	dbSeen, readSeen := watchSecret(ctx, killNS, k8s.JobName(dbID, 0)), watchSecret(ctx, killNS, k8s.JobName(readID, 0))
	dbRun, err := env.starter.Start(ctx, db)
	require.NoError(t, err)
	readRun, err := env.starter.Start(ctx, read)
	require.NoError(t, err)
	dbCreds, readCreds := <-dbSeen, <-readSeen
	require.NotEmpty(t, dbCreds.token)
	require.NotEmpty(t, dbCreds.dbLease, "the db-slow Job got dynamic database credentials")
	require.NotEmpty(t, readCreds.token)
	require.NotEmpty(t, dbCreds.accessor)
	require.NotEmpty(t, readCreds.accessor)
	require.Eventually(t, func() bool {
		return len(podNames(ctx, killNS, k8s.JobName(dbID, 0))) == 1 && len(podNames(ctx, killNS, k8s.JobName(readID, 0))) == 1
	}, 30*time.Second, 50*time.Millisecond, "both Jobs have their Pod")
	_, err = env.pg.Psql(ctx, dbCreds.dbUser, dbCreds.dbPassword, "select 1")
	require.NoError(t, err, "the database credentials work while the Job runs")
	require.True(t, tokenValid(t, dbCreds.accessor) && tokenValid(t, readCreds.accessor), "the action tokens work while the Jobs run")

	t.Run("a kill by someone who is not an approver is refused and changes nothing", func(t *testing.T) {
		out, err := cli(t, "agent", "kill", killAgent, "--reason", "not mine to kill", "--by", "U9")
		require.Error(t, err)
		assert.Contains(t, out, "U9 is not an approver of agent e2e-kill")
		st, err := env.starter.AgentState(ctx, killAgent)
		require.NoError(t, err)
		assert.Equal(t, contract.AgentActive, st.Status)
		assert.True(t, tokenValid(t, readCreds.accessor))
	})

	start := time.Now()
	out, err := cli(t, "agent", "kill", killAgent, "--reason", "e2e: runaway agent", "--by", "U1")
	elapsed := time.Since(start)
	require.NoError(t, err, out)
	fmt.Fprintf(os.Stdout, "\n$ airlock agent kill %s --reason 'e2e: runaway agent' --by U1   (%s wall clock)\n%s\n", killAgent, elapsed.Round(time.Millisecond), out)
	assert.Contains(t, out, "agent e2e-kill killed by U1")
	assert.Regexp(t, regexp.MustCompile(`cycles canceled: +2 `), out)
	assert.Contains(t, out, dbID)
	assert.Contains(t, out, readID)
	assert.Regexp(t, regexp.MustCompile(`call → last Job gone: \S+ · call → last lease revoked: \S+`), out)

	// The CLI returned only once all of this held: check it without waiting.
	jobs, pods := agentObjects(ctx, t)
	assert.Zero(t, jobs, "every Job of the agent is gone")
	assert.Zero(t, pods, "every Pod of the agent is gone")
	assert.False(t, tokenValid(t, dbCreds.accessor), "the db Job's action token is dead")
	assert.False(t, tokenValid(t, readCreds.accessor), "the read Job's action token is dead")
	valid, err := env.broker.LeaseValid(ctx, dbCreds.dbLease)
	require.NoError(t, err)
	assert.False(t, valid, "the dynamic database lease is revoked")
	_, err = env.pg.Psql(ctx, dbCreds.dbUser, dbCreds.dbPassword, "select 1")
	assert.Error(t, err, "the database user is gone")

	for _, run := range []interface {
		Get(context.Context) (contract.CycleResult, error)
	}{dbRun, readRun} {
		_, err := run.Get(ctx)
		var canceled *temporal.CanceledError
		assert.ErrorAs(t, err, &canceled, "the cycle ended canceled")
	}
	for _, id := range []string{dbID, readID} {
		d, err := env.tc.DescribeWorkflowExecution(ctx, id, "")
		require.NoError(t, err)
		assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED, d.WorkflowExecutionInfo.Status, id)
	}
	saveHistory(ctx, t, dbID, "agent-state-canceled-by-kill")

	t.Run("a new cycle of the killed agent is refused before anything is leased", func(t *testing.T) {
		req := contract.CycleRequest{AgentID: killAgent, CycleID: cycleID(t), Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "again"}}}}
		_, err := env.starter.RunCycle(ctx, req)
		var appErr *temporal.ApplicationError
		require.ErrorAs(t, err, &appErr)
		assert.Equal(t, contract.ErrTypeInvalidRequest, appErr.Type())
		assert.Equal(t, "agent e2e-kill is killed: e2e: runaway agent (via cli)", appErr.Message())
		assert.NotContains(t, activitiesRun(ctx, t, contract.CycleWorkflowID(killAgent, req.CycleID)), "StageAction")
		saveHistory(ctx, t, contract.CycleWorkflowID(killAgent, req.CycleID), "agent-state-refused-killed")
		jobs, _ := agentObjects(ctx, t)
		assert.Zero(t, jobs)
	})

	t.Run("agent show", func(t *testing.T) {
		var st contract.AgentState
		require.Eventually(t, func() bool { // the cancelled cycles report as they end
			st, err = env.starter.AgentState(ctx, killAgent)
			return err == nil && st.Counters.Outcomes["canceled"] == 2 && st.Counters.Outcomes["refused"] == 1
		}, 30*time.Second, 100*time.Millisecond, "%+v", st.Counters)
		out, err := cli(t, "agent", "show", killAgent)
		require.NoError(t, err, out)
		assert.Contains(t, out, "status      killed since")
		assert.Contains(t, out, "e2e: runaway agent (via cli)")
		assert.Contains(t, out, "cycles      3 (canceled 2, refused 1)")
		assert.Contains(t, out, "last kill   2 cycles canceled, 2 Jobs deleted")
		assert.Contains(t, out, "actions     (canceled 2)", "stopped by the kill, not failures of the agent")
		fmt.Fprintf(os.Stdout, "\n$ airlock agent show %s\n%s\n", killAgent, out)
	})

	t.Run("resume needs two distinct approvers and brings the agent back in shadow", func(t *testing.T) {
		out, err := cli(t, "agent", "resume", killAgent, "--by", "U2")
		require.Error(t, err)
		assert.Contains(t, out, "resuming agent e2e-kill needs 2 distinct approvers, got 1 (U2)")
		out, err = cli(t, "agent", "resume", killAgent, "--by", "U2", "--by", "U2")
		require.Error(t, err)
		assert.Contains(t, out, "needs 2 distinct approvers, got 1 (U2)")
		st, err := env.starter.AgentState(ctx, killAgent)
		require.NoError(t, err)
		require.Equal(t, contract.AgentKilled, st.Status, "refused resumes change nothing")

		out, err = cli(t, "agent", "resume", killAgent, "--by", "U2", "--by", "U3", "--reason", "root cause fixed")
		require.NoError(t, err, out)
		assert.Contains(t, out, "agent e2e-kill resumed by U2, U3: active, read=shadow write=shadow")

		// Back in shadow: a write is recorded, never run.
		res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: killAgent, CycleID: cycleID(t),
			Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "db"}}}})
		require.NoError(t, err)
		require.Len(t, res.Actions, 1)
		assert.Equal(t, contract.OutcomeWouldDo, res.Actions[0].Outcome)
		assert.Equal(t, policy.PhaseShadow, res.Actions[0].Decision.Phase)
		saveHistory(ctx, t, res.WorkflowID, "agent-state-shadow-after-resume")
		saveHistory(ctx, t, contract.AgentWorkflowID(killAgent), "agent/seeded-killed-resumed")

		out, err = cli(t, "agent", "list", "--catalog", catalog)
		require.NoError(t, err, out)
		assert.Regexp(t, regexp.MustCompile(`(?m)^e2e-kill +active +shadow +shadow `), out)
		fmt.Fprintf(os.Stdout, "\n$ airlock agent list\n%s\n", out)
	})
}

// podNames lists a Job's Pods in a namespace, without failing the test.
func podNames(ctx context.Context, namespace, jobName string) []string {
	list, err := env.kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jobName})
	if err != nil {
		return nil
	}
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Name)
	}
	return names
}

// An autonomous write is announced after it ran (NoticeDone), and that
// message carries the kill switch: a signed click by one of the agent's
// approvers kills it, anyone else is refused.
func TestSlackKillButtonOnTheAutonomousWriteNotice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const agent = "e2e-kill-slack"
	endpoint := approvalEndpoint(t)
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: agent, CycleID: cycleID(t),
		Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "db"}}}})
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
	msg := waitPosted(t, res.WorkflowID)
	assert.Contains(t, msg.Get("blocks"), "Ran: quick-write", "humans are told after the autonomous write")
	kill := buttonValue(t, msg.Get("blocks"), approval.ActionKillAgent)
	saveHistory(ctx, t, res.WorkflowID, "agent-state-autonomous-done")

	resp := click(t, endpoint, "U9", approval.ActionKillAgent, kill, msg.Get("ts"), time.Now(), signingSecret)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "U9 is not an approver of the agent")
	resp = click(t, endpoint, "U2", approval.ActionKillAgent, kill, msg.Get("ts"), time.Now(), "wrong secret")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	st, err := env.starter.AgentState(ctx, agent)
	require.NoError(t, err)
	require.Equal(t, contract.AgentActive, st.Status, "refused clicks change nothing")

	resp = click(t, endpoint, "U2", approval.ActionKillAgent, kill, msg.Get("ts"), time.Now(), signingSecret)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	st, err = env.starter.AgentState(ctx, agent)
	require.NoError(t, err)
	assert.Equal(t, contract.AgentKilled, st.Status, "killed as soon as the click is answered")
	assert.Equal(t, []string{"U2"}, st.Transitions[len(st.Transitions)-1].By)
	_, err = env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: agent, CycleID: cycleID(t) + "-after",
		Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "db"}}}})
	assert.ErrorContains(t, err, "agent e2e-kill-slack is killed")
}

// saveHistory writes a workflow's history (decoded, so replay tests need no
// Vault) to workflows/testdata/<name>.json with -record-histories.
func saveHistory(ctx context.Context, t *testing.T, wfID, name string) {
	t.Helper()
	if !*record {
		return
	}
	hist := decodedHistory(t, rawHistory(ctx, t, wfID))
	js, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(hist)
	require.NoError(t, err)
	path := filepath.Join("..", "workflows", "testdata", name+".json")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, js, 0o644))
}
