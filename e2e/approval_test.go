package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
)

const signingSecret = "e2e-signing-secret"

// recordingSlack is a slacktest server that records chat.* calls.
type recordingSlack struct {
	*slacktest.Server
	mu    sync.Mutex
	posts []url.Values
}

func newRecordingSlack() *recordingSlack {
	rs := &recordingSlack{}
	rs.Server = slacktest.NewTestServer(func(c slacktest.Customize) {
		for _, m := range []string{"chat.postMessage", "chat.update", "chat.postEphemeral"} {
			c.Handle("/"+m, func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				rs.mu.Lock()
				form := r.PostForm
				form.Set("_method", m)
				if form.Get("ts") == "" {
					form.Set("ts", fmt.Sprintf("1700000000.%06d", len(rs.posts)+1))
				}
				ts := form.Get("ts")
				rs.posts = append(rs.posts, form)
				rs.mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": r.PostForm.Get("channel"), "ts": ts})
			})
		}
	})
	rs.Start()
	return rs
}

// message returns the last call of method whose blocks mention needle.
func (rs *recordingSlack) message(method, needle string) (url.Values, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for i := len(rs.posts) - 1; i >= 0; i-- {
		p := rs.posts[i]
		if p.Get("_method") == method && strings.Contains(p.Get("blocks")+p.Get("text"), needle) {
			return p, true
		}
	}
	return nil, false
}

// buttonValue digs the value of a button out of posted blocks JSON; it
// returns "<block id>\x00<value>" for click.
func buttonValue(t testing.TB, blocksJSON, actionID string) string {
	t.Helper()
	var blocks slack.Blocks
	require.NoError(t, json.Unmarshal([]byte(blocksJSON), &blocks))
	for _, b := range blocks.BlockSet {
		if ab, ok := b.(*slack.ActionBlock); ok {
			for _, e := range ab.Elements.ElementSet {
				if btn, ok := e.(*slack.ButtonBlockElement); ok && btn.ActionID == actionID {
					return ab.BlockID + "\x00" + btn.Value
				}
			}
		}
	}
	t.Fatalf("no %s button in %s", actionID, blocksJSON)
	return ""
}

