package approval

import (
	"context"
	"encoding/json"
	"net/http"
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

	"github.com/airlockhq/airlock/contract"
)

// slackCall is one Web API request the fake Slack received.
type slackCall struct {
	Method string
	Form   url.Values
}

// blocks decodes the call's blocks.
func (c slackCall) blocks(t testing.TB) []slack.Block {
	t.Helper()
	var b slack.Blocks
	require.NoError(t, json.Unmarshal([]byte(c.Form.Get("blocks")), &b))
	return b.BlockSet
}

// recordingSlack is a slacktest server whose chat.* endpoints record what
// they receive. slacktest's own chat.postMessage hands messages to an RTM
// websocket hub (a goroutine that blocks without a client) and it serves
// no chat.update, so those routes are customised.
type recordingSlack struct {
	*slacktest.Server
	mu    sync.Mutex
	calls []slackCall
	fail  string // Slack error code to answer with, if set
}

func newRecordingSlack(t testing.TB) *recordingSlack {
	rs := &recordingSlack{}
	rs.Server = slacktest.NewTestServer(func(c slacktest.Customize) {
		for _, m := range []string{"chat.postMessage", "chat.update", "chat.postEphemeral"} {
			c.Handle("/"+m, rs.handle(m))
		}
		c.Handle("/views.open", rs.handleView)
	})
	rs.Start()
	t.Cleanup(rs.Stop)
	return rs
}

func (rs *recordingSlack) handle(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rs.mu.Lock()
		rs.calls = append(rs.calls, slackCall{Method: method, Form: r.PostForm})
		fail := rs.fail
		rs.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if fail != "" {
			json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": fail})
			return
		}
		ts := r.PostForm.Get("ts")
		if ts == "" {
			ts = "1700000000.000001"
		}
		json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": r.PostForm.Get("channel"), "ts": ts, "message_ts": ts})
	}
}

