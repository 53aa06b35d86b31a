package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Proposal is one action an agent wants to take.
type Proposal struct {
	Type      string         `json:"type"`
	Params    map[string]any `json:"params,omitempty"`
	Rationale string         `json:"rationale,omitempty"`
}

// RenderedAction is an action fully resolved against the catalog: exactly
// what would run. Approvals are bound to its Hash.
type RenderedAction struct {
	Index          int               `json:"index"`
	Type           string            `json:"type"`
	Class          Class             `json:"class"`
	Risk           Risk              `json:"risk"`
	Decision       Decision          `json:"decision"`
	Image          string            `json:"image"`
	Command        []string          `json:"command"`
	Env            map[string]string `json:"env,omitempty"`
	VaultPolicies  []string          `json:"vault_policies,omitempty"`
	VaultDBRole    string            `json:"vault_db_role,omitempty"`
	VaultKV        map[string]string `json:"vault_kv,omitempty"`
	Egress         []EgressRule      `json:"egress,omitempty"`
	Resources      Resources         `json:"resources"`
	Deadline       Duration          `json:"deadline"`
	PodAnnotations map[string]string `json:"pod_annotations,omitempty"`
	Params         map[string]any    `json:"params,omitempty"`
	Rationale      string            `json:"rationale,omitempty"`
	// Rollback is the rendered rollback action (same params), if any.
	Rollback *RenderedAction `json:"rollback,omitempty"`
	Hash     string          `json:"hash"`
}

// Plan is a validated cycle: the agent's settings and every rendered action.
type Plan struct {
	AgentID           string           `json:"agent_id"`
	Owner             string           `json:"owner"`
	Namespace         string           `json:"namespace"`
	Approvers         []string         `json:"approvers,omitempty"`
	ApprovalTimeout   Duration         `json:"approval_timeout"`
	VetoWindow        Duration         `json:"veto_window"`
	SlackChannel      string           `json:"slack_channel,omitempty"`
	ReminderAfter     Duration         `json:"reminder_after,omitempty"`
	EscalateAfter     Duration         `json:"escalate_after,omitempty"`
	EscalationChannel string           `json:"escalation_channel,omitempty"`
	Actions           []RenderedAction `json:"actions"`
}

// OnlyDryRuns reports whether every action of the plan is only dry-run
// (shadow): nothing runs and nobody is asked.
func (p Plan) OnlyDryRuns() bool {
	for _, a := range p.Actions {
		if a.Decision.Mode != ModeWouldDo {
			return false
		}
	}
	return len(p.Actions) > 0
}

