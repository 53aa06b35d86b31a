package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// modalSlack is a slacktest server that records the modals it is asked to
// open (views.open) and accepts message edits.
type modalSlack struct {
	*slacktest.Server
	mu    sync.Mutex
	views []slack.ModalViewRequest
}

func newModalSlack(t *testing.T) *modalSlack {
	ms := &modalSlack{}
	ms.Server = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/views.open", func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				TriggerID string                 `json:"trigger_id"`
				View      slack.ModalViewRequest `json:"view"`
			}
			_ = json.NewDecoder(r.Body).Decode(&req)
			ms.mu.Lock()
			ms.views = append(ms.views, req.View)
			ms.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"ok": req.TriggerID != "", "view": map[string]any{"id": "V1"}})
		})
		for _, m := range []string{"chat.update", "chat.postEphemeral"} {
			c.Handle("/"+m, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"ok":true,"channel":"C0APPROVALS","ts":"1"}`)
			})
		}
	})
	ms.Start()
	t.Cleanup(ms.Stop)
	return ms
}

func (ms *modalSlack) lastView(t *testing.T) slack.ModalViewRequest {
	t.Helper()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	require.NotEmpty(t, ms.views, "a modal was opened")
	return ms.views[len(ms.views)-1]
}

// postSigned sends payload to the endpoint as Slack does, signed now.
func postSigned(t *testing.T, endpoint string, payload any) (int, string) {
	t.Helper()
	p, err := json.Marshal(payload)
	require.NoError(t, err)
	body := url.Values{"payload": {string(p)}}.Encode()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	unix := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(signingSecret))
	fmt.Fprintf(mac, "v0:%s:%s", unix, body)
	req.Header.Set("X-Slack-Request-Timestamp", unix)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Deny with reason, on the real stack: the button opens a modal, its
// signed submission denies, and the agent reads the reason in its result
// and audit trail.
func TestDenyWithReasonReachesTheAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ms := newModalSlack(t)
	n, err := approval.NewNotifier("xoxb-e2e", approval.WithAPIURL(ms.GetAPIURL()))
	require.NoError(t, err)
	h, err := approval.NewHandler(approval.HandlerConfig{SigningSecret: signingSecret, Decider: approval.DeciderFunc(env.starter.Decide), Notifier: n})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); h.Close() })
	endpoint := srv.URL + "/slack/interactions"

	run, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: "e2e-adv", CycleID: cycleID(t),
		Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "db"}}}})
	require.NoError(t, err)
	msg := waitPosted(t, run.WorkflowID)
	blockID, value, _ := strings.Cut(buttonValue(t, msg.Get("blocks"), approval.ActionDenyWithReason), "\x00")

	code, text := postSigned(t, endpoint, map[string]any{
		"type": "block_actions", "user": map[string]any{"id": "U2"}, "trigger_id": "13345224609.738474920.8088930838d88f008e0",
		"container": map[string]any{"type": "message", "message_ts": msg.Get("ts"), "channel_id": "C0APPROVALS"},
		"actions":   []map[string]any{{"action_id": approval.ActionDenyWithReason, "block_id": blockID, "value": value, "type": "button", "action_ts": "1"}},
	})
	require.Equal(t, http.StatusOK, code, text)
	view := ms.lastView(t)

	submit := func(user, reason string) (int, string) {
		return postSigned(t, endpoint, map[string]any{
			"type": "view_submission", "user": map[string]any{"id": user},
			"view": map[string]any{"id": "V1", "callback_id": view.CallbackID, "private_metadata": view.PrivateMetadata,
				"state": map[string]any{"values": map[string]any{"airlock_reason": map[string]any{"airlock_reason_text": map[string]any{"type": "plain_text_input", "value": reason}}}}},
		})
	}
	code, text = submit("U9", "not mine to decide")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, text, `"response_action":"errors"`)
	assert.Contains(t, text, "U9 is not an approver of agent e2e-adv", "the workflow's validator refuses, in the modal")

	const why = "Target db is frozen for the migration; retry after 18:00 UTC."
	code, text = submit("U2", why)
	assert.Equal(t, http.StatusOK, code)
	assert.Empty(t, text, "accepted: the modal closes")

	res, err := run.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeDenied, res.Outcome)
	require.Len(t, res.Actions[0].Decisions, 1)
	d := res.Actions[0].Decisions[0]
	assert.Equal(t, "U2", d.Approver)
	assert.Equal(t, contract.DecisionDeny, d.Kind)
	assert.Equal(t, why, d.Comment, "the agent reads the reason in its result")
	var audited []any
	for _, e := range res.Audit {
		if e.Kind == contract.AuditDecision {
			audited = append(audited, e.Data["comment"])
		}
	}
	assert.Equal(t, []any{why}, audited, "and in the audit trail")
	assert.NotContains(t, env.logs.String(), "frozen for the migration", "the reason is not in the worker's logs")
}
