package approval

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/slack-go/slack"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// ActionPromote is the "Promote" button of a promotion offer: its value is
// a PromoteButtonValue and a click asks the handler's AgentPromoter.
const ActionPromote = "airlock_promote"

// ActionNotYet is the "Not yet" button next to Promote: the same value; a
// click records the decline (who, when) in the agent's transitions and the
// offer is not made again until new evidence arrived.
const ActionNotYet = "airlock_not_yet"

// promoteValuePrefix versions the promote button's value format;
// versionValuePrefix is a canary version's.
const (
	promoteValuePrefix = "p1"
	versionValuePrefix = "pv1"
)

// PromoteButtonValue is what a "Promote" (or "Not yet") button carries.
//
// Encoded as "p1|<agent id>|<class>|<to phase>", or for a canary version
// "pv1|<agent id>|<version>".
type PromoteButtonValue struct {
	AgentID string
	Class   policy.Class
	To      policy.Phase
	// Version is the canary version offered to become trusted (Class and
	// To empty).
	Version string
	// NotYet: the click was on "Not yet" (from the action id, not the value).
	NotYet bool
}

// Encode returns the button value.
func (v PromoteButtonValue) Encode() (string, error) {
	if err := v.validate(); err != nil {
		return "", err
	}
	if v.Version != "" {
		return strings.Join([]string{versionValuePrefix, v.AgentID, v.Version}, "|"), nil
	}
	return strings.Join([]string{promoteValuePrefix, v.AgentID, string(v.Class), string(v.To)}, "|"), nil
}

// ParsePromoteButtonValue parses what Encode produced, and nothing else.
func ParsePromoteButtonValue(s string) (PromoteButtonValue, error) {
	if len(s) > MaxButtonValue {
		return PromoteButtonValue{}, fmt.Errorf("%w: too long", ErrBadButtonValue)
	}
	parts := strings.Split(s, "|")
	if len(parts) == 3 && parts[0] == versionValuePrefix {
		v := PromoteButtonValue{AgentID: parts[1], Version: parts[2]}
		if err := v.validate(); err != nil {
			return PromoteButtonValue{}, err
		}
		return v, nil
	}
	if len(parts) != 4 || parts[0] != promoteValuePrefix {
		return PromoteButtonValue{}, fmt.Errorf("%w: unknown format", ErrBadButtonValue)
	}
	v := PromoteButtonValue{AgentID: parts[1], Class: policy.Class(parts[2]), To: policy.Phase(parts[3])}
	if err := v.validate(); err != nil {
		return PromoteButtonValue{}, err
	}
	return v, nil
}

func (v PromoteButtonValue) validate() error {
	switch {
	case v.AgentID == "" || strings.ContainsAny(v.AgentID, "|") || hasControl(v.AgentID):
		return fmt.Errorf("%w: agent id must be non-empty, without '|' or control characters", ErrBadButtonValue)
	case v.Version != "" && (v.Class != "" || v.To != ""):
		return fmt.Errorf("%w: a version's promotion names no class", ErrBadButtonValue)
	case v.Version != "":
		if !policy.ValidVersion(v.Version) {
			return fmt.Errorf("%w: malformed version", ErrBadButtonValue)
		}
	case v.Class != policy.ClassRead && v.Class != policy.ClassWrite:
		return fmt.Errorf("%w: unknown class %q", ErrBadButtonValue, v.Class)
	case !v.To.Valid() || v.To == policy.PhaseShadow:
		return fmt.Errorf("%w: %q is not a phase to promote to", ErrBadButtonValue, v.To)
	}
	return nil
}

// AgentPromoter asks for a promotion for a verified click on an offer's
// "Promote" button (in production the Agent workflow's promote Update,
// whose validator checks the approver and the gate). A refusal is an error
// for which errors.Is(err, ErrRefused) or a Refused() bool method says so.
type AgentPromoter interface {
	Promote(ctx context.Context, agentID string, req contract.PromoteRequest) (contract.Promotion, error)
}

// PromoterFunc adapts a function to AgentPromoter.
type PromoterFunc func(ctx context.Context, agentID string, req contract.PromoteRequest) (contract.Promotion, error)

