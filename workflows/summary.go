package workflows

import (
	"fmt"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Summaries are what the Temporal UI shows for each step of a cycle's
// timeline instead of bare activity and timer names. They are user
// metadata on commands: they go through the payload codec like any payload,
// and replay does not compare them, so changing one needs no version.
// Keep them short and free of anything secret (types and indexes only).

// actionSummary names a step on one action: "stage scale-deployment #1".
func actionSummary(verb string, act policy.RenderedAction) string {
	return fmt.Sprintf("%s %s #%d", verb, act.Type, act.Index)
}

// windowSummary names a human wait: "approval window, action 1".
func windowSummary(notice contract.NoticeMode, index int) string {
	what := "approval"
	switch notice {
	case contract.NoticeVeto:
		what = "veto"
	case contract.NoticeShadow:
		what = "feedback"
	}
	return fmt.Sprintf("%s window, action %d", what, index)
}

// noticeSummary names a Slack message step from its argument.
func noticeSummary(name string, arg any) string {
	switch n := arg.(type) {
	case contract.Notice:
		return fmt.Sprintf("post %s message, action %d", n.Mode, n.Pending.Action.Index)
	case contract.NoticeUpdate:
		return fmt.Sprintf("update message, action %d: %s", n.Index, n.Status)
	}
	return name
}
