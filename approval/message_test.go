package approval

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
)

func buttons(blocks []slack.Block) []*slack.ButtonBlockElement {
	var out []*slack.ButtonBlockElement
	for _, b := range blocks {
		if ab, ok := b.(*slack.ActionBlock); ok {
			for _, e := range ab.Elements.ElementSet {
				if btn, ok := e.(*slack.ButtonBlockElement); ok {
					out = append(out, btn)
				}
			}
		}
	}
	return out
}

// allText joins every text a reader sees in blocks.
func allText(t testing.TB, blocks []slack.Block) string {
	t.Helper()
	raw, err := json.Marshal(blocks)
	require.NoError(t, err)
	return slackCall{Form: map[string][]string{"blocks": {string(raw)}}}.texts(t)
}

// mrkdwnText joins the texts Slack parses as mrkdwn (plain_text shows
// "<@U1>" literally, so only mrkdwn can mention or link).
func mrkdwnText(t testing.TB, blocks []slack.Block) string {
	t.Helper()
	raw, err := json.Marshal(blocks)
	require.NoError(t, err)
	var v any
	require.NoError(t, json.Unmarshal(raw, &v))
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			if x["type"] == "mrkdwn" {
				b.WriteString(x["text"].(string) + "\n")
			}
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return b.String()
}

// checkLimits asserts Slack's size limits on everything rendered.
func checkLimits(t *testing.T, blocks []slack.Block) {
	t.Helper()
	require.LessOrEqual(t, len(blocks), 50)
	for _, b := range blocks {
		switch x := b.(type) {
		case *slack.HeaderBlock:
			assert.LessOrEqual(t, len(x.Text.Text), 150)
		case *slack.SectionBlock:
			if x.Text != nil {
				assert.LessOrEqual(t, len(x.Text.Text), 3000)
				assert.True(t, utf8.ValidString(x.Text.Text))
			}
			assert.LessOrEqual(t, len(x.Fields), 10)
			for _, f := range x.Fields {
				assert.LessOrEqual(t, len(f.Text), 2000)
			}
		case *slack.ContextBlock:
			for _, e := range x.ContextElements.Elements {
				if tx, ok := e.(*slack.TextBlockObject); ok {
					assert.LessOrEqual(t, len(tx.Text), 2000)
					assert.True(t, utf8.ValidString(tx.Text))
				}
			}
		case *slack.ActionBlock:
			for _, btn := range buttons([]slack.Block{x}) {
				assert.LessOrEqual(t, len(btn.Value), MaxButtonValue)
				assert.LessOrEqual(t, len(btn.ActionID), 255)
				if btn.Confirm != nil {
					assert.LessOrEqual(t, len(btn.Confirm.Title.Text), 100)
					assert.LessOrEqual(t, len(btn.Confirm.Text.Text), 300)
				}
			}
		}
	}
}

