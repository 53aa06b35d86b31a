// Package approval connects humans in Slack to actions waiting in Airlock
// workflows: it renders Block Kit messages for pending actions, posts and
// edits them through the Web API (Notifier), and serves Slack's signed
// interaction requests (Handler), turning a verified click into a
// contract.Decision for the workflow's Update validator to accept or refuse.
//
// Everything an agent wrote (rationale, thoughts, parameters) is untrusted
// text: it is escaped so it cannot mention users or channels, forge links or
// break out of code blocks, and truncated to Slack's limits.
package approval

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Block ids let an update find the parts of a posted message again.
const (
	blockHeader    = "airlock_header"
	blockFacts     = "airlock_facts"
	blockParams    = "airlock_params"
	blockRationale = "airlock_rationale"
	blockThoughts  = "airlock_thoughts"
	blockNote      = "airlock_note"
	blockProgress  = "airlock_progress" // + ":<needed>"
	blockActions   = "airlock_actions"
	blockOutcome   = "airlock_outcome"
)

// Slack's limits (in characters; we count bytes, which is never less).
const (
	maxHeader      = 150
	maxSectionText = 3000
	maxField       = 2000
	maxContextText = 2000
	maxParams      = 2800
	maxRationale   = 1500
	maxThought     = 200
	shownThoughts  = 3
)

// Message renders the Block Kit message for a pending action:
//   - NoticeApproval: approval request with Approve / Deny (each behind a
//     confirm dialog), "Deny with reason" (a modal) and how many distinct
//     approvals are still needed;
//   - NoticeVeto: supervised action inside bounds that runs at the deadline
//     unless someone presses Stop (or "Stop with reason");
//   - NoticeShadow: "would do" summary with Agree / Disagree, feedback only;
//   - NoticeDone: autonomous action that ran, no buttons.
func Message(p contract.PendingAction, mode contract.NoticeMode) ([]slack.Block, error) {
	a := p.Action
	var title string
	switch mode {
	case contract.NoticeApproval:
		title = "Approval needed: " + a.Type
	case contract.NoticeVeto:
		title = "Runs unless stopped: " + a.Type
	case contract.NoticeShadow:
		title = "Shadow, would do: " + a.Type
	case contract.NoticeDone:
		title = "Ran: " + a.Type
	default:
		return nil, fmt.Errorf("message: unknown mode %q", mode)
	}
	blocks := summary(p, title)

	var buttons []slack.BlockElement
	button := func(kind contract.DecisionKind, label string) (*slack.ButtonBlockElement, error) {
		value, err := ButtonValue{WorkflowID: p.WorkflowID, ActionIndex: a.Index, ActionHash: a.Hash, Kind: kind}.Encode()
		if err != nil {
			return nil, fmt.Errorf("message: %s button: %w", kind, err)
		}
		return slack.NewButtonBlockElement(ActionID(kind), value, plain(label)), nil
	}
	// withReason opens a modal asking why before deciding kind (no confirm
	// dialog: the modal is the confirmation).
	withReason := func(kind contract.DecisionKind, label string) (*slack.ButtonBlockElement, error) {
		b, err := button(kind, label)
		if err != nil {
			return nil, err
		}
		b.ActionID = ReasonActionID(kind)
		return b, nil
	}
	switch mode {
	case contract.NoticeApproval:
		blocks = append(blocks, progressBlock(p.Needed, p.ApprovedBy, p.Approvers, p.Principal),
			ctxBlock(blockNote, fmt.Sprintf(":hourglass: Expires %s. No decision by then means *denied*.", slackDate(p.Deadline))))
		approve, err := button(contract.DecisionApprove, "Approve")
		if err != nil {
			return nil, err
		}
		deny, err := button(contract.DecisionDeny, "Deny")
		if err != nil {
			return nil, err
		}
		approve.WithStyle(slack.StylePrimary).WithConfirm(confirm(
			"Approve "+a.Type+"?",
			fmt.Sprintf("Approves exactly the action shown (hash %s) for agent %s. It may run as soon as enough distinct approvers agree.", short(a.Hash), p.AgentID),
			"Approve", slack.StylePrimary))
		deny.WithStyle(slack.StyleDanger).WithConfirm(confirm(
			"Deny "+a.Type+"?",
			fmt.Sprintf("The action will not run and agent %s's cycle records the denial.", p.AgentID),
			"Deny", slack.StyleDanger))
		denyWhy, err := withReason(contract.DecisionDeny, "Deny with reason")
		if err != nil {
			return nil, err
		}
		buttons = append(buttons, approve, deny, denyWhy)
	case contract.NoticeVeto:
		blocks = append(blocks, ctxBlock(blockNote, fmt.Sprintf(
			":stopwatch: *Runs at %s unless stopped.* Supervised phase, inside bounds: no approval needed, but anyone allowed may veto.", slackDate(p.Deadline))))
		stop, err := button(contract.DecisionStop, "Stop")
		if err != nil {
			return nil, err
		}
		stop.WithStyle(slack.StyleDanger).WithConfirm(confirm(
			"Stop "+a.Type+"?",
			fmt.Sprintf("The action will not run and agent %s's cycle records the veto.", p.AgentID),
			"Stop it", slack.StyleDanger))
		stopWhy, err := withReason(contract.DecisionStop, "Stop with reason")
		if err != nil {
			return nil, err
		}
		buttons = append(buttons, stop, stopWhy)
	case contract.NoticeShadow:
		blocks = append(blocks, ctxBlock(blockNote,
			":memo: Shadow phase: this was recorded, never run. *Agree / Disagree only records feedback* for promotion evidence; it never makes anything run."))
		agree, err := button(contract.DecisionAgree, "Agree")
		if err != nil {
			return nil, err
		}
		disagree, err := button(contract.DecisionDisagree, "Disagree")
		if err != nil {
			return nil, err
		}
		buttons = append(buttons, agree, disagree)
	case contract.NoticeDone:
		blocks = append(blocks, ctxBlock(blockNote,
			":robot_face: Autonomous phase: this action ran without approval; you are notified after. Roll back or kill the agent with the airlock CLI."))
	}
	if mode != contract.NoticeShadow {
		// The kill switch, for the agent's approvers (the Agent workflow
		// refuses anyone else), on every message about an action that runs
		// or may run.
		value, err := KillButtonValue{AgentID: p.AgentID, WorkflowID: p.WorkflowID}.Encode()
		if err != nil {
			return nil, fmt.Errorf("message: kill button: %w", err)
		}
		kill := slack.NewButtonBlockElement(ActionKillAgent, value, plain("Kill agent"))
		kill.WithStyle(slack.StyleDanger).WithConfirm(confirm(
			"Kill agent "+p.AgentID+"?",
			fmt.Sprintf("Agent %s stops at once: new cycles are refused, running ones cancelled, its Jobs deleted and its credentials revoked. Bringing it back needs two approvers.", p.AgentID),
			"Kill it", slack.StyleDanger))
		buttons = append(buttons, kill)
	}
	if len(buttons) > 0 {
		blocks = append(blocks, slack.NewActionBlock(blockActions, buttons...))
	}
	return blocks, nil
}