// FieldError is one problem with a request, naming the field.
type FieldError struct {
	Field string `json:"field"`
	Msg   string `json:"message"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// RequestError lists every problem found in a cycle request.
type RequestError struct{ Problems []FieldError }

func (e *RequestError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Error()
	}
	return "invalid cycle request: " + strings.Join(parts, "; ")
}

func (e *RequestError) add(field, format string, args ...any) {
	e.Problems = append(e.Problems, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Plan validates proposals of an agent against the catalog and renders them.
// It reports every problem, each naming its field (e.g. "actions[1].params.replicas").
func (c *Catalog) Plan(agentID string, proposals []Proposal) (*Plan, error) {
	return c.PlanWithPhases(agentID, proposals, nil)
}

// PlanWithPhases is Plan with the agent's current phase per class (its
// Agent workflow's state) instead of the catalog's. The catalog's phases
// stay the caps: an override is never above them (see Agent.CappedPhases),
// and a class without an override keeps the catalog's phase.
func (c *Catalog) PlanWithPhases(agentID string, proposals []Proposal, phases map[Class]Phase) (*Plan, error) {
	rerr := &RequestError{}
	ag, ok := c.Agent(agentID)
	if !ok {
		rerr.add("agent_id", "unknown agent %q", agentID)
		return nil, rerr
	}
	if phases != nil {
		cp := *ag
		cp.Phases = ag.CappedPhases(phases)
		ag = &cp
	}
	if len(proposals) == 0 {
		rerr.add("actions", "at least one action is required")
	}
	p := &Plan{
		AgentID: ag.ID, Owner: ag.Owner, Namespace: ag.Namespace,
		Approvers: slices.Clone(ag.Approvers), ApprovalTimeout: ag.ApprovalTimeout,
		VetoWindow: ag.VetoWindow, SlackChannel: ag.SlackChannel,
		ReminderAfter: ag.ReminderAfter, EscalateAfter: ag.EscalateAfter, EscalationChannel: ag.EscalationChannel,
	}
	for i, prop := range proposals {
		field := fmt.Sprintf("actions[%d]", i)
		if prop.Type == "" {
			rerr.add(field+".type", "required")
			continue
		}
		a, ok := c.Action(prop.Type)
		if !ok {
			rerr.add(field+".type", "unknown action type %q", prop.Type)
			continue
		}
		if !ag.Allows(prop.Type) {
			rerr.add(field+".type", "agent %q may not use action type %q", ag.ID, prop.Type)
			continue
		}
		ra, errs := render(a, i, prop, field)
		if len(errs) > 0 {
			rerr.Problems = append(rerr.Problems, errs...)
			continue
		}
		ra.Decision = Decide(ag, a, ra.Params)
		if a.Rollback != "" {
			rb, errs := render(c.actions[a.Rollback], i, Proposal{Type: a.Rollback, Params: prop.Params, Rationale: "rollback of " + prop.Type}, field+".rollback")
			if len(errs) > 0 {
				rerr.Problems = append(rerr.Problems, errs...)
				continue
			}
			rb.Decision = Decision{Phase: ra.Decision.Phase, Mode: ModeRun, Rule: "rollback of a failed action runs"}
			rb.Hash = hashOf(rb)
			ra.Rollback = &rb
		}
		ra.Hash = hashOf(ra)
		p.Actions = append(p.Actions, ra)
	}
	if len(rerr.Problems) > 0 {
		return nil, rerr
	}
	return p, nil
}

func render(a *ActionType, index int, prop Proposal, field string) (RenderedAction, []FieldError) {
	params := prop.Params
	if params == nil {
		params = map[string]any{}
	}
	// Round-trip through JSON so validation sees what a workflow will see.
	raw, err := json.Marshal(params)
	if err != nil {
		return RenderedAction{}, []FieldError{{field + ".params", err.Error()}}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return RenderedAction{}, []FieldError{{field + ".params", err.Error()}}
	}
	if err := a.schema.Validate(inst); err != nil {
		return RenderedAction{}, schemaErrors(field+".params", err)
	}
	var norm map[string]any
	_ = json.Unmarshal(raw, &norm)
	cmd := make([]string, len(a.templates))
	for j, t := range a.templates {
		var b strings.Builder
		if err := t.Execute(&b, norm); err != nil {
			return RenderedAction{}, []FieldError{{field + ".params", fmt.Sprintf("command[%d]: %v", j, err)}}
		}
		cmd[j] = b.String()
	}
	return RenderedAction{
		Index: index, Type: a.Name, Class: a.Class, Risk: a.Risk,
		Image: a.Image, Command: cmd, Env: maps.Clone(a.Env),
		VaultPolicies: slices.Clone(a.VaultPolicies), VaultDBRole: a.VaultDBRole, VaultKV: maps.Clone(a.VaultKV), Egress: slices.Clone(a.Egress),
		Resources: a.Resources, Deadline: a.Deadline, PodAnnotations: maps.Clone(a.PodAnnotations),
		Params: norm, Rationale: prop.Rationale,
	}, nil
}

// schemaErrors flattens a JSON-schema failure into field errors.
func schemaErrors(field string, err error) []FieldError {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []FieldError{{field, err.Error()}}
	}
	var out []FieldError
	for _, u := range ve.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		msg := u.Error.String()
		if strings.HasPrefix(msg, "validation failed") {
			continue
		}
		f := field
		if u.InstanceLocation != "" {
			f += strings.ReplaceAll(u.InstanceLocation, "/", ".")
		}
		out = append(out, FieldError{f, msg})
	}
	if len(out) == 0 {
		out = []FieldError{{field, ve.Error()}}
	}
	return out
}

// hashOf binds approvals to the exact rendered action.
func hashOf(a RenderedAction) string {
	a.Hash = ""
	b, _ := json.Marshal(a)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// EffectHash is the hash of what the action would do — image, command,
// environment, credentials, egress, resources, parameters — leaving out
// who decided what about it (Decision), why the agent wants it
// (Rationale) and where it sits in its cycle (Index). Two versions of an
// agent proposed the same action when their effect hashes are equal,
// whatever phase each was planned in.
func (a RenderedAction) EffectHash() string {
	a.Index, a.Decision, a.Rationale = 0, Decision{}, ""
	if a.Rollback != nil {
		rb := *a.Rollback
		rb.Index, rb.Decision, rb.Rationale, rb.Hash = 0, Decision{}, "", ""
		a.Rollback = &rb
	}
	return hashOf(a)
}

// VerifyHash reports whether a rendered action still matches its hash.
func (a RenderedAction) VerifyHash() bool { return a.Hash != "" && hashOf(a) == a.Hash }

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
