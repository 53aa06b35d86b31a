package approval

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// withReasons gives the cycle's handler a Notifier on a fake Slack, so the
// "… with reason" buttons can open their modal.
func (c *cycleEnv) withReasons(t *testing.T) *recordingSlack {
	t.Helper()
	rs := newRecordingSlack(t)
	h, err := NewHandler(HandlerConfig{SigningSecret: testSecret, Decider: c.dec, Notifier: newTestNotifier(t, rs), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	c.h = h
	return rs
}

// reasonAt, at workflow time at, has user press "<kind> with reason" on
// the message for action index, then submit the modal with reason. It
// returns the handler's answers to the click and to the submission.
func (c *cycleEnv) reasonAt(t *testing.T, rs *recordingSlack, at time.Duration, index int, user string, kind contract.DecisionKind, reason string) (<-chan *httptest.ResponseRecorder, <-chan *httptest.ResponseRecorder) {
	clicked := make(chan *httptest.ResponseRecorder, 1)
	submitted := make(chan *httptest.ResponseRecorder, 1)
	c.env.RegisterDelayedCallback(func() {
		n, ok := c.notice(index)
		require.True(t, ok, "no message was posted for action %d", index)
		spec := clickSpec{User: user, ActionID: ReasonActionID(kind), Value: buttonOf(t, n, ReasonActionID(kind)), Pending: &n.Pending}
		rec := httptest.NewRecorder()
		c.h.ServeHTTP(rec, signedRequest(testSecret, time.Now(), formBody(clickPayload(t, spec))))
		clicked <- rec // opening the modal needs nothing from the workflow
		if rec.Code != http.StatusOK {
			close(submitted)
			return
		}
		_, view := openedView(t, rs)
		body := formBody(submissionPayload(t, user, view.CallbackID, view.PrivateMetadata, reason))
		req := signedRequest(testSecret, time.Now(), body)
		served := make(chan struct{})
		go func() {
			defer close(served)
			rec := httptest.NewRecorder()
			c.h.ServeHTTP(rec, req)
			submitted <- rec
		}()
		select {
		case <-c.dec.queued:
		case <-served:
		}
	}, at)
	return clicked, submitted
}

func TestHandlerOnTheCycleDeniesWithReason(t *testing.T) {
	c := newCycleEnv(t)
	rs := c.withReasons(t)
	const why = "Replicas are not the problem: the DB connection pool is exhausted."

	strangerClick, stranger := c.reasonAt(t, rs, 1*time.Minute, 0, "U0MALLORY", contract.DecisionDeny, "no")
	c.pendingAt(t, 90*time.Second, func(pending []contract.PendingAction) {
		require.Len(t, pending, 1, "a stranger's submission changes nothing")
	})
	aliceClick, alice := c.reasonAt(t, rs, 2*time.Minute, 0, "U0ALICE", contract.DecisionDeny, why)

	res := c.run(t, policy.Proposal{Type: "scale-deployment", Params: map[string]any{"replicas": 5}})

	code, text := answerOf(t, strangerClick)
	assert.Equal(t, http.StatusOK, code, "anyone may open the modal: the workflow decides on submission")
	assert.Equal(t, "reason asked\n", text)
	code, text = answerOf(t, stranger)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "Refused: U0MALLORY is not an approver of agent ops-bot", viewError(t, text), "the validator's reason, shown in the modal")
	code, _ = answerOf(t, aliceClick)
	assert.Equal(t, http.StatusOK, code)
	code, text = answerOf(t, alice)
	assert.Equal(t, http.StatusOK, code)
	assert.Empty(t, text, "accepted: the modal closes")

	// The agent gets the reason with the denial, and the audit trail keeps it.
	require.Len(t, res.Actions, 1)
	a := res.Actions[0]
	assert.Equal(t, contract.OutcomeDenied, a.Outcome)
	assert.False(t, c.wasStaged(0), "nothing was staged")
	require.Len(t, a.Decisions, 1, "only the approver's submission is recorded")
	assert.Equal(t, "U0ALICE", a.Decisions[0].Approver)
	assert.Equal(t, contract.DecisionDeny, a.Decisions[0].Kind)
	assert.Equal(t, "slack", a.Decisions[0].Via)
	assert.Equal(t, why, a.Decisions[0].Comment)
	var audited []any
	for _, e := range res.Audit {
		if e.Kind == contract.AuditDecision {
			audited = append(audited, e.Data["comment"])
		}
	}
	assert.Equal(t, []any{why}, audited)
	assert.Nil(t, contract.VerifyAudit(res.Audit), "the comment is inside the hash chain")
}
