package approval

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/airlockhq/airlock/contract"
)

// Button action ids. Slack echoes the clicked button's action_id and value
// back in the interaction payload; the handler accepts nothing else.
const (
	ActionApprove  = "airlock_approve"
	ActionDeny     = "airlock_deny"
	ActionStop     = "airlock_stop"
	ActionAgree    = "airlock_agree"
	ActionDisagree = "airlock_disagree"
)

// actionKinds maps each button's action_id to the only decision it may carry.
var actionKinds = map[string]contract.DecisionKind{
	ActionApprove:  contract.DecisionApprove,
	ActionDeny:     contract.DecisionDeny,
	ActionStop:     contract.DecisionStop,
	ActionAgree:    contract.DecisionAgree,
	ActionDisagree: contract.DecisionDisagree,
}

// ActionID returns the button action_id for a decision kind ("" if unknown).
func ActionID(k contract.DecisionKind) string {
	for id, kind := range actionKinds {
		if kind == k {
			return id
		}
	}
	return ""
}

// ActionKillAgent is the "Kill agent" button on an agent's messages. It is
// not a decision on an action: its value is a KillButtonValue and a click
// goes to the handler's AgentKiller.
const ActionKillAgent = "airlock_kill_agent"

// killValuePrefix versions the kill button's value format.
const killValuePrefix = "k1"

// KillButtonValue is what a "Kill agent" button carries: the agent, and
// the cycle whose message it was on (for the record).
//
// Encoded as "k1|<agent id>|<workflow id>".
type KillButtonValue struct {
	AgentID    string
	WorkflowID string
}

// Encode returns the button value.
func (v KillButtonValue) Encode() (string, error) {
	if err := v.validate(); err != nil {
		return "", err
	}
	s := killValuePrefix + "|" + v.AgentID + "|" + v.WorkflowID
	if len(s) > MaxButtonValue {
		return "", fmt.Errorf("%w: %d bytes, Slack allows %d", ErrBadButtonValue, len(s), MaxButtonValue)
	}
	return s, nil
}

// ParseKillButtonValue decodes a value produced by KillButtonValue.Encode.
func ParseKillButtonValue(s string) (KillButtonValue, error) {
	if len(s) > MaxButtonValue {
		return KillButtonValue{}, fmt.Errorf("%w: too long", ErrBadButtonValue)
	}
	parts := strings.SplitN(s, "|", 3)
	if len(parts) != 3 || parts[0] != killValuePrefix {
		return KillButtonValue{}, fmt.Errorf("%w: unknown format", ErrBadButtonValue)
	}
	v := KillButtonValue{AgentID: parts[1], WorkflowID: parts[2]}
	if err := v.validate(); err != nil {
		return KillButtonValue{}, err
	}
	return v, nil
}

func (v KillButtonValue) validate() error {
	switch {
	case v.AgentID == "" || strings.ContainsAny(v.AgentID, "|") || hasControl(v.AgentID):
		return fmt.Errorf("%w: agent id must be non-empty, without '|' or control characters", ErrBadButtonValue)
	case v.WorkflowID == "" || hasControl(v.WorkflowID):
		return fmt.Errorf("%w: workflow id must be non-empty, without control characters", ErrBadButtonValue)
	}
	return nil
}

// MaxButtonValue is Slack's limit for a button's value.
const MaxButtonValue = 2000

// buttonValuePrefix versions the format so it can change without
// misreading buttons still visible in old messages.
const buttonValuePrefix = "a1"

// ErrBadButtonValue is returned for a button value this package did not
// produce (or cannot produce).
var ErrBadButtonValue = errors.New("invalid button value")

// ButtonValue is what a button carries: which decision, on which action of
// which workflow, bound to the hash of the exact rendered action shown.
//
// Encoded as "a1|<kind>|<index>|<hash>|<workflow id>". The workflow id comes
// last so it may itself contain "|"; the hash may not.
type ButtonValue struct {
	WorkflowID  string
	ActionIndex int
	ActionHash  string
	Kind        contract.DecisionKind
}

// Encode returns the button value. It fails rather than produce a value
// that would not round-trip or that Slack would reject (> MaxButtonValue).
func (v ButtonValue) Encode() (string, error) {
	if err := v.validate(); err != nil {
		return "", err
	}
	s := strings.Join([]string{buttonValuePrefix, string(v.Kind), strconv.Itoa(v.ActionIndex), v.ActionHash, v.WorkflowID}, "|")
	if len(s) > MaxButtonValue {
		return "", fmt.Errorf("%w: %d bytes, Slack allows %d", ErrBadButtonValue, len(s), MaxButtonValue)
	}
	return s, nil
}