// Promote calls f.
func (f PromoterFunc) Promote(ctx context.Context, agentID string, req contract.PromoteRequest) (contract.Promotion, error) {
	return f(ctx, agentID, req)
}

// promote serves a "Promote" click; it reports whether the request may be
// kept in the replay cache (see kill).
func (h *Handler) promote(w http.ResponseWriter, r *http.Request, c click) bool {
	pv := c.promote
	attrs := []any{"agent", pv.AgentID, "class", pv.Class, "to", pv.To, "version", pv.Version, "not_yet", pv.NotYet, "by", c.user}
	if h.promoter == nil {
		h.reject(w, r, http.StatusBadRequest, "promotion not enabled here", attrs...)
		return true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.decideTimeout)
	p, err := h.promoter.Promote(ctx, pv.AgentID, contract.PromoteRequest{Class: pv.Class, Version: pv.Version, Decline: pv.NotYet,
		By: []string{c.user}, Via: "slack"})
	cancel()
	if err == nil && pv.Version == "" && !pv.NotYet && p.To != pv.To && p.Status != contract.PromotionPromoted {
		err = fmt.Errorf("%w: the offer was for %s; the agent's %s actions would now go to %s", ErrRefused, pv.To, pv.Class, p.To)
	}
	if err != nil {
		if reason, refused := refusal(err); refused {
			h.reject(w, r, http.StatusForbidden, "refused: "+reason, attrs...)
			h.tell(c, ":no_entry_sign: Your promotion was refused: "+escape(reason), attrs)
			return true
		}
		h.log.Error("slack promote failed", append(attrs, "error", err)...)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			h.reject(w, r, http.StatusServiceUnavailable, "promotion timed out; try again", attrs...)
			return false
		}
		h.reject(w, r, http.StatusBadGateway, "could not promote; try again", attrs...)
		return false
	}
	h.log.Info("slack promote", append(attrs, "status", p.Status)...)
	answer(w, p.Status)
	h.tell(c, promoteAnswer(pv, p), attrs)
	return true
}

// promoteAnswer tells the clicking user what became of the click.
func promoteAnswer(pv *PromoteButtonValue, p contract.Promotion) string {
	agent := code(pv.AgentID, 100)
	what := fmt.Sprintf("%s actions %s → %s", p.Class, p.From, p.To)
	if pv.Version != "" {
		what = "version " + code(pv.Version, 64) + " → trusted"
	}
	switch {
	case pv.NotYet:
		return fmt.Sprintf(":zzz: Agent %s: promotion of %s declined for now; it is offered again once new evidence arrives.", agent, what)
	case p.Status == contract.PromotionPromoted && pv.Version != "":
		return fmt.Sprintf(":arrow_up: Agent %s: version %s is now trusted; the previous version is retired.", agent, code(pv.Version, 64))
	case p.Status == contract.PromotionPromoted:
		return fmt.Sprintf(":arrow_up: Agent %s: %s actions promoted %s → %s.", agent, p.Class, p.From, p.To)
	}
	return fmt.Sprintf(":hourglass: Agent %s: promotion of %s needs %d distinct approvers; %d so far.", agent, what, p.Needed, len(p.By))
}

