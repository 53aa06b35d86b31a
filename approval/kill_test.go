package approval

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
)

// fakeKiller answers like the Agent workflow's kill validator: only the
// agent's approvers may kill it.
type fakeKiller struct {
	mu        sync.Mutex
	approvers []string
	kills     []contract.KillRequest
	agents    []string
}

func (f *fakeKiller) KillAgent(_ context.Context, agentID string, req contract.KillRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.approvers {
		if a == req.By {
			f.kills = append(f.kills, req)
			f.agents = append(f.agents, agentID)
			return nil
		}
	}
	return refusedError{reason: req.By + " is not an approver of agent " + agentID}
}

func killClick(t *testing.T, user string) clickSpec {
	v, err := KillButtonValue{AgentID: "ops-bot", WorkflowID: testWF}.Encode()
	require.NoError(t, err)
	return clickSpec{User: user, ActionID: ActionKillAgent, Value: v}
}

func TestHandlerKillAgentButton(t *testing.T) {
	killer := &fakeKiller{approvers: []string{"U0ALICE"}}
	e := newEnv(t, 1, true, func(c *HandlerConfig) { c.Killer = killer })

	// Unsigned: nothing happens.
	body := formBody(clickPayload(t, killClick(t, "U0ALICE")))
	rec := e.serve(signedRequest("wrong-secret", e.clock.Now(), body))
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Empty(t, killer.kills)

	// Not an approver of the agent: refused, told why, nothing killed.
	rec = e.click(t, killClick(t, "U0MALLORY"))
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Contains(t, rec.Body.String(), "U0MALLORY is not an approver of agent ops-bot")
	assert.Empty(t, killer.kills)

	// An approver: the agent is killed, by the clicking user, via Slack.
	rec = e.click(t, killClick(t, "U0ALICE"))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "agent killed\n", rec.Body.String())
	require.Len(t, killer.kills, 1)
	assert.Equal(t, []string{"ops-bot"}, killer.agents)
	assert.Equal(t, "U0ALICE", killer.kills[0].By)
	assert.Equal(t, "slack", killer.kills[0].Via)
	assert.Contains(t, killer.kills[0].Reason, testWF)
	e.h.Wait()
	got := e.slack.received()
	require.NotEmpty(t, got)
	assert.Equal(t, "chat.postEphemeral", got[len(got)-1].Method)
	assert.Contains(t, got[len(got)-1].Form.Get("text"), "is killed")
	calls, _, _ := e.dec.snapshot()
	assert.Empty(t, calls, "a kill is not a decision on the action")

	// A kill button value cannot carry a decision, nor the reverse.
	bad := killClick(t, "U0ALICE")
	bad.ActionID = ActionApprove
	assert.Equal(t, http.StatusBadRequest, e.click(t, bad).Code)
	bad = approveBy(t, "U0ALICE", "1700000000.000200")
	bad.ActionID = ActionKillAgent
	assert.Equal(t, http.StatusBadRequest, e.click(t, bad).Code)
}

func TestHandlerKillButtonWithoutKiller(t *testing.T) {
	e := newEnv(t, 1, false)
	rec := e.click(t, killClick(t, "U0ALICE"))
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Contains(t, rec.Body.String(), "kill switch not enabled here")
}

func TestKillButtonValueRoundTrip(t *testing.T) {
	v := KillButtonValue{AgentID: "ops-bot", WorkflowID: "cycle/ops-bot/a|b"}
	s, err := v.Encode()
	require.NoError(t, err)
	got, err := ParseKillButtonValue(s)
	require.NoError(t, err)
	assert.Equal(t, v, got)
	for _, bad := range []string{"", "k1|ops-bot", "a1|ops-bot|wf", "k1||wf", "k1|ops-bot|", "k1|ops\x00bot|wf"} {
		_, err := ParseKillButtonValue(bad)
		assert.ErrorIs(t, err, ErrBadButtonValue, "%q", bad)
	}
}