// ParseButtonValue decodes a value produced by Encode. Only canonical
// encodings are accepted, so ParseButtonValue(s) re-encodes to exactly s.
func ParseButtonValue(s string) (ButtonValue, error) {
	if len(s) > MaxButtonValue {
		return ButtonValue{}, fmt.Errorf("%w: too long", ErrBadButtonValue)
	}
	parts := strings.SplitN(s, "|", 5)
	if len(parts) != 5 || parts[0] != buttonValuePrefix {
		return ButtonValue{}, fmt.Errorf("%w: unknown format", ErrBadButtonValue)
	}
	idx, err := strconv.Atoi(parts[2])
	if err != nil || strconv.Itoa(idx) != parts[2] {
		return ButtonValue{}, fmt.Errorf("%w: bad action index", ErrBadButtonValue)
	}
	v := ButtonValue{Kind: contract.DecisionKind(parts[1]), ActionIndex: idx, ActionHash: parts[3], WorkflowID: parts[4]}
	if err := v.validate(); err != nil {
		return ButtonValue{}, err
	}
	return v, nil
}

func (v ButtonValue) validate() error {
	switch {
	case ActionID(v.Kind) == "":
		return fmt.Errorf("%w: unknown decision %q", ErrBadButtonValue, v.Kind)
	case v.ActionIndex < 0:
		return fmt.Errorf("%w: negative action index", ErrBadButtonValue)
	case v.ActionHash == "" || strings.ContainsAny(v.ActionHash, "|") || hasControl(v.ActionHash):
		return fmt.Errorf("%w: action hash must be non-empty, without '|' or control characters", ErrBadButtonValue)
	case v.WorkflowID == "" || hasControl(v.WorkflowID):
		return fmt.Errorf("%w: workflow id must be non-empty, without control characters", ErrBadButtonValue)
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// Buttons that ask for a reason first: a click opens a modal (views.open)
// and the decision is made when the modal is submitted, with the reason as
// the decision's comment. Their value is the ButtonValue of the decision.
const (
	ActionDenyWithReason = "airlock_deny_reason"
	ActionStopWithReason = "airlock_stop_reason"
)

// reasonKinds maps each reason button's action_id to the only decision it
// may carry.
var reasonKinds = map[string]contract.DecisionKind{
	ActionDenyWithReason: contract.DecisionDeny,
	ActionStopWithReason: contract.DecisionStop,
}

// MaxPrivateMetadata is Slack's limit for a view's private_metadata.
const MaxPrivateMetadata = 3000

// reasonPrefix versions the reason modal's private_metadata format.
const reasonPrefix = "r1"

// ReasonMetadata is what the reason modal carries in its private_metadata:
// the clicked button's value (checked exactly as a button's value is, so a
// submission can only decide what a button could) and the message it was
// on, to edit it after the decision.
//
// Encoded as "r1|<channel>|<ts>|<button value>".
type ReasonMetadata struct {
	Ref   MessageRef
	Value ButtonValue
}

// Encode returns the private_metadata.
func (m ReasonMetadata) Encode() (string, error) {
	if err := m.validate(); err != nil {
		return "", err
	}
	v, err := m.Value.Encode()
	if err != nil {
		return "", err
	}
	s := strings.Join([]string{reasonPrefix, m.Ref.Channel, m.Ref.TS, v}, "|")
	if len(s) > MaxPrivateMetadata {
		return "", fmt.Errorf("%w: %d bytes of private_metadata, Slack allows %d", ErrBadButtonValue, len(s), MaxPrivateMetadata)
	}
	return s, nil
}

// ParseReasonMetadata decodes private_metadata produced by Encode. Only
// canonical encodings of a deny or stop decision are accepted.
func ParseReasonMetadata(s string) (ReasonMetadata, error) {
	if len(s) > MaxPrivateMetadata {
		return ReasonMetadata{}, fmt.Errorf("%w: too long", ErrBadButtonValue)
	}
	parts := strings.SplitN(s, "|", 4)
	if len(parts) != 4 || parts[0] != reasonPrefix {
		return ReasonMetadata{}, fmt.Errorf("%w: unknown format", ErrBadButtonValue)
	}
	v, err := ParseButtonValue(parts[3])
	if err != nil {
		return ReasonMetadata{}, err
	}
	m := ReasonMetadata{Ref: MessageRef{Channel: parts[1], TS: parts[2]}, Value: v}
	if err := m.validate(); err != nil {
		return ReasonMetadata{}, err
	}
	return m, nil
}

func (m ReasonMetadata) validate() error {
	if ReasonActionID(m.Value.Kind) == "" {
		return fmt.Errorf("%w: a reason is only asked for deny or stop, not %q", ErrBadButtonValue, m.Value.Kind)
	}
	for _, s := range []string{m.Ref.Channel, m.Ref.TS} {
		if strings.ContainsAny(s, "|") || hasControl(s) {
			return fmt.Errorf("%w: message reference must be without '|' or control characters", ErrBadButtonValue)
		}
	}
	return nil
}

// ReasonActionID returns the action_id of the button asking for a reason
// before deciding k ("" if k takes no reason in Slack).
func ReasonActionID(k contract.DecisionKind) string {
	for id, kind := range reasonKinds {
		if kind == k {
			return id
		}
	}
	return ""
}