// AgentAlertMessage is the message telling an agent's approvers about a
// promotion offer (with a Promote button) or a demotion.
func AgentAlertMessage(a contract.AgentAlert) ([]slack.Block, error) {
	var head string
	switch a.Kind {
	case contract.AlertPromotionOffered:
		head = fmt.Sprintf(":seedling: Agent %s earned a promotion: %s actions %s → %s", a.AgentID, a.Class, a.From, a.To)
	case contract.AlertVersionOffered:
		head = fmt.Sprintf(":seedling: Agent %s: canary version %s agrees with the trusted version: make it trusted?", a.AgentID, a.Version)
	case contract.TransitionDemoted:
		head = fmt.Sprintf(":small_red_triangle_down: Agent %s demoted: %s actions %s → %s", a.AgentID, a.Class, a.From, a.To)
	case contract.TransitionClockReset:
		head = fmt.Sprintf(":leftwards_arrow_with_hook: Agent %s: %s actions stay in shadow, promotion clock restarted", a.AgentID, a.Class)
	default:
		return nil, fmt.Errorf("agent alert: unknown kind %q", a.Kind)
	}
	line := evidenceLine(a.Evidence)
	if a.Kind == contract.AlertVersionOffered && a.Canary != nil {
		line = canaryLine(*a.Canary)
	}
	blocks := []slack.Block{
		slack.NewSectionBlock(mrkdwn("*"+escape(head)+"*"), nil, nil),
		slack.NewSectionBlock(mrkdwn(escape(clipRaw(a.Why, maxSectionText-100))), nil, nil),
		slack.NewContextBlock("", mrkdwn(escape(line))),
	}
	if a.Kind != contract.AlertPromotionOffered && a.Kind != contract.AlertVersionOffered {
		return blocks, nil
	}
	pv := PromoteButtonValue{AgentID: a.AgentID, Class: a.Class, To: a.To}
	if a.Kind == contract.AlertVersionOffered {
		pv = PromoteButtonValue{AgentID: a.AgentID, Version: a.Version}
	}
	value, err := pv.Encode()
	if err != nil {
		return nil, err
	}
	btn := slack.NewButtonBlockElement(ActionPromote, value, slack.NewTextBlockObject(slack.PlainTextType, "Promote", false, false))
	btn.Style = slack.StylePrimary
	notYet := slack.NewButtonBlockElement(ActionNotYet, value, slack.NewTextBlockObject(slack.PlainTextType, "Not yet", false, false))
	blocks = append(blocks,
		slack.NewActionBlock("promote", btn, notYet),
		slack.NewContextBlock("", mrkdwn(fmt.Sprintf("A human decides, never the machine: needs %d distinct approver(s) of the agent. Not yet? It is offered again once new evidence arrives; see `airlock agent show %s`.",
			a.Needed, escape(a.AgentID)))))
	return blocks, nil
}

// canaryLine sums up a canary version's evidence.
func canaryLine(ce contract.CanaryEvidence) string {
	return fmt.Sprintf("Canary %s since %s: %d cycles · %d paired with the trusted version (%d same actions, %d different) · %d unpaired · %d violations",
		ce.Version, ce.Since.UTC().Format("2006-01-02 15:04Z"), ce.Cycles, ce.Pairs, ce.Agreed, ce.Disagreed, ce.Unpaired, ce.Violations)
}

// evidenceLine sums up a class's evidence.
func evidenceLine(ev contract.ClassEvidence) string {
	return fmt.Sprintf("Evidence in %s since %s: %d shadow proposals (%d agree, %d disagree) · %d approved, %d denied · %d runs, %d failed, %d stopped, %d rolled back · %d violations",
		ev.Phase, ev.Since.UTC().Format("2006-01-02 15:04Z"), ev.ShadowProposals, ev.Feedback.Agree, ev.Feedback.Disagree,
		ev.Approved, ev.Denied, ev.Runs, ev.Failed, ev.Vetoed, ev.Rollbacks, ev.Violations)
}

// PostAgentAlert is the activity registered as contract.ActivityPostAgentAlert:
// it posts the alert to the default channel.
func (n *Notifier) PostAgentAlert(ctx context.Context, a contract.AgentAlert) error {
	if n.channel == "" {
		return errors.New("post agent alert: no default channel")
	}
	blocks, err := AgentAlertMessage(a)
	if err != nil {
		return err
	}
	if _, _, err := n.api.PostMessageContext(ctx, n.channel, slack.MsgOptionBlocks(blocks...),
		slack.MsgOptionText(alertText(a), false)); err != nil {
		return n.wrap("post agent alert", err)
	}
	return nil
}

// alertText is the notification's plain text.
func alertText(a contract.AgentAlert) string {
	if a.Version != "" {
		return fmt.Sprintf("Agent %s: %s %s → trusted", a.AgentID, a.Kind, a.Version)
	}
	return fmt.Sprintf("Agent %s: %s %s → %s", a.AgentID, a.Kind, a.From, a.To)
}