// FallbackText is the plain notification text sent with a message's blocks
// (shown in notifications and by screen readers).
func FallbackText(p contract.PendingAction, mode contract.NoticeMode) string {
	a := p.Action
	agent, typ := escape(p.AgentID), escape(a.Type)
	switch mode {
	case contract.NoticeApproval:
		return fmt.Sprintf("Approval needed: agent %s wants to run %s (risk %s)", agent, typ, escape(string(a.Risk)))
	case contract.NoticeVeto:
		return fmt.Sprintf("Agent %s will run %s unless stopped", agent, typ)
	case contract.NoticeShadow:
		return fmt.Sprintf("Shadow: agent %s would run %s (feedback only)", agent, typ)
	default:
		return fmt.Sprintf("Agent %s ran %s", agent, typ)
	}
}

// summary renders what the action is: header, facts, parameters, rationale
// and the first thoughts. It never contains buttons.
func summary(p contract.PendingAction, title string) []slack.Block {
	a := p.Action
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain(clipPlain(title, maxHeader)), slack.HeaderBlockOptionBlockID(blockHeader)),
	}
	phase := string(a.Decision.Phase)
	if phase == "" {
		phase = "unknown"
	}
	fields := []*slack.TextBlockObject{
		mrkdwn("*Agent*\n" + code(p.AgentID, 200)),
		mrkdwn("*Phase*\n" + escape(phase)),
		mrkdwn(fmt.Sprintf("*Action*\n%s #%d (%s)", code(a.Type, 200), a.Index, escape(string(a.Class)))),
		mrkdwn("*Risk*\n" + riskBadge(a.Risk)),
	}
	if p.Principal != "" {
		fields = append(fields, mrkdwn("*Requested by*\n"+code(p.Principal, 200)))
	}
	fields = append(fields, mrkdwn("*Workflow*\n"+code(p.WorkflowID, maxField-20)))
	blocks = append(blocks, slack.NewSectionBlock(nil, fields, nil, slack.SectionBlockOptionBlockID(blockFacts)))

	params, total, cut := renderParams(a.Params)
	text := "*Parameters*\n```\n" + params + "\n```"
	blocks = append(blocks, slack.NewSectionBlock(mrkdwn(text), nil, nil, slack.SectionBlockOptionBlockID(blockParams)))
	run := fmt.Sprintf("Runs %s in a Job; action hash %s", code(a.Image, 300), code(short(a.Hash), 20))
	if a.Decision.Rule != "" {
		run += " · rule: " + clip(a.Decision.Rule, 300)
	}
	if cut {
		run += fmt.Sprintf(" · _parameters truncated (%d bytes); the full rendered action is in the Temporal UI_", total)
	}
	blocks = append(blocks, ctxBlock(blockParams+"_meta", run))

	if a.Rationale != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn("*Rationale*\n"+clip(oneParagraph(a.Rationale), maxRationale)), nil, nil,
			slack.SectionBlockOptionBlockID(blockRationale)))
	}
	if len(p.Thoughts) > 0 {
		var b strings.Builder
		n := min(len(p.Thoughts), shownThoughts)
		if n < len(p.Thoughts) {
			fmt.Fprintf(&b, "*Reasoning* (first %d of %d steps)", n, len(p.Thoughts))
		} else {
			b.WriteString("*Reasoning*")
		}
		for _, t := range p.Thoughts[:n] {
			fmt.Fprintf(&b, "\n%d. %s _(confidence %.0f%%)_", t.Step, clip(oneLine(t.Content), maxThought), t.Confidence*100)
		}
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(b.String()), nil, nil, slack.SectionBlockOptionBlockID(blockThoughts)))
	}
	return blocks
}

