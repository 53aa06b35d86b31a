package mcpserver

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Arguments every action tool takes besides the action's own params.
const (
	ArgRationale = "rationale"
	ArgThoughts  = "thoughts"
)

// Read-only tools.
const (
	ToolCycleStatus = "airlock_cycle_status"
	ToolPending     = "airlock_pending"
)

// inputSchema is the action's params_schema with the required rationale and
// the optional thoughts added. It stays a plain JSON object (not the SDK's
// schema type) so that no keyword of the catalog's schema is lost on the way.
func inputSchema(a *policy.ActionType) (map[string]any, error) {
	raw := []byte(a.ParamsSchema)
	if len(raw) == 0 {
		raw = []byte(`{"type":"object","additionalProperties":false}`) // as the catalog reads it: no params at all
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("action type %s: params_schema is not a JSON object: %w", a.Name, err)
	}
	switch t := s["type"]; t {
	case nil:
		s["type"] = "object"
	case "object":
	default:
		return nil, fmt.Errorf("action type %s: params_schema must describe an object, got type %v", a.Name, t)
	}
	props := map[string]any{}
	if p, ok := s["properties"]; ok {
		if props, ok = p.(map[string]any); !ok {
			return nil, fmt.Errorf("action type %s: params_schema.properties is not an object", a.Name)
		}
	}
	for _, k := range []string{ArgRationale, ArgThoughts} {
		if _, ok := props[k]; ok {
			return nil, fmt.Errorf("action type %s: its parameter %q collides with the MCP tool's own argument of that name", a.Name, k)
		}
	}
	props[ArgRationale] = map[string]any{
		"type": "string", "minLength": 1,
		"description": "Why you propose this action. Humans who approve it read this, and it is kept in the audit trail.",
	}
	props[ArgThoughts] = map[string]any{
		"type":        "array",
		"description": "Optional: the reasoning steps that led here, recorded in the cycle's audit trail.",
		"items": map[string]any{
			"type":                 "object",
			"required":             []any{"content", "confidence"},
			"additionalProperties": false,
			"properties": map[string]any{
				"content":    map[string]any{"type": "string", "minLength": 1},
				"confidence": map[string]any{"type": "number", "minimum": 0, "maximum": 1},
			},
		},
	}
	s["properties"] = props
	req, _ := s["required"].([]any)
	s["required"] = append(slices.Clone(req), ArgRationale)
	return s, nil
}

// annotations are hints for the client, from the catalog's class. Airlock
// never reads hints back: what runs is decided by the catalog and the
// agent's phase, whatever a client claims.
func annotations(a *policy.ActionType) *mcp.ToolAnnotations {
	read := a.Class == policy.ClassRead
	return &mcp.ToolAnnotations{Title: a.Name, ReadOnlyHint: read, DestructiveHint: new(!read)}
}

// phaseView is what the server knows of the agent's trust when tools are
// listed.
type phaseView struct {
	status contract.AgentStatus
	why    string
	phases map[policy.Class]policy.Phase
	// unknown is why the agent's live state could not be read (the
	// description then says Airlock decides at call time).
	unknown string
}

// describe is an action tool's description for the agent's current phase:
// what the action is, its class and risk, and what calling it does now.
func describe(ag *policy.Agent, a *policy.ActionType, pv phaseView) string {
	var b strings.Builder
	if d := strings.TrimSpace(a.Description); d != "" {
		b.WriteString(strings.TrimSuffix(d, "."))
		b.WriteString(". ")
	}
	fmt.Fprintf(&b, "Airlock action type %q: class %s (%s), risk %s. ", a.Name, a.Class, classMeaning(a.Class), a.Risk)
	switch {
	case pv.unknown != "":
		fmt.Fprintf(&b, "Agent %s's current trust phase could not be read (%s): Airlock decides when you call it, and a write may wait for a human. ", ag.ID, pv.unknown)
	case pv.status != contract.AgentActive && pv.status != "":
		fmt.Fprintf(&b, "Agent %s is %s (%s): every call is refused until a human resumes it. ", ag.ID, pv.status, pv.why)
	default:
		cp := *ag
		cp.Phases = pv.phases
		d := policy.Decide(&cp, a, insideBounds(a.Bounds))
		fmt.Fprintf(&b, "Agent %s is in the %s phase for %s actions", ag.ID, d.Phase, a.Class)
		if a.MaxPhase != "" && d.Phase == a.MaxPhase && pv.phases[a.Class] != d.Phase {
			fmt.Fprintf(&b, " (capped by the action's max_phase)")
		}
		b.WriteString(": ")
		b.WriteString(modeMeaning(ag, a, d))
		b.WriteString(" ")
	}
	b.WriteString("Each call proposes a one-action cycle signed as the agent; the result carries the output, exit code, outcome, who decided and the workflow id. ")
	fmt.Fprintf(&b, "If no decision comes in time the call returns status \"pending\" with the workflow id: poll %s. A denial or refusal is a tool error saying why.", ToolCycleStatus)
	return b.String()
}