func TestMessageButtonsPerMode(t *testing.T) {
	type want struct {
		actionID string
		style    slack.Style
		confirm  bool
	}
	tests := map[string]struct {
		mode    contract.NoticeMode
		needed  int
		buttons []want
		says    []string
	}{
		"advisory approval": {
			mode: contract.NoticeApproval, needed: 1,
			buttons: []want{{ActionApprove, slack.StylePrimary, true}, {ActionDeny, slack.StyleDanger, true}, {ActionDenyWithReason, slack.StyleDefault, false}},
			says:    []string{"Approval needed: scale-deployment", "Needs 1 approver: 0 of 1", "No decision by then means *denied*", "ops-bot", "advisory", "high"},
		},
		"critical approval": {
			mode: contract.NoticeApproval, needed: 2,
			buttons: []want{{ActionApprove, slack.StylePrimary, true}, {ActionDeny, slack.StyleDanger, true}, {ActionDenyWithReason, slack.StyleDefault, false}},
			says:    []string{"Needs 2 distinct approvers: 0 of 2", "Approvers: <@U0ALICE>, <@U0BOB>, <@U0CAROL>"},
		},
		"supervised veto": {
			mode:    contract.NoticeVeto,
			buttons: []want{{ActionStop, slack.StyleDanger, true}, {ActionStopWithReason, slack.StyleDefault, false}},
			says:    []string{"unless stopped", "<!date^1893596645^"},
		},
		"shadow feedback": {
			mode:    contract.NoticeShadow,
			buttons: []want{{ActionAgree, slack.StyleDefault, false}, {ActionDisagree, slack.StyleDefault, false}},
			says:    []string{"Shadow, would do: scale-deployment", "only records feedback", "never makes anything run"},
		},
		"autonomous done": {
			mode: contract.NoticeDone,
			says: []string{"Ran: scale-deployment", "notified after"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := testPending(tc.needed)
			blocks, err := Message(p, tc.mode)
			require.NoError(t, err)
			checkLimits(t, blocks)

			got := buttons(blocks)
			if tc.mode != contract.NoticeShadow {
				// Every message about an action that runs carries the kill switch, last.
				require.Len(t, got, len(tc.buttons)+1)
				kill := got[len(got)-1]
				assert.Equal(t, ActionKillAgent, kill.ActionID)
				assert.Equal(t, slack.StyleDanger, kill.Style)
				require.NotNil(t, kill.Confirm, "a confirm dialog guards the kill switch")
				assert.Contains(t, kill.Confirm.Text.Text, "credentials revoked")
				v, err := ParseKillButtonValue(kill.Value)
				require.NoError(t, err)
				assert.Equal(t, KillButtonValue{AgentID: "ops-bot", WorkflowID: testWF}, v)
				got = got[:len(got)-1]
			}
			require.Len(t, got, len(tc.buttons))
			for i, w := range tc.buttons {
				assert.Equal(t, w.actionID, got[i].ActionID)
				assert.Equal(t, w.style, got[i].Style)
				assert.Equal(t, w.confirm, got[i].Confirm != nil, "confirm dialog on %s", w.actionID)
				v, err := ParseButtonValue(got[i].Value)
				require.NoError(t, err)
				kind, ok := actionKinds[w.actionID]
				if !ok {
					kind = reasonKinds[w.actionID] // a modal asks why, then decides this
				}
				assert.Equal(t, ButtonValue{WorkflowID: testWF, ActionIndex: 0, ActionHash: testHash, Kind: kind}, v)
			}
			text := allText(t, blocks)
			for _, s := range tc.says {
				assert.Contains(t, text, s)
			}
		})
	}

	_, err := Message(testPending(1), "bogus")
	assert.Error(t, err)
}

func TestMessageSummary(t *testing.T) {
	p := testPending(2)
	p.ApprovedBy = []string{"U0ALICE"}
	blocks, err := Message(p, contract.NoticeApproval)
	require.NoError(t, err)
	text := allText(t, blocks)

	assert.Contains(t, text, "Needs 2 distinct approvers: 1 of 2 (<@U0ALICE>)")
	assert.Contains(t, text, "\"deployment\": \"web\"")
	assert.Contains(t, text, "p99 latency is above the SLO")
	assert.Contains(t, text, "first 3 of 4 steps")
	assert.Contains(t, text, "1. Latency p99 is 820ms, SLO is 300ms. _(confidence 91%)_")
	assert.Contains(t, text, "3. Scaling to 5 should halve per-pod load. _(confidence 70%)_")
	assert.NotContains(t, text, "Will re-check", "only the first 3 thoughts")
	assert.Contains(t, text, "cannot approve their own request")
}

func TestMessageTruncatesAndEscapesAgentText(t *testing.T) {
	p := testPending(1)
	long := strings.Repeat("é∑𝄞", 3000) // multi-byte runes, 27 KB
	p.Action.Params = map[string]any{"script": long, "fence": "``` <!channel> ```"}
	p.Action.Rationale = "<!channel> please approve <@U0EVE> <https://evil.example|docs> & " + long
	p.Thoughts[0].Content = strings.Repeat("think ", 500) + "<!here>"
	p.AgentID = "bot`<@U0EVE>`"

	blocks, err := Message(p, contract.NoticeApproval)
	require.NoError(t, err)
	checkLimits(t, blocks)
	text := allText(t, blocks)

	md := mrkdwnText(t, blocks)
	require.Contains(t, md, "*Rationale*")
	for _, forbidden := range []string{"<!channel>", "<!here>", "<@U0EVE>", "<https://evil.example"} {
		assert.NotContains(t, md, forbidden, "agent text must not mention or link")
	}
	assert.Contains(t, text, "&lt;!channel&gt;")
	assert.Contains(t, text, "parameters truncated")

	var params string
	for _, b := range blocks {
		if b.ID() == blockParams {
			params = b.(*slack.SectionBlock).Text.Text
		}
	}
	require.NotEmpty(t, params)
	assert.True(t, strings.HasPrefix(params, "*Parameters*\n```\n"))
	assert.True(t, strings.HasSuffix(params, "…\n```"), "cut visibly, inside the code block")
	inner := strings.TrimSuffix(strings.TrimPrefix(params, "*Parameters*\n```\n"), "\n```")
	assert.NotContains(t, inner, "``", "agent text cannot close the code block")
	assert.True(t, utf8.ValidString(inner))

	// Buttons are unaffected by long text.
	assert.Len(t, buttons(blocks), 4)
}