// click is what Slack sends when user presses a button of a message.
func click(t testing.TB, endpoint, user, actionID, button, ts string, signedAt time.Time, secret string) *http.Response {
	t.Helper()
	blockID, value, _ := strings.Cut(button, "\x00")
	payload, _ := json.Marshal(map[string]any{
		"type":      "block_actions",
		"user":      map[string]any{"id": user},
		"container": map[string]any{"type": "message", "message_ts": ts, "channel_id": "C0APPROVALS"},
		"channel":   map[string]any{"id": "C0APPROVALS"},
		"message":   map[string]any{"ts": ts},
		"actions":   []map[string]any{{"action_id": actionID, "block_id": blockID, "value": value, "type": "button", "action_ts": strconv.FormatInt(time.Now().UnixNano(), 10)}},
	})
	body := url.Values{"payload": {string(payload)}}.Encode()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	unix := strconv.FormatInt(signedAt.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:%s", unix, body)
	req.Header.Set("X-Slack-Request-Timestamp", unix)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

func approvalEndpoint(t *testing.T) string {
	t.Helper()
	h, err := approval.NewHandler(approval.HandlerConfig{SigningSecret: signingSecret, Decider: approval.DeciderFunc(env.starter.Decide),
		Killer: approval.KillerFunc(env.starter.RequestKill), Promoter: approval.PromoterFunc(env.starter.Promote)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); h.Close() })
	return srv.URL + "/slack/interactions"
}

// waitPosted waits for the approval message of a cycle to reach Slack.
func waitPosted(t *testing.T, wfID string) url.Values {
	t.Helper()
	var msg url.Values
	require.Eventually(t, func() bool {
		var ok bool
		msg, ok = env.slack.message("chat.postMessage", wfID)
		return ok
	}, 30*time.Second, 20*time.Millisecond, "no approval message for %s", wfID)
	return msg
}

func TestInvariant7AdvisoryCycleWaitsForASignedSlackClick(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	endpoint := approvalEndpoint(t)
	req := contract.CycleRequest{AgentID: "e2e-adv", CycleID: cycleID(t), Principal: "agent:e2e-adv",
		Thoughts: []contract.Thought{{Step: 1, Content: "need to write", Confidence: 0.7}},
		Actions:  []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "db"}, Rationale: "fix it"}}}
	run, err := env.starter.Start(ctx, req)
	require.NoError(t, err)
	msg := waitPosted(t, run.WorkflowID)
	assert.Equal(t, "C0APPROVALS", msg.Get("channel"), "posted to the agent's channel")
	approve := buttonValue(t, msg.Get("blocks"), approval.ActionID(contract.DecisionApprove))
	job := k8s.JobName(run.WorkflowID, 0)

	t.Run("nothing is created while it waits", func(t *testing.T) {
		_, err := env.kube.BatchV1().Jobs("airlock-e2e-adv").Get(ctx, job, metav1.GetOptions{})
		assert.True(t, k8serrors.IsNotFound(err), "job exists before approval: %v", err)
		pending, err := env.starter.Pending(ctx, run.WorkflowID)
		require.NoError(t, err)
		require.Len(t, pending, 1)
	})
	t.Run("forged, expired and unauthorised clicks change nothing", func(t *testing.T) {
		assert.Equal(t, http.StatusUnauthorized, click(t, endpoint, "U1", approval.ActionID(contract.DecisionApprove), approve, msg.Get("ts"), time.Now(), "wrong-secret").StatusCode)
		assert.Equal(t, http.StatusUnauthorized, click(t, endpoint, "U1", approval.ActionID(contract.DecisionApprove), approve, msg.Get("ts"), time.Now().Add(-6*time.Minute), signingSecret).StatusCode)
		assert.Equal(t, http.StatusForbidden, click(t, endpoint, "U9", approval.ActionID(contract.DecisionApprove), approve, msg.Get("ts"), time.Now(), signingSecret).StatusCode)
		pending, err := env.starter.Pending(ctx, run.WorkflowID)
		require.NoError(t, err)
		require.Len(t, pending, 1, "still waiting")
		assert.Empty(t, pending[0].ApprovedBy)
	})

	resp := click(t, endpoint, "U1", approval.ActionID(contract.DecisionApprove), approve, msg.Get("ts"), time.Now(), signingSecret)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	res, err := run.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res)
	a := res.Actions[0]
	assert.Equal(t, "approved write done", a.Output, "the Job ran")
	require.Len(t, a.Decisions, 1)
	assert.Equal(t, "U1", a.Decisions[0].Approver)
	assert.Equal(t, "slack", a.Decisions[0].Via)
	_, err = env.broker.Lookup(ctx, a.LeaseAccessor)
	assert.ErrorIs(t, err, vault.ErrNotFound, "credentials revoked after the run")
	assert.Equal(t, http.StatusForbidden, click(t, endpoint, "U1", approval.ActionID(contract.DecisionApprove), approve, msg.Get("ts"), time.Now(), signingSecret).StatusCode,
		"a second click after the cycle closed is refused and changes nothing")
	up, ok := env.slack.message("chat.update", "U1")
	require.True(t, ok, "the message was updated with the outcome")
	assert.Equal(t, msg.Get("ts"), up.Get("ts"))
	assert.Contains(t, strings.ToLower(up.Get("blocks")), "approved")
}

func TestDeniedActionCreatesNoJobAndLeasesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	endpoint := approvalEndpoint(t)
	run, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: "e2e-adv", CycleID: cycleID(t),
		Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "db"}}}})
	require.NoError(t, err)
	msg := waitPosted(t, run.WorkflowID)
	deny := buttonValue(t, msg.Get("blocks"), approval.ActionID(contract.DecisionDeny))
	require.Equal(t, http.StatusOK, click(t, endpoint, "U2", approval.ActionID(contract.DecisionDeny), deny, msg.Get("ts"), time.Now(), signingSecret).StatusCode)
	res, err := run.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeDenied, res.Outcome)
	assert.Equal(t, "denied by U2", res.Actions[0].Error)
	assert.Empty(t, res.Actions[0].LeaseAccessor, "no lease was made")
	_, err = env.kube.BatchV1().Jobs("airlock-e2e-adv").Get(ctx, k8s.JobName(run.WorkflowID, 0), metav1.GetOptions{})
	assert.True(t, k8serrors.IsNotFound(err), "no Job: %v", err)
	assert.NotContains(t, historyJSON(ctx, t, run.WorkflowID), "StageAction", "no staging was even scheduled")
}