// progressBlock says how many distinct approvals are needed and who gave
// them. Its block id carries the number needed so an update can say "1 of 2"
// without the pending action at hand.
func progressBlock(needed int, approvedBy, approvers []string, principal string) slack.Block {
	if needed < 1 {
		needed = 1
	}
	noun := "approver"
	if needed > 1 {
		noun = "distinct approvers"
	}
	text := fmt.Sprintf(":busts_in_silhouette: Needs %d %s: %d of %d", needed, noun, len(approvedBy), needed)
	if len(approvedBy) > 0 {
		text += " (" + mentions(approvedBy) + ")"
	}
	if len(approvers) > 0 {
		text += " · Approvers: " + mentions(approvers)
	}
	if principal != "" {
		text += " · the requester cannot approve their own request"
	}
	return ctxBlock(blockProgress+":"+strconv.Itoa(needed), clipRaw(text, maxContextText))
}

// neededFrom reads the number of approvals needed back from a progress
// block id (0 if it is not one).
func neededFrom(blockID string) int {
	rest, ok := strings.CutPrefix(blockID, blockProgress+":")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// renderParams pretty-prints parameters as JSON (keys sorted, HTML left
// alone) for a code block, escaped and cut to fit a section. It reports the
// full size and whether it cut.
func renderParams(params map[string]any) (text string, total int, cut bool) {
	if len(params) == 0 {
		return "{}", 2, false
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(params); err != nil {
		return "(parameters cannot be shown: " + escape(err.Error()) + ")", 0, false
	}
	raw := strings.TrimRight(buf.String(), "\n")
	raw = breakBackticks(raw)
	text = clip(raw, maxParams)
	return text, len(raw), text != escape(raw)
}

var riskBadges = map[policy.Risk]string{
	policy.RiskLow:      ":large_green_circle: low",
	policy.RiskMedium:   ":large_yellow_circle: medium",
	policy.RiskHigh:     ":large_orange_circle: high",
	policy.RiskCritical: ":red_circle: *critical*",
}

func riskBadge(r policy.Risk) string {
	if b, ok := riskBadges[r]; ok {
		return b
	}
	return ":white_circle: " + clip(string(r), 50)
}

// Outcome is what became of an action, to replace its message's buttons.
type Outcome struct {
	WorkflowID  string
	ActionIndex int
	// Status is approved, denied, expired, stopped, recorded, waiting (more
	// approvers needed: the buttons stay), ran, succeeded or failed.
	Status string
	// Kind is the decision that led here (tells agree from disagree).
	Kind contract.DecisionKind
	// By are the deciders (Slack user ids or CLI principals).
	By []string
	// At is when it was decided. Default: not shown.
	At time.Time
	// Needed is the number of distinct approvals needed, for "1 of 2".
	Needed int
	// Detail is shown after the outcome (e.g. a failure reason).
	Detail string

	// The message keeps the action's summary above the outcome, taken from
	// Pending if set (with Mode), else from Summary (the blocks of the posted
	// message, as Slack echoes them in an interaction), else a one-line
	// reference to the workflow and action.
	Pending *contract.PendingAction
	Mode    contract.NoticeMode
	Summary []slack.Block
}

// Statuses an Outcome (or a contract.DecisionResult) may carry.
const (
	StatusApproved       = "approved"
	StatusDenied         = "denied"
	StatusExpired        = "expired"
	StatusStopped        = "stopped"
	StatusRecorded       = "recorded"
	StatusWaiting        = "waiting"
	StatusRan            = "ran"
	StatusSucceeded      = "succeeded"
	StatusFailed         = "failed"
	StatusAlreadyDecided = "already decided"
)

// Final reports whether the outcome ends the action's interaction: its
// buttons are removed. Only "waiting" keeps them.
func (o Outcome) Final() bool { return o.Status != StatusWaiting }

// Text is the outcome line, e.g. "Approved by <@U1>, <@U2> at <date>".
func (o Outcome) Text() string {
	by, at := "", ""
	if len(o.By) > 0 {
		by = " by " + mentions(o.By)
	}
	if !o.At.IsZero() {
		at = " at " + slackDate(o.At)
	}
	var s string
	switch o.Status {
	case StatusApproved:
		s = ":white_check_mark: *Approved*" + by + at
	case StatusDenied:
		s = ":no_entry: *Denied*" + by + at + ": it will not run"
	case StatusExpired:
		s = ":hourglass: *Expired*" + at + " (timeout = denial): nothing ran"
	case StatusStopped:
		s = ":octagonal_sign: *Stopped*" + by + at + ": it will not run"
	case StatusRecorded:
		verb := "recorded"
		switch o.Kind {
		case contract.DecisionAgree:
			verb = "agreed"
		case contract.DecisionDisagree:
			verb = "disagreed"
		}
		s = ":memo: *Feedback recorded*"
		if len(o.By) > 0 {
			s += " (" + mentions(o.By) + " " + verb + ")"
		}
		s += at + ": feedback only, nothing ran"
	case StatusWaiting:
		s = ":hourglass_flowing_sand: *Waiting for more approvals*"
		if len(o.By) > 0 {
			s += ": approved so far by " + mentions(o.By)
		}
		if o.Needed > 0 {
			s += fmt.Sprintf(" (%d of %d)", len(o.By), o.Needed)
		}
	case StatusRan, StatusSucceeded:
		s = ":arrow_forward: *Ran*" + at
	case StatusFailed:
		s = ":x: *Failed*" + at
	default:
		s = "*" + clip(o.Status, 100) + "*" + by + at
	}
	if o.Detail != "" {
		s += " · " + clip(oneLine(o.Detail), 500)
	}
	return s
}

// OutcomeMessage renders the message after a decision: the action's
// summary, then the outcome instead of the buttons. A "waiting" outcome
// keeps the buttons and updates the approval count.
func OutcomeMessage(o Outcome) []slack.Block {
	var kept []slack.Block
	switch {
	case o.Pending != nil && !o.Final():
		// Still waiting for approvals: the approval request, buttons and all.
		if blocks, err := Message(*o.Pending, contract.NoticeApproval); err == nil {
			kept = blocks
		} else {
			kept = summary(*o.Pending, headerFor(*o.Pending, o.Mode))
		}
	case o.Pending != nil:
		kept = summary(*o.Pending, headerFor(*o.Pending, o.Mode))
	case len(o.Summary) > 0:
		kept = o.Summary
	default:
		kept = []slack.Block{slack.NewSectionBlock(mrkdwn(fmt.Sprintf("Action #%d of %s", o.ActionIndex, code(o.WorkflowID, maxSectionText-100))),
			nil, nil, slack.SectionBlockOptionBlockID(blockHeader))}
	}
	for _, b := range kept {
		if n := neededFrom(b.ID()); n > 0 && o.Needed == 0 {
			o.Needed = n
		}
	}
	// While waiting, the progress line (whose id keeps the number needed)
	// sits where the old one was, above the buttons.
	progress := func() slack.Block {
		return ctxBlock(blockProgress+":"+strconv.Itoa(max(o.Needed, 1)), o.Text())
	}
	out := make([]slack.Block, 0, len(kept)+1)
	placed := false
	for _, b := range kept {
		id := b.ID()
		switch {
		case id == blockOutcome:
			continue // replaced below
		case strings.HasPrefix(id, blockProgress):
			if !o.Final() && !placed {
				out, placed = append(out, progress()), true
			}
			continue
		case id == blockNote && o.Final():
			continue // the outcome says what happened
		case id == blockActions:
			if o.Final() {
				continue
			}
			if !placed {
				out, placed = append(out, progress()), true
			}
		}
		out = append(out, b)
	}
	if o.Final() {
		out = append(out, slack.NewSectionBlock(mrkdwn(clipRaw(o.Text(), maxSectionText)), nil, nil, slack.SectionBlockOptionBlockID(blockOutcome)))
	} else if !placed {
		out = append(out, progress())
	}
	return out
}

func headerFor(p contract.PendingAction, mode contract.NoticeMode) string {
	switch mode {
	case contract.NoticeVeto:
		return "Supervised: " + p.Action.Type
	case contract.NoticeShadow:
		return "Shadow, would do: " + p.Action.Type
	case contract.NoticeDone:
		return "Ran: " + p.Action.Type
	default:
		return "Approval: " + p.Action.Type
	}
}

// --- text helpers -----------------------------------------------------------

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, true, false)
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

func ctxBlock(id, text string) *slack.ContextBlock {
	return slack.NewContextBlock(id, mrkdwn(clipRaw(text, maxContextText)))
}

func confirm(title, text, yes string, style slack.Style) *slack.ConfirmationBlockObject {
	return slack.NewConfirmationBlockObject(
		plain(clipPlain(title, 100)), plain(clipPlain(text, 300)), plain(yes), plain("Cancel"),
	).WithStyle(style)
}

// escape makes untrusted text inert in mrkdwn: without '<' there are no
// mentions (<!channel>, <@U…>) and no links.
func escape(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		b.WriteString(escapeRune(r))
	}
	return b.String()
}