func TestButtonValueRoundTrip(t *testing.T) {
	valid := map[string]ButtonValue{
		"approve":                  {WorkflowID: testWF, ActionIndex: 0, ActionHash: testHash, Kind: contract.DecisionApprove},
		"deny, index 12":           {WorkflowID: testWF, ActionIndex: 12, ActionHash: "abc", Kind: contract.DecisionDeny},
		"stop":                     {WorkflowID: testWF, ActionIndex: 3, ActionHash: "h", Kind: contract.DecisionStop},
		"agree":                    {WorkflowID: testWF, ActionIndex: 1, ActionHash: "h", Kind: contract.DecisionAgree},
		"disagree":                 {WorkflowID: testWF, ActionIndex: 1, ActionHash: "h", Kind: contract.DecisionDisagree},
		"workflow id with | and ü": {WorkflowID: "cycle/a|b/ü-1|2", ActionIndex: 7, ActionHash: "sha256:ff", Kind: contract.DecisionApprove},
		"longest workflow id":      {WorkflowID: "cycle/" + strings.Repeat("x", MaxButtonValue-len("a1|approve|0|h|cycle/")), ActionIndex: 0, ActionHash: "h", Kind: contract.DecisionApprove},
	}
	for name, v := range valid {
		t.Run(name, func(t *testing.T) {
			s, err := v.Encode()
			require.NoError(t, err)
			assert.LessOrEqual(t, len(s), MaxButtonValue)
			got, err := ParseButtonValue(s)
			require.NoError(t, err)
			assert.Equal(t, v, got)
			again, err := got.Encode()
			require.NoError(t, err)
			assert.Equal(t, s, again)
		})
	}

	unencodable := map[string]ButtonValue{
		"unknown kind":      {WorkflowID: testWF, ActionHash: "h", Kind: "launch"},
		"negative index":    {WorkflowID: testWF, ActionIndex: -1, ActionHash: "h", Kind: contract.DecisionApprove},
		"empty hash":        {WorkflowID: testWF, Kind: contract.DecisionApprove},
		"hash with |":       {WorkflowID: testWF, ActionHash: "a|b", Kind: contract.DecisionApprove},
		"empty workflow":    {ActionHash: "h", Kind: contract.DecisionApprove},
		"newline in wf":     {WorkflowID: "a\nb", ActionHash: "h", Kind: contract.DecisionApprove},
		"too long workflow": {WorkflowID: strings.Repeat("x", MaxButtonValue), ActionHash: "h", Kind: contract.DecisionApprove},
	}
	for name, v := range unencodable {
		t.Run("encode "+name, func(t *testing.T) {
			_, err := v.Encode()
			assert.ErrorIs(t, err, ErrBadButtonValue)
		})
	}

	bad := map[string]string{
		"empty":             "",
		"json":              `{"w":"x"}`,
		"wrong version":     "a2|approve|0|h|" + testWF,
		"too few parts":     "a1|approve|0|h",
		"unknown kind":      "a1|launch|0|h|" + testWF,
		"non-canonical idx": "a1|approve|01|h|" + testWF,
		"plus idx":          "a1|approve|+1|h|" + testWF,
		"negative idx":      "a1|approve|-1|h|" + testWF,
		"idx not a number":  "a1|approve|x|h|" + testWF,
		"empty hash":        "a1|approve|0||" + testWF,
		"empty workflow":    "a1|approve|0|h|",
		"too long":          "a1|approve|0|h|" + strings.Repeat("x", MaxButtonValue),
	}
	for name, s := range bad {
		t.Run("parse "+name, func(t *testing.T) {
			_, err := ParseButtonValue(s)
			assert.ErrorIs(t, err, ErrBadButtonValue)
		})
	}
}