// handleView records a views.open call (a JSON body) as a call whose form
// holds its trigger_id and its view's JSON.
func (rs *recordingSlack) handleView(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TriggerID string          `json:"trigger_id"`
		View      json.RawMessage `json:"view"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rs.mu.Lock()
	rs.calls = append(rs.calls, slackCall{Method: "views.open", Form: url.Values{"trigger_id": {req.TriggerID}, "view": {string(req.View)}}})
	fail := rs.fail
	rs.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if fail != "" {
		json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": fail})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"ok": true, "view": map[string]any{"id": "V0REASON"}})
}

func (rs *recordingSlack) received() []slackCall {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]slackCall, len(rs.calls))
	copy(out, rs.calls)
	return out
}

func newTestNotifier(t testing.TB, rs *recordingSlack) *Notifier {
	t.Helper()
	n, err := NewNotifier(testToken, WithAPIURL(rs.GetAPIURL()), WithDefaultChannel("C0APPROVE"))
	require.NoError(t, err)
	return n
}

// texts returns every string in the call's blocks JSON, one per line, so
// tests can look for rendered text without JSON escaping in the way.
func (c slackCall) texts(t testing.TB) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal([]byte(c.Form.Get("blocks")), &v))
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			b.WriteString(x + "\n")
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return b.String()
}

// actionIDs lists the action ids of the buttons in blocks.
func actionIDs(blocks []slack.Block) []string {
	var ids []string
	for _, b := range blocks {
		if ab, ok := b.(*slack.ActionBlock); ok {
			for _, e := range ab.Elements.ElementSet {
				if btn, ok := e.(*slack.ButtonBlockElement); ok {
					ids = append(ids, btn.ActionID)
				}
			}
		}
	}
	return ids
}

func TestNotifierPostThenUpdate(t *testing.T) {
	rs := newRecordingSlack(t)
	n := newTestNotifier(t, rs)
	ctx := context.Background()

	ref, err := n.Post(ctx, "", testPending(2), contract.NoticeApproval)
	require.NoError(t, err)
	assert.Equal(t, MessageRef{Channel: "C0APPROVE", TS: "1700000000.000001"}, ref)

	pending := testPending(2)
	decidedAt := time.Date(2030, 1, 2, 15, 0, 0, 0, time.UTC)
	require.NoError(t, n.Update(ctx, ref, Outcome{
		WorkflowID: testWF, Status: StatusApproved, By: []string{"U0ALICE", "U0BOB"}, At: decidedAt, Pending: &pending,
	}))

	calls := rs.received()
	require.Len(t, calls, 2)

	post := calls[0]
	assert.Equal(t, "chat.postMessage", post.Method)
	assert.Equal(t, "C0APPROVE", post.Form.Get("channel"))
	assert.Contains(t, post.Form.Get("text"), "Approval needed: agent ops-bot wants to run scale-deployment")
	blocks := post.blocks(t)
	assert.Equal(t, []string{ActionApprove, ActionDeny, ActionDenyWithReason, ActionKillAgent}, actionIDs(blocks))
	raw := post.Form.Get("blocks")
	assert.Contains(t, raw, `"style":"primary"`)
	assert.Contains(t, raw, `"style":"danger"`)
	assert.Contains(t, raw, `"confirm":{`)
	assert.Contains(t, post.texts(t), "Needs 2 distinct approvers: 0 of 2")

	upd := calls[1]
	assert.Equal(t, "chat.update", upd.Method)
	assert.Equal(t, ref.Channel, upd.Form.Get("channel"))
	assert.Equal(t, ref.TS, upd.Form.Get("ts"))
	assert.Empty(t, actionIDs(upd.blocks(t)), "buttons are gone once decided")
	assert.Contains(t, upd.texts(t), "*Approved* by <@U0ALICE>, <@U0BOB> at <!date^"+strconv.FormatInt(decidedAt.Unix(), 10))
	assert.Contains(t, upd.texts(t), "scale-deployment", "the summary stays above the outcome")
	assert.Contains(t, upd.Form.Get("text"), "approved by <@U0ALICE>, <@U0BOB>")
}

func TestNotifierActivities(t *testing.T) {
	rs := newRecordingSlack(t)
	n := newTestNotifier(t, rs)
	ctx := context.Background()

	ref, err := n.PostApprovalMessage(ctx, contract.Notice{Mode: contract.NoticeVeto, Channel: "C0OTHER", Pending: testPending(1)})
	require.NoError(t, err)
	assert.Equal(t, "C0OTHER", ref.Channel)
	require.NoError(t, n.UpdateApprovalMessage(ctx, contract.NoticeUpdate{Ref: ref, WorkflowID: testWF, Index: 0, Status: StatusExpired}))

	calls := rs.received()
	require.Len(t, calls, 2)
	assert.Equal(t, []string{ActionStop, ActionStopWithReason, ActionKillAgent}, actionIDs(calls[0].blocks(t)))
	assert.Contains(t, calls[0].texts(t), "unless stopped")
	assert.Empty(t, actionIDs(calls[1].blocks(t)))
	assert.Contains(t, calls[1].texts(t), "*Expired*")
	assert.Contains(t, calls[1].texts(t), "(timeout = denial)")
	assert.Contains(t, calls[1].texts(t), "`"+testWF+"`")
}

func TestNotifierErrorsNeverContainTheToken(t *testing.T) {
	rs := newRecordingSlack(t)
	rs.fail = "channel_not_found"
	n := newTestNotifier(t, rs)
	ctx := context.Background()

	_, err := n.Post(ctx, "C0NOPE", testPending(1), contract.NoticeApproval)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "channel_not_found")
	assert.NotContains(t, err.Error(), testToken)

	err = n.Update(ctx, MessageRef{Channel: "C0NOPE", TS: "1.2"}, Outcome{Status: StatusDenied})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), testToken)

	// The token is in each request (that is how Slack authenticates) but
	// not in %v of the notifier.
	assert.Equal(t, testToken, rs.received()[0].Form.Get("token"))
	assert.NotContains(t, n.String(), testToken)

	// Unreachable API.
	down, err := NewNotifier(testToken, WithAPIURL("http://127.0.0.1:1/"), WithHTTPClient(&http.Client{Timeout: time.Second}))
	require.NoError(t, err)
	_, err = down.Post(ctx, "C1", testPending(1), contract.NoticeApproval)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), testToken)
}

func TestNewNotifierValidates(t *testing.T) {
	tests := map[string]struct {
		token string
		opts  []Option
	}{
		"empty token":     {"", nil},
		"not http":        {testToken, []Option{WithAPIURL("ftp://x/")}},
		"nil http client": {testToken, []Option{WithHTTPClient(nil)}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewNotifier(tc.token, tc.opts...)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), testToken)
		})
	}
	n, err := NewNotifier(testToken)
	require.NoError(t, err)
	_, err = n.Post(context.Background(), "", testPending(1), contract.NoticeApproval)
	assert.ErrorContains(t, err, "no channel")
}
