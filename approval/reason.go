package approval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/airlockhq/airlock/contract"
)

// The reason modal: "Deny with reason" and "Stop with reason" open it, its
// submission (a view_submission interaction, verified like a click) makes
// the decision with the reason as its comment, which reaches the agent in
// the action's decisions and the audit trail.
const (
	// CallbackReason is the modal's callback_id.
	CallbackReason = "airlock_reason"
	// blockReason and actionReasonText name the modal's text input.
	blockReason      = "airlock_reason"
	actionReasonText = "airlock_reason_text"
)

// MaxComment is the longest reason accepted, in characters (the modal's
// max_length; the handler checks it again).
const MaxComment = 2000

// ReasonModal renders the modal that asks why before denying or stopping
// the action of m. Slack's own limits: title ≤ 24 characters.
func ReasonModal(m ReasonMetadata) (slack.ModalViewRequest, error) {
	meta, err := m.Encode()
	if err != nil {
		return slack.ModalViewRequest{}, fmt.Errorf("reason modal: %w", err)
	}
	verb := "Deny"
	effect := "The action will not run; the agent receives your reason with the denial and it is kept in the cycle's audit trail."
	if m.Value.Kind == contract.DecisionStop {
		verb = "Stop"
		effect = "The action will not run; the agent receives your reason with the veto and it is kept in the cycle's audit trail."
	}
	input := slack.NewPlainTextInputBlockElement(plain("Why? The agent reads this."), actionReasonText)
	input.Multiline = true
	input.MaxLength = MaxComment
	input.FocusOnLoad = true
	return slack.ModalViewRequest{
		Type:   slack.VTModal,
		Title:  plain(verb + " with reason"),
		Submit: plain(verb),
		Close:  plain("Cancel"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewSectionBlock(mrkdwn(clipRaw(fmt.Sprintf("%s action #%d of %s.\n%s",
				verb, m.Value.ActionIndex, code(m.Value.WorkflowID, maxSectionText-400), effect), maxSectionText)), nil, nil),
			slack.NewInputBlock(blockReason, plain("Reason"), nil, input),
		}},
		PrivateMetadata: meta,
		CallbackID:      CallbackReason,
	}, nil
}

// reasonOf reads the reason typed into a submitted modal: trimmed, valid
// UTF-8, 1 to MaxComment characters. It returns what to tell the user when
// the reason cannot be accepted.
func reasonOf(state *slack.ViewState) (string, string) {
	var raw string
	if state != nil {
		raw = state.Values[blockReason][actionReasonText].Value
	}
	reason := strings.TrimSpace(raw)
	switch {
	case reason == "":
		return "", "Please give a reason: the agent reads it."
	case !utf8.ValidString(reason):
		return "", "The reason is not valid text."
	case utf8.RuneCountInString(reason) > MaxComment:
		return "", fmt.Sprintf("Please keep the reason under %d characters.", MaxComment)
	}
	return reason, ""
}

// OpenReasonModal opens the reason modal for the user whose click produced
// triggerID (valid for 3 s). It needs no more than the bot token's
// chat:write scope.
func (n *Notifier) OpenReasonModal(ctx context.Context, triggerID string, m ReasonMetadata) error {
	if triggerID == "" {
		return errors.New("open reason modal: no trigger id")
	}
	view, err := ReasonModal(m)
	if err != nil {
		return err
	}
	if _, err := n.api.OpenViewContext(ctx, triggerID, view); err != nil {
		return n.wrap("open reason modal", err)
	}
	return nil
}