func escapeRune(r rune) string {
	switch r {
	case '&':
		return "&amp;"
	case '<':
		return "&lt;"
	case '>':
		return "&gt;"
	}
	return string(r)
}

// clip escapes s and cuts it to at most max bytes on a rune boundary (never
// inside an escape), ending with "…" when cut.
func clip(s string, max int) string {
	if e := escape(s); len(e) <= max {
		return e
	}
	const ellipsis = "…"
	var b strings.Builder
	for _, r := range s {
		e := escapeRune(r)
		if b.Len()+len(e)+len(ellipsis) > max {
			break
		}
		b.WriteString(e)
	}
	return b.String() + ellipsis
}

// clipRaw cuts already-safe text (ours) at a rune boundary.
func clipRaw(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const ellipsis = "…"
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// clipPlain cuts plain_text (not mrkdwn: no escaping needed).
func clipPlain(s string, max int) string { return clipRaw(oneLine(s), max) }

// code renders an untrusted value as inline code.
func code(s string, max int) string {
	return "`" + clip(oneLine(strings.ReplaceAll(s, "`", "'")), max) + "`"
}

// breakBackticks keeps text from closing a ``` code block: no two
// backticks stay adjacent.
func breakBackticks(s string) string {
	for strings.Contains(s, "``") {
		s = strings.ReplaceAll(s, "``", "`\u200b`")
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// oneParagraph collapses runs of blank lines and trims; line breaks stay.
func oneParagraph(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	out := lines[:0]
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" && len(out) > 0 && out[len(out)-1] == "" {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

var (
	userID  = regexp.MustCompile(`^[UW][A-Z0-9]{2,20}$`)
	groupID = regexp.MustCompile(`^S[A-Z0-9]{2,20}$`)
)

// mention renders a Slack user or group id as a mention, anything else
// (a CLI principal) as escaped text.
func mention(id string) string {
	switch {
	case userID.MatchString(id):
		return "<@" + id + ">"
	case groupID.MatchString(id):
		return "<!subteam^" + id + ">"
	default:
		return clip(oneLine(id), 100)
	}
}

func mentions(ids []string) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = mention(id)
	}
	return strings.Join(parts, ", ")
}

// slackDate renders t in each reader's time zone, with a UTC fallback.
func slackDate(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return fmt.Sprintf("<!date^%d^{date_short_pretty} at {time_secs}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04:05 UTC"))
}
