package approval

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/slack-go/slack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
)

// reasonClick is a click on the "… with reason" button for kind.
func reasonClick(t testing.TB, user string, kind contract.DecisionKind, p *contract.PendingAction) clickSpec {
	v := buttonValue(t, kind)
	if p != nil {
		var err error
		v, err = ButtonValue{WorkflowID: p.WorkflowID, ActionIndex: p.Action.Index, ActionHash: p.Action.Hash, Kind: kind}.Encode()
		require.NoError(t, err)
	}
	return clickSpec{User: user, ActionID: ReasonActionID(kind), Value: v, Pending: p}
}

// openedView is the last modal the fake Slack was asked to open.
func openedView(t testing.TB, rs *recordingSlack) (string, slack.ModalViewRequest) {
	t.Helper()
	var last *slackCall
	for _, c := range rs.received() {
		if c.Method == "views.open" {
			last = &c
		}
	}
	require.NotNil(t, last, "views.open was called")
	var v slack.ModalViewRequest
	require.NoError(t, json.Unmarshal([]byte(last.Form.Get("view")), &v))
	return last.Form.Get("trigger_id"), v
}

// submissionPayload is a view_submission payload shaped like Slack's for
// the reason modal, submitted by user with reason typed in.
func submissionPayload(t testing.TB, user, callbackID, metadata, reason string) string {
	t.Helper()
	p := map[string]any{
		"type":       "view_submission",
		"team":       map[string]any{"id": "T0001", "domain": "acme"},
		"user":       map[string]any{"id": user, "username": "someone", "team_id": "T0001"},
		"api_app_id": "A0001",
		"trigger_id": "4.5.6",
		"view": map[string]any{
			"id": "V0REASON", "type": "modal", "callback_id": callbackID, "private_metadata": metadata,
			"state": map[string]any{"values": map[string]any{
				blockReason: map[string]any{actionReasonText: map[string]any{"type": "plain_text_input", "value": reason}},
			}},
		},
	}
	b, err := json.Marshal(p)
	require.NoError(t, err)
	return string(b)
}

// submit sends a correctly signed submission of the reason modal now.
func (e *env) submit(t *testing.T, user, metadata, reason string) (int, string) {
	t.Helper()
	rec := e.serve(signedRequest(testSecret, e.clock.Now(), formBody(submissionPayload(t, user, CallbackReason, metadata, reason))))
	return rec.Code, rec.Body.String()
}

// viewError decodes a response_action "errors" answer ("" if it is not one).
func viewError(t testing.TB, body string) string {
	t.Helper()
	if body == "" {
		return ""
	}
	var r slack.ViewSubmissionResponse
	require.NoError(t, json.Unmarshal([]byte(body), &r), "answer %q", body)
	require.Equal(t, slack.RAErrors, r.ResponseAction)
	return r.Errors[blockReason]
}

func TestHandlerDenyWithReasonAsksThenDecides(t *testing.T) {
	e := newEnv(t, 1, true)

	rec := e.click(t, reasonClick(t, "U0BOB", contract.DecisionDeny, nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "reason asked\n", rec.Body.String())
	calls, _, _ := e.dec.snapshot()
	assert.Empty(t, calls, "asking for a reason decides nothing")

	trigger, view := openedView(t, e.slack)
	assert.Equal(t, "1.2.3", trigger, "the modal opens with the click's trigger_id")
	assert.Equal(t, CallbackReason, view.CallbackID)
	assert.Equal(t, "Deny with reason", view.Title.Text)
	assert.Equal(t, "Deny", view.Submit.Text)
	meta, err := ParseReasonMetadata(view.PrivateMetadata)
	require.NoError(t, err)
	assert.Equal(t, ReasonMetadata{
		Ref:   MessageRef{Channel: "C0APPROVE", TS: "1700000000.000001"},
		Value: ButtonValue{WorkflowID: testWF, ActionIndex: 0, ActionHash: testHash, Kind: contract.DecisionDeny},
	}, meta, "the modal carries exactly what the button did")
	var input *slack.InputBlock
	for _, b := range view.Blocks.BlockSet {
		if ib, ok := b.(*slack.InputBlock); ok {
			input = ib
		}
	}
	require.NotNil(t, input)
	assert.Equal(t, blockReason, input.BlockID)
	el, ok := input.Element.(*slack.PlainTextInputBlockElement)
	require.True(t, ok, "a plain text input: %T", input.Element)
	assert.True(t, el.Multiline)
	assert.Equal(t, MaxComment, el.MaxLength)

	// An empty (or blank) reason keeps the modal open with an error.
	code, body := e.submit(t, "U0BOB", view.PrivateMetadata, " \n\t ")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "Please give a reason: the agent reads it.", viewError(t, body))
	code, body = e.submit(t, "U0BOB", view.PrivateMetadata, strings.Repeat("é", MaxComment+1))
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, viewError(t, body), "under 2000 characters")
	calls, _, _ = e.dec.snapshot()
	assert.Empty(t, calls, "no reason, no decision")

	reason := "The DB is the bottleneck, not CPU <!channel>; scaling web makes it worse."
	code, body = e.submit(t, "U0BOB", view.PrivateMetadata, "  "+reason+"\n")
	assert.Equal(t, http.StatusOK, code)
	assert.Empty(t, body, "an empty 200 closes the modal")
	_, accepted, status := e.dec.snapshot()
	require.Len(t, accepted, 1)
	assert.Equal(t, contract.Decision{ActionIndex: 0, ActionHash: testHash, Kind: contract.DecisionDeny, Approver: "U0BOB", Via: "slack", Comment: reason}, accepted[0])
	assert.Equal(t, StatusDenied, status)

	// The message everyone sees says who denied and why, escaped.
	e.h.Wait()
	var update *slackCall
	for _, c := range e.slack.received() {
		if c.Method == "chat.update" {
			update = &c
		}
	}
	require.NotNil(t, update, "the message was edited")
	assert.Equal(t, "1700000000.000001", update.Form.Get("ts"))
	text := update.texts(t)
	assert.Contains(t, text, "*Denied* by <@U0BOB>")
	assert.Contains(t, text, "Reason: The DB is the bottleneck, not CPU &lt;!channel&gt;")
	assert.NotContains(t, text, "<!channel>")
	assert.Empty(t, actionIDs(update.blocks(t)), "no buttons left")
	assert.NotContains(t, e.logs.String(), "bottleneck", "the reason is not logged")
}