func TestShadowCycleCreatesNoJobButTheDryRunIsReal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e-shadow", CycleID: cycleID(t), Actions: []policy.Proposal{
		{Type: "echo", Params: map[string]any{"text": "look"}},
		{Type: "quick-write", Params: map[string]any{"target": "db"}},
		{Type: "greedy-write"},
	}})
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeSucceeded, res.Actions[0].Outcome, "shadow reads run")
	assert.Equal(t, contract.OutcomeWouldDo, res.Actions[1].Outcome)
	assert.Equal(t, "admitted", res.Actions[1].DryRun)
	require.NotNil(t, res.Actions[1].Rendered, "the fully rendered action is recorded")
	assert.Equal(t, contract.OutcomeWouldDo, res.Actions[2].Outcome)
	assert.Contains(t, res.Actions[2].DryRun, "rejected:", "the apiserver refused the non-compliant Job for real")
	assert.Contains(t, res.Actions[2].DryRun, "not a valid annotation key!")
	for _, i := range []int{1, 2} {
		assert.Empty(t, res.Actions[i].LeaseAccessor)
		_, err := env.kube.BatchV1().Jobs("airlock-e2e-shadow").Get(ctx, k8s.JobName(res.WorkflowID, i), metav1.GetOptions{})
		assert.True(t, k8serrors.IsNotFound(err))
	}
	jobs, err := env.kube.BatchV1().Jobs("airlock-e2e-shadow").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, jobs.Items, 1, "only the read ran")
}

func TestShadowFeedbackFromSlackIsRecordedAndRunsNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	endpoint := approvalEndpoint(t)
	before, err := env.starter.AgentState(ctx, "e2e-shadow")
	require.NoError(t, err)
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e-shadow", CycleID: cycleID(t), Principal: "agent:e2e-shadow",
		Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "db"}}}})
	require.NoError(t, err, "the shadow cycle returns at once")
	assert.Empty(t, res.Actions[0].FeedbackWorkflowID, "feedback lands on the agent's workflow, not a workflow of its own")
	msg := waitPosted(t, res.WorkflowID)
	agree := buttonValue(t, msg.Get("blocks"), approval.ActionID(contract.DecisionAgree))
	// The cycle's report (which opens the proposal to feedback) reaches the
	// agent's workflow just after the cycle closed.
	require.Eventually(t, func() bool {
		st, err := env.starter.AgentState(ctx, "e2e-shadow")
		return err == nil && slices.ContainsFunc(st.Shadow, func(p contract.ShadowProposal) bool { return p.WorkflowID == res.WorkflowID })
	}, 30*time.Second, 50*time.Millisecond)
	assert.Equal(t, http.StatusOK, click(t, endpoint, "U1", approval.ActionID(contract.DecisionAgree), agree, msg.Get("ts"), time.Now(), signingSecret).StatusCode)
	assert.Equal(t, http.StatusOK, click(t, endpoint, "U1", approval.ActionID(contract.DecisionAgree), agree, msg.Get("ts"), time.Now().Add(time.Second), signingSecret).StatusCode,
		"a second click is harmless")

	// A forged "approve" on the shadow action is refused (the cycle is
	// closed; nothing can make a shadow proposal run).
	_, value, _ := strings.Cut(agree, "\x00")
	bv, err := approval.ParseButtonValue(value)
	require.NoError(t, err)
	bv.Kind = contract.DecisionApprove
	forged, err := bv.Encode()
	require.NoError(t, err)
	blockID, _, _ := strings.Cut(agree, "\x00")
	assert.Equal(t, http.StatusForbidden, click(t, endpoint, "U2", approval.ActionID(contract.DecisionApprove), blockID+"\x00"+forged, msg.Get("ts"), time.Now(), signingSecret).StatusCode)

	st, err := env.starter.AgentState(ctx, "e2e-shadow")
	require.NoError(t, err)
	i := slices.IndexFunc(st.Shadow, func(p contract.ShadowProposal) bool { return p.WorkflowID == res.WorkflowID })
	require.GreaterOrEqual(t, i, 0)
	got := st.Shadow[i].Feedback
	require.Len(t, got, 1)
	assert.Equal(t, "U1", got[0].Approver)
	assert.Equal(t, contract.DecisionAgree, got[0].Kind)
	assert.Equal(t, before.Counters.Feedback[policy.ClassWrite].Agree+1, st.Counters.Feedback[policy.ClassWrite].Agree, "counted as the agent's evidence")
	assert.Empty(t, jobsOf(ctx, t, "airlock-e2e-shadow", res.WorkflowID), "feedback never runs anything")
}