func TestOutcomeMessage(t *testing.T) {
	at := time.Date(2030, 1, 2, 15, 0, 0, 0, time.UTC)
	posted, err := Message(testPending(2), contract.NoticeApproval)
	require.NoError(t, err)

	tests := map[string]struct {
		o       Outcome
		says    []string
		buttons int
	}{
		"approved by two": {
			o:    Outcome{Status: StatusApproved, By: []string{"U0ALICE", "U0BOB"}, At: at},
			says: []string{"*Approved* by <@U0ALICE>, <@U0BOB> at <!date^1893596400^{date_short_pretty} at {time_secs}|2030-01-02 15:00:00 UTC>"},
		},
		"denied": {
			o:    Outcome{Status: StatusDenied, By: []string{"U0BOB"}, At: at},
			says: []string{"*Denied* by <@U0BOB> at <!date^1893596400^", "it will not run"},
		},
		"expired": {
			o:    Outcome{Status: StatusExpired, At: at},
			says: []string{"*Expired* at", "(timeout = denial): nothing ran"},
		},
		"stopped": {
			o:    Outcome{Status: StatusStopped, By: []string{"U0CAROL"}, At: at},
			says: []string{"*Stopped* by <@U0CAROL> at"},
		},
		"feedback": {
			o:    Outcome{Status: StatusRecorded, Kind: contract.DecisionDisagree, By: []string{"U0CAROL"}, At: at},
			says: []string{"*Feedback recorded* (<@U0CAROL> disagreed)", "feedback only, nothing ran"},
		},
		"cli principal is escaped": {
			o:    Outcome{Status: StatusDenied, By: []string{"<!channel>"}},
			says: []string{"*Denied* by &lt;!channel&gt;"},
		},
		"waiting keeps the buttons": {
			o:       Outcome{Status: StatusWaiting, By: []string{"U0ALICE"}},
			says:    []string{"approved so far by <@U0ALICE> (1 of 2)"},
			buttons: 4, // Approve, Deny, Deny with reason, Kill agent
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.o.Summary = posted
			blocks := OutcomeMessage(tc.o)
			checkLimits(t, blocks)
			text := allText(t, blocks)
			for _, s := range tc.says {
				assert.Contains(t, text, s)
			}
			assert.Len(t, buttons(blocks), tc.buttons)
			assert.Contains(t, text, "scale-deployment", "summary kept")
			assert.NotContains(t, text, "<!channel>")
			if tc.buttons == 0 {
				assert.NotContains(t, text, "Needs 2 distinct approvers", "the pending-state lines go")
				assert.Equal(t, blockOutcome, blocks[len(blocks)-1].ID())
			}
		})
	}

	t.Run("waiting twice replaces the progress line", func(t *testing.T) {
		first := OutcomeMessage(Outcome{Status: StatusWaiting, By: []string{"U0ALICE"}, Summary: posted})
		second := OutcomeMessage(Outcome{Status: StatusWaiting, By: []string{"U0ALICE", "U0BOB"}, Summary: first})
		text := allText(t, second)
		assert.Contains(t, text, "(2 of 2)")
		assert.NotContains(t, text, "(1 of 2)")
		assert.Len(t, second, len(first))
	})

	t.Run("without summary", func(t *testing.T) {
		text := allText(t, OutcomeMessage(Outcome{WorkflowID: testWF, ActionIndex: 2, Status: StatusApproved, By: []string{"U0ALICE"}}))
		assert.Contains(t, text, "Action #2 of `"+testWF+"`")
		assert.Contains(t, text, "*Approved* by <@U0ALICE>")
	})

	t.Run("from the pending action", func(t *testing.T) {
		p := testPending(1)
		text := allText(t, OutcomeMessage(Outcome{Status: StatusStopped, Pending: &p, Mode: contract.NoticeVeto, By: []string{"U0BOB"}}))
		assert.Contains(t, text, "Supervised: scale-deployment")
		assert.Contains(t, text, "*Stopped* by <@U0BOB>")
	})
}
