// Package contract is the Temporal contract of Airlock's workflows: task
// queue, workflow, query, signal and update names, their inputs and outputs,
// the canonical encoding agents sign and the audit trail's verifier. It is a
// leaf: agents, the Slack handler and the CLI import it without linking the
// worker's Kubernetes and Vault clients. Agents in other languages start
// AgentCycle by name with a JSON CycleRequest (schema/).
package contract

import (
	"fmt"
	"regexp"
	"time"

	"github.com/airlockhq/airlock/policy"
)

const (
	// TaskQueue is where Airlock workers poll.
	TaskQueue = "airlock"
	// CycleWorkflowName is the registered name of AgentCycle.
	CycleWorkflowName = "AgentCycle"
	// QueryStatus returns the cycle's CycleResult so far.
	QueryStatus = "status"
)

// Error types of the failures a cycle treats as permanent: the request or an
// action is invalid (the message names why).
const (
	ErrTypeInvalidRequest = "InvalidRequest"
	ErrTypeInvalidAction  = "InvalidAction"
)

// CycleWorkflowID is the workflow id of a cycle: starting the same cycle
// twice yields the same workflow.
func CycleWorkflowID(agentID, cycleID string) string {
	return "cycle/" + agentID + "/" + cycleID
}

// Thought is one reasoning step of the agent.
type Thought struct {
	Step       int     `json:"step"`
	Content    string  `json:"content"`
	Confidence float64 `json:"confidence"`
}

// CycleRequest is one agent reasoning cycle: what it thought and the actions
// it proposes. It is the AgentCycle workflow's only input.
type CycleRequest struct {
	AgentID string `json:"agent_id"`
	CycleID string `json:"cycle_id"`
	// Principal is who asked for the cycle (agent identity or user); it may
	// never approve its own actions. It is covered by the signature.
	Principal string            `json:"principal,omitempty"`
	Thoughts  []Thought         `json:"thoughts,omitempty"`
	Actions   []policy.Proposal `json:"actions"`
	// Version is the agent's build that proposed the cycle (signed). An
	// agent has one trusted version and at most one canary: a version
	// that is not the trusted one is a canary, whose writes all run in
	// shadow whatever the agent's phases. Empty: the agent's phases apply
	// as before versions, unless the agent has a trusted version (then
	// its writes run in shadow too: an agent that names versions cannot
	// shed its canary status by omitting one).
	Version string `json:"version,omitempty"`
	// CorrelationID pairs cycles the agent's runtime started for the same
	// input on its trusted and its canary version (signed): Airlock
	// records whether both proposed the same actions.
	CorrelationID string `json:"correlation_id,omitempty"`
	// Signature proves the request comes from agent AgentID: its own Vault
	// Transit key signed CanonicalRequest(request). Unsigned requests are
	// refused (DESIGN invariant 9); starter.WithSigner fills it in.
	Signature *RequestSignature `json:"signature,omitempty"`
}

// RequestSignature is an agent's signature over CanonicalRequest of the
// request it is part of. It is not a bearer credential: it proves who
// signed these exact bytes and cannot sign anything else.
type RequestSignature struct {
	// Key is the Transit key that signed ("airlock-agent-<id>"). Optional
	// and never trusted: the signature is always checked with the key of
	// agent_id; a different key here only names an impersonator.
	Key string `json:"key,omitempty"`
	// KeyVersion is the key version that signed (also in Signature).
	KeyVersion int `json:"key_version"`
	// SignedAt is when the agent signed, RFC 3339 (e.g.
	// "2026-11-25T14:03:07Z"); it is part of the signed bytes, as written.
	// It must be within MaxSignatureSkew of the cycle's start.
	SignedAt string `json:"signed_at"`
	// Signature is Vault's "vault:v<N>:<base64>" answer from
	// transit/sign/airlock-agent-<id>.
	Signature string `json:"signature"`
}

var cycleIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks the request's shape (not the catalog): every problem is
// reported with the field it concerns.
func (r CycleRequest) Validate() error {
	rerr := &policy.RequestError{}
	add := func(field, format string, args ...any) {
		rerr.Problems = append(rerr.Problems, policy.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if r.AgentID == "" {
		add("agent_id", "required")
	}
	if r.CycleID == "" {
		add("cycle_id", "required")
	} else if !cycleIDPattern.MatchString(r.CycleID) {
		add("cycle_id", "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	for i, t := range r.Thoughts {
		if t.Content == "" {
			add(fmt.Sprintf("thoughts[%d].content", i), "required")
		}
		if !(t.Confidence >= 0 && t.Confidence <= 1) { // NaN too: JSON cannot carry it
			add(fmt.Sprintf("thoughts[%d].confidence", i), "must be between 0 and 1, got %v", t.Confidence)
		}
	}
	if r.Version != "" && !policy.ValidVersion(r.Version) {
		add("version", "must be 1-64 letters, digits, '.', '_', '+' or '-', starting with a letter or digit")
	}
	if r.CorrelationID != "" && !cycleIDPattern.MatchString(r.CorrelationID) {
		add("correlation_id", "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if len(r.Actions) == 0 {
		add("actions", "at least one action is required")
	}
	for i, a := range r.Actions {
		if a.Type == "" {
			add(fmt.Sprintf("actions[%d].type", i), "required")
		}
	}
	if len(rerr.Problems) > 0 {
		return rerr
	}
	return nil
}

// Outcome of a cycle or an action.
type Outcome string

const (
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeFailed    Outcome = "failed"
	OutcomeDenied    Outcome = "denied"
	OutcomeWouldDo   Outcome = "would_do" // shadow: recorded, never run
	OutcomeSkipped   Outcome = "skipped"  // not reached because an earlier action failed or was denied
)

// JobRef names the Kubernetes Job that ran an action.
type JobRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// ActionResult is what happened to one proposed action. It carries the
// credential's accessor, never its value.
type ActionResult struct {
	Index         int             `json:"index"`
	Type          string          `json:"type"`
	Decision      policy.Decision `json:"decision"`
	Hash          string          `json:"hash"`
	Outcome       Outcome         `json:"outcome"`
	Job           *JobRef         `json:"job,omitempty"`
	LeaseAccessor string          `json:"lease_accessor,omitempty"`
	LeaseTTL      time.Duration   `json:"lease_ttl,omitempty"`
	DBLeaseID     string          `json:"db_lease_id,omitempty"`
	ExitCode      int32           `json:"exit_code,omitempty"`
	Reason        string          `json:"reason,omitempty"`
	Output        string          `json:"output,omitempty"`
	Error         string          `json:"error,omitempty"`
	// Budget names the agent's budget that refused the action (outcome
	// denied): nothing was posted, leased or created for it.
	Budget     string                 `json:"budget,omitempty"`
	StartedAt  time.Time              `json:"started_at,omitzero"`
	FinishedAt time.Time              `json:"finished_at,omitzero"`
	Rendered   *policy.RenderedAction `json:"rendered,omitempty"`
	// Decisions are the human decisions on this action, in order.
	Decisions []DecisionRecord `json:"decisions,omitempty"`
	// DryRun is, in shadow mode, whether the apiserver would have admitted
	// the rendered Job ("admitted" or the rejection).
	DryRun string `json:"dry_run,omitempty"`
	// FeedbackWorkflowID, in shadow mode, is where Agree/Disagree land.
	FeedbackWorkflowID string        `json:"feedback_workflow_id,omitempty"`
	Rollback           *ActionResult `json:"rollback,omitempty"`
}

// CycleResult is the AgentCycle workflow's only output.
type CycleResult struct {
	WorkflowID string         `json:"workflow_id"`
	AgentID    string         `json:"agent_id"`
	CycleID    string         `json:"cycle_id"`
	Outcome    Outcome        `json:"outcome"`
	Actions    []ActionResult `json:"actions"`
	// Audit is the hash-chained trail of everything the cycle thought,
	// proposed, decided and did (see VerifyAudit).
	Audit []AuditEntry `json:"audit,omitempty"`
}

// Human decisions on a cycle arrive as the Update UpdateDecide (validated
// before anything is written to history) or, where updates cannot be used,
// as the signal SignalDecide with the same payload.
const (
	UpdateDecide = "decide"
	SignalDecide = "decide"
	// QueryPending lists the actions that wait for a human.
	QueryPending = "pending"
)

// DecisionKind is what a human said about an action.
type DecisionKind string

const (
	DecisionApprove DecisionKind = "approve"
	DecisionDeny    DecisionKind = "deny"
	// DecisionStop vetoes a supervised action during its veto window.
	DecisionStop DecisionKind = "stop"
	// DecisionAgree and DecisionDisagree are shadow-mode feedback only:
	// they are recorded and can never make anything run.
	DecisionAgree    DecisionKind = "agree"
	DecisionDisagree DecisionKind = "disagree"
)

// Decision is one human's decision on one action, bound to the hash of the
// exact rendered action it was shown.
type Decision struct {
	ActionIndex int          `json:"action_index"`
	ActionHash  string       `json:"action_hash"`
	Kind        DecisionKind `json:"decision"`
	// Approver is the Slack user id (or CLI principal) who decided.
	Approver string `json:"approver"`
	// Via is "slack" or "cli".
	Via     string `json:"via"`
	Comment string `json:"comment,omitempty"`
}

// DecisionResult is what the workflow answers to a Decision.
type DecisionResult struct {
	// Status is the action's state after the decision: "approved",
	// "denied", "stopped", "waiting" (more approvers needed), "recorded"
	// (shadow feedback) or "already decided" (a harmless second click).
	Status     string    `json:"status"`
	ApprovedBy []string  `json:"approved_by,omitempty"`
	DecidedBy  string    `json:"decided_by,omitempty"`
	DecidedAt  time.Time `json:"decided_at,omitzero"`
}

// PendingAction is an action waiting for humans (QueryPending).
type PendingAction struct {
	WorkflowID string                `json:"workflow_id"`
	AgentID    string                `json:"agent_id"`
	Principal  string                `json:"principal,omitempty"`
	Action     policy.RenderedAction `json:"action"`
	Approvers  []string              `json:"approvers"`
	Needed     int                   `json:"needed"`
	ApprovedBy []string              `json:"approved_by,omitempty"`
	// Deadline is when waiting ends: a timeout is a denial (advisory) or
	// the moment the action runs (supervised veto window).
	Deadline time.Time `json:"deadline"`
	Thoughts []Thought `json:"thoughts,omitempty"`
}

// Activities the workflow calls by name because they live with the Slack
// integration (package approval), registered by the worker. Without Slack
// configured the worker registers versions that only log.
const (
	ActivityPostApproval   = "PostApprovalMessage"
	ActivityUpdateApproval = "UpdateApprovalMessage"
)

// NoticeMode is the kind of message posted for an action.
type NoticeMode string

const (
	NoticeApproval NoticeMode = "approval" // Approve / Deny
	NoticeVeto     NoticeMode = "veto"     // Stop before the window ends
	NoticeShadow   NoticeMode = "shadow"   // Agree / Disagree: feedback only
	NoticeDone     NoticeMode = "done"     // autonomous: humans notified after
)

// Notice asks for a message about one action.
type Notice struct {
	Mode    NoticeMode    `json:"mode"`
	Channel string        `json:"channel,omitempty"`
	Pending PendingAction `json:"pending"`
}

// MessageRef identifies a posted message so it can be updated.
type MessageRef struct {
	Channel string `json:"channel,omitempty"`
	TS      string `json:"ts,omitempty"`
}

// NoticeUpdate rewrites a posted message with an action's final state.
type NoticeUpdate struct {
	Ref        MessageRef `json:"ref"`
	WorkflowID string     `json:"workflow_id"`
	Index      int        `json:"index"`
	// Status is approved, denied, expired, stopped, ran, or recorded.
	Status    string    `json:"status"`
	DecidedBy []string  `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	Detail    string    `json:"detail,omitempty"`
}

// DecisionRecord is a decision as recorded in the action's result.
type DecisionRecord struct {
	Approver string       `json:"approver"`
	Kind     DecisionKind `json:"decision"`
	Via      string       `json:"via"`
	At       time.Time    `json:"at"`
	Comment  string       `json:"comment,omitempty"`
}