func TestHandlerStopWithReasonOnAVetoMessage(t *testing.T) {
	e := newEnv(t, 1, true)
	p := testPending(1)
	rec := e.click(t, reasonClick(t, "U0ALICE", contract.DecisionStop, &p))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	_, view := openedView(t, e.slack)
	assert.Equal(t, "Stop with reason", view.Title.Text)
	code, body := e.submit(t, "U0ALICE", view.PrivateMetadata, "Change freeze until 18:00.")
	assert.Equal(t, http.StatusOK, code)
	assert.Empty(t, body)
	_, accepted, status := e.dec.snapshot()
	require.Len(t, accepted, 1)
	assert.Equal(t, contract.DecisionStop, accepted[0].Kind)
	assert.Equal(t, "Change freeze until 18:00.", accepted[0].Comment)
	assert.Equal(t, StatusStopped, status)
}

func TestHandlerReasonRefusalsAndForgeries(t *testing.T) {
	meta := func(t *testing.T, kind contract.DecisionKind) string {
		s, err := ReasonMetadata{Ref: MessageRef{Channel: "C0APPROVE", TS: "1700000000.000001"},
			Value: ButtonValue{WorkflowID: testWF, ActionIndex: 0, ActionHash: testHash, Kind: kind}}.Encode()
		require.NoError(t, err)
		return s
	}
	approveValue := buttonValue(t, contract.DecisionApprove)

	t.Run("metadata this package did not produce", func(t *testing.T) {
		for name, m := range map[string]string{
			"approve carries no reason in Slack": "r1|C0APPROVE|1700000000.000001|" + approveValue,
			"a bare button value":                buttonValue(t, contract.DecisionDeny),
			"unknown version":                    "r2" + strings.TrimPrefix(meta(t, contract.DecisionDeny), "r1"),
			"non-canonical index":                strings.Replace(meta(t, contract.DecisionDeny), "|deny|0|", "|deny|00|", 1),
			"empty":                              "",
		} {
			e := newEnv(t, 1, false)
			code, body := e.submit(t, "U0ALICE", m, "because")
			assert.Equal(t, http.StatusBadRequest, code, name)
			assert.Equal(t, "invalid view metadata\n", body, name)
			calls, _, _ := e.dec.snapshot()
			assert.Empty(t, calls, name)
		}
	})
	t.Run("another app's view", func(t *testing.T) {
		e := newEnv(t, 1, false)
		rec := e.serve(signedRequest(testSecret, e.clock.Now(), formBody(submissionPayload(t, "U0ALICE", "someone_elses", meta(t, contract.DecisionDeny), "x"))))
		assert.Equal(t, http.StatusBadRequest, rec.Code)
		assert.Equal(t, "unknown view\n", rec.Body.String())
	})
	t.Run("not signed with our secret", func(t *testing.T) {
		e := newEnv(t, 1, false)
		rec := e.serve(signedRequest("not-the-secret", e.clock.Now(), formBody(submissionPayload(t, "U0ALICE", CallbackReason, meta(t, contract.DecisionDeny), "x"))))
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
		calls, _, _ := e.dec.snapshot()
		assert.Empty(t, calls)
	})
	t.Run("replayed submission", func(t *testing.T) {
		e := newEnv(t, 1, false)
		req := func() *http.Request {
			return signedRequest(testSecret, e.clock.Now(), formBody(submissionPayload(t, "U0ALICE", CallbackReason, meta(t, contract.DecisionDeny), "x")))
		}
		assert.Equal(t, http.StatusOK, e.serve(req()).Code)
		rec := e.serve(req())
		assert.Equal(t, http.StatusConflict, rec.Code)
		calls, _, _ := e.dec.snapshot()
		assert.Len(t, calls, 1, "a replay decides nothing")
	})
	t.Run("the workflow refuses: shown in the modal", func(t *testing.T) {
		e := newEnv(t, 1, false)
		e.dec.answerNext(refused("U0MALLORY is not an approver of agent ops-bot"))
		code, body := e.submit(t, "U0MALLORY", meta(t, contract.DecisionDeny), "I just don't like it")
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "Refused: U0MALLORY is not an approver of agent ops-bot", viewError(t, body))
		_, accepted, _ := e.dec.snapshot()
		assert.Empty(t, accepted)
	})
	t.Run("the workflow is unreachable: try again", func(t *testing.T) {
		e := newEnv(t, 1, false)
		e.dec.err = errUnavailable
		code, body := e.submit(t, "U0ALICE", meta(t, contract.DecisionDeny), "x")
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "Could not record the decision; try again.", viewError(t, body))
		assert.NotContains(t, body, "10.0.0.7", "the outage's details stay in the logs")
	})
	t.Run("reason button without a bot token", func(t *testing.T) {
		e := newEnv(t, 1, false)
		rec := e.click(t, reasonClick(t, "U0ALICE", contract.DecisionDeny, nil))
		assert.Equal(t, http.StatusBadRequest, rec.Code)
		assert.Equal(t, "reasons not enabled here (no Slack bot token)\n", rec.Body.String())
	})
	t.Run("reason button whose value is for another decision", func(t *testing.T) {
		e := newEnv(t, 1, true)
		rec := e.click(t, clickSpec{User: "U0ALICE", ActionID: ActionDenyWithReason, Value: approveValue})
		assert.Equal(t, http.StatusBadRequest, rec.Code)
		assert.Equal(t, "invalid button value\n", rec.Body.String())
		for _, c := range e.slack.received() {
			assert.NotEqual(t, "views.open", c.Method, "no modal for a forged button")
		}
	})
	t.Run("Slack cannot open the modal", func(t *testing.T) {
		e := newEnv(t, 1, true)
		e.slack.mu.Lock()
		e.slack.fail = "expired_trigger_id"
		e.slack.mu.Unlock()
		rec := e.click(t, reasonClick(t, "U0ALICE", contract.DecisionDeny, nil))
		assert.Equal(t, http.StatusBadGateway, rec.Code)
		assert.Equal(t, "could not ask for a reason; try again\n", rec.Body.String())
		assert.NotContains(t, e.logs.String(), testToken)
	})
}