// insideBounds are params within an action's bounds, so that the
// description tells the usual case; modeMeaning adds what happens outside.
func insideBounds(bounds map[string]policy.Bound) map[string]any {
	out := map[string]any{}
	for name, b := range bounds {
		switch {
		case b.Min != nil:
			out[name] = *b.Min
		case b.Max != nil:
			out[name] = *b.Max
		default:
			out[name] = 0.0
		}
	}
	return out
}

func classMeaning(c policy.Class) string {
	if c == policy.ClassRead {
		return "no side effects"
	}
	return "has side effects"
}

// modeMeaning says what calling the tool does in the decided mode: runs
// now, waits for a human, or dry-run only.
func modeMeaning(ag *policy.Agent, a *policy.ActionType, d policy.Decision) string {
	timeout := time.Duration(ag.ApprovalTimeout)
	switch d.Mode {
	case policy.ModeRun:
		s := "runs now."
		if a.Class == policy.ClassWrite && a.Rollback != "" {
			s = fmt.Sprintf("runs now; if it fails Airlock runs %s to roll it back.", a.Rollback)
		}
		return s
	case policy.ModeWouldDo:
		return "dry-run only — it never runs in this phase: Airlock checks the rendered Job against the cluster and records what it would do."
	case policy.ModeVeto:
		s := fmt.Sprintf("runs after a %s veto window unless a human stops it", time.Duration(ag.VetoWindow))
		if len(a.Bounds) > 0 {
			s += fmt.Sprintf("; outside its bounds (%s) it waits for a human instead", boundsText(a.Bounds))
		}
		return s + "."
	case policy.ModeApprove:
		who := "a human approval"
		if d.Approvals > 1 {
			who = fmt.Sprintf("%d distinct human approvals", d.Approvals)
		}
		return fmt.Sprintf("waits for a human — it runs only after %s (%s); no decision within %s is a denial.", who, d.Rule, timeout)
	}
	return "Airlock decides when you call it."
}

func boundsText(bounds map[string]policy.Bound) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(bounds)) {
		b := bounds[name]
		switch {
		case b.Min != nil && b.Max != nil:
			parts = append(parts, fmt.Sprintf("%v ≤ %s ≤ %v", *b.Min, name, *b.Max))
		case b.Min != nil:
			parts = append(parts, fmt.Sprintf("%s ≥ %v", name, *b.Min))
		case b.Max != nil:
			parts = append(parts, fmt.Sprintf("%s ≤ %v", name, *b.Max))
		}
	}
	return strings.Join(parts, ", ")
}

// statusTool and pendingTool are the read-only tools.
func statusTool() *mcp.Tool {
	return &mcp.Tool{
		Name:  ToolCycleStatus,
		Title: "Airlock cycle status",
		Description: "Reads one of this agent's cycles by workflow id (as returned by an action tool, e.g. after status \"pending\"): " +
			"its outcome, output, exit code and who decided, or that it still waits for a human. Read-only.",
		InputSchema: map[string]any{
			"type": "object", "required": []any{"workflow_id"}, "additionalProperties": false,
			"properties": map[string]any{"workflow_id": map[string]any{"type": "string", "minLength": 1,
				"description": "cycle/<agent>/<cycle-id>, as returned by an action tool"}},
		},
		Annotations: &mcp.ToolAnnotations{Title: "Airlock cycle status", ReadOnlyHint: true, DestructiveHint: new(false), IdempotentHint: true},
	}
}

func pendingTool() *mcp.Tool {
	return &mcp.Tool{
		Name:        ToolPending,
		Title:       "Airlock pending decisions",
		Description: "Lists this agent's actions that wait for a human decision: cycle, action, who may decide, approvals so far and the deadline. Read-only.",
		InputSchema: map[string]any{"type": "object", "additionalProperties": false},
		Annotations: &mcp.ToolAnnotations{Title: "Airlock pending decisions", ReadOnlyHint: true, DestructiveHint: new(false), IdempotentHint: true},
	}
}