func TestReasonMetadataRoundTrip(t *testing.T) {
	m := ReasonMetadata{Ref: MessageRef{Channel: "C0APPROVE", TS: "1700000000.000001"},
		Value: ButtonValue{WorkflowID: "cycle/ops|bot/c-1", ActionIndex: 3, ActionHash: testHash, Kind: contract.DecisionStop}}
	s, err := m.Encode()
	require.NoError(t, err)
	got, err := ParseReasonMetadata(s)
	require.NoError(t, err)
	assert.Equal(t, m, got, "a workflow id with '|' survives")

	for name, bad := range map[string]ReasonMetadata{
		"approve":         {Value: ButtonValue{WorkflowID: testWF, ActionHash: testHash, Kind: contract.DecisionApprove}},
		"bar in channel":  {Ref: MessageRef{Channel: "C|1"}, Value: ButtonValue{WorkflowID: testWF, ActionHash: testHash, Kind: contract.DecisionDeny}},
		"control in ts":   {Ref: MessageRef{TS: "1\n2"}, Value: ButtonValue{WorkflowID: testWF, ActionHash: testHash, Kind: contract.DecisionDeny}},
		"too long for it": {Value: ButtonValue{WorkflowID: strings.Repeat("w", MaxButtonValue-80), ActionHash: testHash, Kind: contract.DecisionDeny}, Ref: MessageRef{Channel: strings.Repeat("C", 1500)}},
	} {
		_, err := bad.Encode()
		assert.ErrorIs(t, err, ErrBadButtonValue, name)
	}
}
