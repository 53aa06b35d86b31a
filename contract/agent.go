package contract

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/airlockhq/airlock/policy"
)

// The Agent workflow's contract: one long-running workflow per agent, id
// agent/<id>, holding the agent's live state. The catalog stays the policy
// (which actions, the phase caps, the approvers); this workflow is the
// state (status, current phases, counters, transitions).
const (
	// AgentWorkflowName is the registered name of the Agent workflow.
	AgentWorkflowName = "Agent"
	// QueryAgentState returns the AgentState.
	QueryAgentState = "state"
	// SignalReportCycle carries a CycleReport (counted once per cycle).
	SignalReportCycle = "report-cycle"
	// SignalReportCycles carries CycleReports: a worker's reports of one
	// agent's cycles that ended while its previous signal was in flight
	// (each counted as if sent alone). Fewer signals to one workflow: each
	// takes that workflow's lock on the server, and so waits on every other.
	SignalReportCycles = "report-cycles"
	// UpdateReportCycle takes a CycleReport as an Update, as workers sent
	// it before reports became signals (idempotent per cycle).
	UpdateReportCycle = "report-cycle"
	// UpdateKill takes a KillRequest; it returns a KillReport once the
	// agent's cycles, Jobs and credentials are gone.
	UpdateKill = "kill"
	// UpdateResume takes a ResumeRequest.
	UpdateResume = "resume"
	// UpdatePromote takes a PromoteRequest and answers a Promotion: the
	// class goes one phase up once enough distinct approvers asked and its
	// gate is met (or, with Override, two approvers said why).
	UpdatePromote = "promote"
	// UpdateFeedback takes a FeedbackDecision: a human's Agree/Disagree
	// on one of the agent's shadow proposals (ShadowProposal), recorded as
	// evidence; it answers a DecisionResult. Feedback never runs anything.
	UpdateFeedback = "feedback"
	// SignalAgentCatalog carries a new AgentSeed when the catalog changed.
	SignalAgentCatalog = "catalog"
	// UpdateReserve takes a ReserveRequest and answers a ReserveResult;
	// over budget it fails with ErrTypeBudgetExhausted (details:
	// policy.BudgetError).
	UpdateReserve = "reserve"
	// UpdateReserveBatch takes a ReserveBatch and answers a
	// ReserveBatchResult: each request is checked and held in turn, as
	// UpdateReserve would. Workers send an agent's concurrent reservations
	// this way, one Update at a time: the server admits only a few Updates
	// in flight per workflow (history.maxInFlightUpdates, 10 by default)
	// and makes every further caller back off for seconds.
	UpdateReserveBatch = "reserve-batch"
	// SignalRelease carries a BudgetHold to give back (releasing what is
	// not held changes nothing).
	SignalRelease = "release"
)

// AgentWorkflowID is the workflow id of an agent's Agent workflow.
func AgentWorkflowID(agentID string) string { return "agent/" + agentID }

// AgentStatus is whether an agent may run cycles: only active agents do.
type AgentStatus string

const (
	AgentActive    AgentStatus = "active"
	AgentSuspended AgentStatus = "suspended"
	AgentKilled    AgentStatus = "killed"
)

// ErrTypeAgentUnavailable: the agent's state could not be read; the cycle
// fails closed.
const ErrTypeAgentUnavailable = "AgentUnavailable"

// AgentSeed is what the catalog says about an agent's state: its phases
// (the first phases of its Agent workflow, and forever their caps), its
// approvers (who may kill and resume it), its namespace and its budgets.
type AgentSeed struct {
	AgentID   string                        `json:"agent_id"`
	Phases    map[policy.Class]policy.Phase `json:"phases"`
	Approvers []string                      `json:"approvers,omitempty"`
	Namespace string                        `json:"namespace"`
	Budgets   policy.Budgets                `json:"budgets,omitzero"`
	Trust     policy.Trust                  `json:"trust,omitzero"`
}

// SeedFor returns the catalog's seed of an agent.
func SeedFor(ag *policy.Agent) AgentSeed {
	return AgentSeed{AgentID: ag.ID, Phases: maps.Clone(ag.Phases), Approvers: slices.Clone(ag.Approvers), Namespace: ag.Namespace,
		Budgets: ag.Budgets.WithDefaults(), Trust: ag.Trust.WithDefaults()}
}

// Same reports whether two seeds say the same (approver order aside).
func (s AgentSeed) Same(o AgentSeed) bool {
	a, b := slices.Clone(s.Approvers), slices.Clone(o.Approvers)
	slices.Sort(a)
	slices.Sort(b)
	return s.AgentID == o.AgentID && s.Namespace == o.Namespace && maps.Equal(s.Phases, o.Phases) && slices.Equal(a, b) &&
		s.Budgets.WithDefaults() == o.Budgets.WithDefaults() && s.Trust.WithDefaults().Same(o.Trust.WithDefaults())
}

// CycleReport is what a cycle tells its agent when it ends.
type CycleReport struct {
	WorkflowID string `json:"workflow_id"`
	AgentID    string `json:"agent_id"`
	// Outcome is succeeded, failed, denied, canceled or refused.
	Outcome string `json:"outcome"`
	// Actions counts the cycle's actions by outcome.
	Actions map[string]int `json:"actions,omitempty"`
	// Approvals and Denials count actions a human approved, and actions
	// denied (by a human, a veto or a timeout).
	Approvals int `json:"approvals,omitempty"`
	Denials   int `json:"denials,omitempty"`
	// Violation: a verified request the policy refused (an action the agent
	// may not use, parameters that do not validate).
	Violation bool `json:"violation,omitempty"`
	// Unverified: a request claiming this agent that failed verification
	// (counted apart: anyone can send one).
	Unverified bool   `json:"unverified,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Details are the cycle's actions as evidence: class, phase, what
	// humans said and how they ended.
	Details []ActionReport `json:"details,omitempty"`
	// Shadow are the cycle's shadow proposals, open to feedback on the
	// agent's workflow until their Until.
	Shadow []ShadowProposal `json:"shadow,omitempty"`
	// Refusals counts the cycle's actions refused over budget, by budget.
	Refusals map[string]int `json:"refusals,omitempty"`
	// Version and CorrelationID are the request's; Canary: the cycle was
	// planned as a canary (every action in shadow).
	Version       string `json:"version,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	Canary        bool   `json:"canary,omitempty"`
	// Proposed are the planned actions, for pairing (set when the request
	// has a correlation_id).
	Proposed []ProposedAction `json:"proposed,omitempty"`
}

// ReportCycleResult says whether a report was counted or was a repeat.
type ReportCycleResult struct {
	Counted   bool `json:"counted"`
	Duplicate bool `json:"duplicate,omitempty"`
}

// KillReport is what the kill switch stopped and when it was all gone.
type KillReport struct {
	CyclesCanceled []string `json:"cycles_canceled,omitempty"`
	// JobsDeleted are the Jobs running at the kill or found by it, all
	// gone by its end (a cancelled cycle may have deleted its own first).
	JobsDeleted      []string  `json:"jobs_deleted,omitempty"`
	RevokedAccessors []string  `json:"revoked_accessors,omitempty"`
	StartedAt        time.Time `json:"started_at"`
	// JobsGoneAt is when no Job or Pod of the agent was left.
	JobsGoneAt time.Time `json:"jobs_gone_at"`
	// RevokedAt is when the agent's token tree (every action token and the
	// leases they took) was revoked, the last time it had anything left.
	RevokedAt time.Time `json:"revoked_at"`
	// Passes is how many sweeps it took until one found nothing new.
	Passes int `json:"passes"`
}

// ErrTypeBudgetExhausted: the action would exceed one of its agent's
// budgets; it is refused, not queued. The error's details hold the
// policy.BudgetError naming the budget.
const ErrTypeBudgetExhausted = "BudgetExhausted"

// BudgetHold names one hold on an agent's budgets: a running Job or a
// pending approval of one action of one cycle. Holds are idempotent by
// (WorkflowID, Index, Kind): asking again for a held one changes nothing.
type BudgetHold struct {
	AgentID    string            `json:"agent_id"`
	WorkflowID string            `json:"workflow_id"`
	Index      int               `json:"index"`
	Kind       policy.BudgetKind `json:"kind"`
}

// ReserveRequest asks the agent's workflow for a hold (Update "reserve");
// over budget the Update fails with ErrTypeBudgetExhausted.
type ReserveRequest struct {
	BudgetHold
	// Until is when the hold lapses if nobody releases it.
	Until time.Time `json:"until"`
	// Compensation (a rollback after an autonomous failure) is counted but
	// never refused: refusing it would leave a failed write half done.
	Compensation bool `json:"compensation,omitempty"`
}

// ReserveResult is what the agent's workflow granted.
type ReserveResult struct {
	// Held: the hold existed already (a retried staging or a reminder).
	Held bool `json:"held,omitempty"`
	// Use is the agent's budget use with this hold.
	Use policy.BudgetUse `json:"use"`
}

// CycleReports is several CycleReports in one signal (SignalReportCycles).
type CycleReports struct {
	Reports []CycleReport `json:"reports"`
}

// MaxReportBatch is how many reports a worker puts in one CycleReports.
const MaxReportBatch = 100

// MaxReserveBatch is how many requests one ReserveBatch may carry.
const MaxReserveBatch = 200

// ReserveBatch asks for several holds at once (Update "reserve-batch").
type ReserveBatch struct {
	Requests []ReserveRequest `json:"requests"`
}

// ReserveBatchResult answers a ReserveBatch, one outcome per request in
// the same order.
type ReserveBatchResult struct {
	Results []ReserveOutcome `json:"results"`
}

// ReserveOutcome is one request's answer in a ReserveBatchResult: granted
// (Refused and Invalid empty), refused over budget, or invalid.
type ReserveOutcome struct {
	ReserveResult
	Refused *policy.BudgetError `json:"refused,omitempty"`
	// Invalid says why the request was not considered (not this agent's
	// cycle, an unknown kind).
	Invalid string `json:"invalid,omitempty"`
}

// AgentInput is the Agent workflow's only input.
type AgentInput struct {
	// Seed seeds a new agent. Without it (an agent started by kill or by an
	// operator) the workflow reads it from the worker's catalog first.
	Seed *AgentSeed `json:"seed,omitempty"`
	// State is carried over by continue-as-new.
	State *AgentState `json:"state,omitempty"`
	// Limits bound one run's history. Zero values take the defaults.
	Limits AgentLimits `json:"limits,omitzero"`
}

// AgentLimits bound an Agent workflow run before it continues as new.
type AgentLimits struct {
	// MaxHistory events in one run. Default: 1000.
	MaxHistory int `json:"max_history,omitempty"`
	// MaxUpdates handled in one run (the server refuses more than 2000).
	// Default: 500.
	MaxUpdates int `json:"max_updates,omitempty"`
}

// Defaults of AgentLimits.
const (
	defaultAgentMaxHistory = 1000
	defaultAgentMaxUpdates = 500
)

// WithDefaults fills the zero limits with their defaults.
func (l AgentLimits) WithDefaults() AgentLimits {
	if l.MaxHistory <= 0 {
		l.MaxHistory = defaultAgentMaxHistory
	}
	if l.MaxUpdates <= 0 {
		l.MaxUpdates = defaultAgentMaxUpdates
	}
	return l
}

// Bounds of what the state keeps.
const (
	// AgentShadowKept is how many shadow proposals awaiting feedback
	// AgentState keeps (the oldest go first; expired ones always go).
	AgentShadowKept = 500
	// AgentTransitionsKept is how many transitions AgentState keeps.
	AgentTransitionsKept = 50
	// AgentRecentCyclesKept is how many reported cycle ids are remembered
	// to make reports idempotent.
	AgentRecentCyclesKept = 1000
)

// AgentState is the agent's live state (QueryAgentState).
type AgentState struct {
	AgentID string      `json:"agent_id"`
	Status  AgentStatus `json:"status"`
	// Why is the reason of the last status change.
	Why string `json:"why,omitempty"`
	// Since is when the status last changed.
	Since time.Time `json:"since,omitzero"`
	// Phases are the current phases per action class, never above Caps.
	Phases map[policy.Class]policy.Phase `json:"phases"`
	// Caps, Approvers and Namespace are the catalog's (AgentSeed).
	Caps      map[policy.Class]policy.Phase `json:"caps"`
	Approvers []string                      `json:"approvers,omitempty"`
	Namespace string                        `json:"namespace"`
	Counters  AgentCounters                 `json:"counters"`
	// Transitions are the last AgentTransitionsKept changes, oldest first.
	Transitions []AgentTransition `json:"transitions,omitempty"`
	// LastKill is what the last kill stopped.
	LastKill *KillReport `json:"last_kill,omitempty"`
	// Trust is the catalog's (AgentSeed): promotion gates, demotion triggers.
	Trust policy.Trust `json:"trust,omitzero"`
	// Evidence is what the agent showed per action class since the class
	// entered its current phase (the promotion clock).
	Evidence map[policy.Class]ClassEvidence `json:"evidence,omitempty"`
	// Promotions are the promotions offered (a gate was met) or asked for,
	// waiting for humans, by class.
	Promotions map[policy.Class]Promotion `json:"promotions,omitempty"`
	// Shadow are the agent's shadow proposals still open to feedback,
	// oldest first.
	Shadow []ShadowProposal `json:"shadow,omitempty"`
	// Budget is what the agent holds against its budgets.
	Budget AgentBudget `json:"budget"`
	// Versions are the agent's trusted version, its canary and the
	// canary's evidence.
	Versions AgentVersions `json:"versions,omitzero"`
	// RecentCycles are the last reported cycle ids (idempotent reports).
	RecentCycles []string `json:"recent_cycles,omitempty"`
	// Runs counts continue-as-new hand-overs.
	Runs int `json:"runs"`
}

// AgentCounters count what the agent did.
type AgentCounters struct {
	// Cycles reported, whatever their outcome.
	Cycles int `json:"cycles"`
	// Outcomes counts cycles by outcome (succeeded, failed, denied,
	// canceled, refused).
	Outcomes map[string]int `json:"outcomes,omitempty"`
	// Actions counts actions by outcome.
	Actions    map[string]int `json:"actions,omitempty"`
	Approvals  int            `json:"approvals"`
	Denials    int            `json:"denials"`
	Violations int            `json:"violations"`
	// Unverified counts requests claiming this agent that failed
	// verification: anyone can send one, so they are not violations.
	Unverified int `json:"unverified"`
	// Feedback counts the Agree/Disagree given on shadow proposals, by
	// action class.
	Feedback map[policy.Class]FeedbackCount `json:"feedback,omitempty"`
	// BudgetRefusals counts actions refused over budget, by budget.
	BudgetRefusals map[string]int `json:"budget_refusals,omitempty"`
}

// AgentBudget is the agent's budget state: its limits (the catalog's), the
// holds it has now, and what it started and asked for in the last hour.
type AgentBudget struct {
	Limits policy.Budgets `json:"limits"`
	// Holds are the running Jobs and pending approvals, oldest first. Only
	// continue-as-new carries them: the state query counts them in Held.
	Holds []AgentHold `json:"holds,omitempty"`
	// Held counts the holds that had not lapsed, by kind, when the state
	// was queried.
	Held map[policy.BudgetKind]int `json:"held,omitempty"`
	// Actions and ApprovalRequests count per minute, for the sliding hour.
	Actions          []MinuteCount `json:"actions,omitempty"`
	ApprovalRequests []MinuteCount `json:"approval_requests,omitempty"`
}

// AgentHold is one hold: a Job from staging to release, an approval from
// its message to its decision. Until is when it lapses if never released.
type AgentHold struct {
	WorkflowID string            `json:"workflow_id"`
	Index      int               `json:"index,omitempty"`
	Kind       policy.BudgetKind `json:"kind"`
	Until      time.Time         `json:"until"`
}

// MinuteCount is how many were counted in the minute starting at Minute.
type MinuteCount struct {
	Minute time.Time `json:"minute"`
	N      int       `json:"n"`
}

// Transition kinds.
const (
	TransitionSeeded  = "seeded"
	TransitionKilled  = "killed"
	TransitionResumed = "resumed"
	TransitionCatalog = "catalog"
	// TransitionPromoted: humans promoted a class one phase.
	TransitionPromoted = "promoted"
	// TransitionDemoted: a trigger demoted a class (a violation: all).
	TransitionDemoted = "demoted"
	// TransitionClockReset: shadow feedback disagreed too often; the
	// class stays in shadow and its evidence starts over.
	TransitionClockReset = "clock-reset"
)

// AgentTransition is one change of the agent's status or phases.
type AgentTransition struct {
	At     time.Time                     `json:"at"`
	Kind   string                        `json:"kind"`
	From   AgentStatus                   `json:"from,omitempty"`
	To     AgentStatus                   `json:"to"`
	Phases map[policy.Class]policy.Phase `json:"phases,omitempty"`
	By     []string                      `json:"by,omitempty"`
	Why    string                        `json:"why,omitempty"`
	// Class, for a promotion or a demotion, and the trigger that demoted
	// (a policy.Trigger*) or "override" for a promotion past its gate.
	Class   policy.Class `json:"class,omitempty"`
	Trigger string       `json:"trigger,omitempty"`
	// Evidence is the class's evidence when it changed phase.
	Evidence *ClassEvidence `json:"evidence,omitempty"`
	// Version, for a version's transition (canary, version-promoted, or a
	// declined version offer), and the canary's evidence then.
	Version string          `json:"version,omitempty"`
	Canary  *CanaryEvidence `json:"canary,omitempty"`
}

// KillRequest asks to kill an agent: one approver of the agent, a reason.
type KillRequest struct {
	Reason string `json:"reason"`
	By     string `json:"by"`
	// Via is "cli", "slack" or "api".
	Via string `json:"via,omitempty"`
}

// ResumeRequest brings a killed or suspended agent back, in shadow. It
// needs two distinct approvers of the agent.
type ResumeRequest struct {
	By     []string `json:"by"`
	Reason string   `json:"reason,omitempty"`
	Via    string   `json:"via,omitempty"`
}

// ResumeApprovers is how many distinct approvers a resume needs.
const ResumeApprovers = 2

// ShadowProposal is a shadow action a cycle recorded (never ran), open to
// Agree/Disagree from the agent's approvers on the agent's workflow: it
// outlives its cycle, which ends at once.
type ShadowProposal struct {
	WorkflowID string       `json:"workflow_id"`
	Index      int          `json:"index"`
	Type       string       `json:"type"`
	Class      policy.Class `json:"class"`
	// Hash is the rendered action's hash that the message showed.
	Hash string `json:"hash"`
	// Selves may not give feedback: the verified signer and its principal.
	Selves []string `json:"selves,omitempty"`
	// Until is when the feedback window closes.
	Until    time.Time        `json:"until"`
	Feedback []DecisionRecord `json:"feedback,omitempty"`
}

// FeedbackCount counts feedback on shadow proposals.
type FeedbackCount struct {
	Agree    int `json:"agree"`
	Disagree int `json:"disagree"`
}

// FeedbackDecision is a human's feedback on one shadow proposal of one
// cycle (UpdateFeedback). Decision.Kind is agree or disagree.
type FeedbackDecision struct {
	CycleWorkflowID string `json:"cycle_workflow_id"`
	Decision
}

// ErrTypeUnknownProposal: feedback named a shadow proposal the agent's
// workflow does not hold (never reported, or from a cycle that kept its
// feedback in the cycle itself).
const ErrTypeUnknownProposal = "UnknownProposal"

// AgentOfCycle returns the agent of a cycle workflow id
// ("cycle/<agent>/<cycle>").
func AgentOfCycle(workflowID string) (string, bool) {
	rest, ok := strings.CutPrefix(workflowID, "cycle/")
	if !ok {
		return "", false
	}
	agent, cycle, ok := strings.Cut(rest, "/")
	return agent, ok && agent != "" && cycle != ""
}

// AgentMemoKey is the Agent workflow's memo entry holding its AgentView.
// Cycles read it with DescribeWorkflowExecution, which the server answers
// from the workflow's state: unlike a query it never waits for the agent's
// workflow task, which every cycle's report competes for.
const AgentMemoKey = "airlock.agent"

// AgentView is what a cycle plans with, published by the Agent workflow in
// its memo whenever it changes (a kill is in it before the kill returns).
type AgentView struct {
	Status    AgentStatus                   `json:"status"`
	Why       string                        `json:"why,omitempty"`
	Phases    map[policy.Class]policy.Phase `json:"phases"`
	Caps      map[policy.Class]policy.Phase `json:"caps"`
	Approvers []string                      `json:"approvers,omitempty"`
	Namespace string                        `json:"namespace"`
	Budgets   policy.Budgets                `json:"budgets,omitzero"`
	// TrustedVersion and Canary are the agent's versions ("": none).
	TrustedVersion string `json:"trusted_version,omitempty"`
	Canary         string `json:"canary,omitempty"`
}

// View is the part of the state a cycle plans with.
func (s AgentState) View() AgentView {
	v := AgentView{Status: s.Status, Why: s.Why, Phases: maps.Clone(s.Phases), Caps: maps.Clone(s.Caps),
		Approvers: slices.Clone(s.Approvers), Namespace: s.Namespace, Budgets: s.Budget.Limits, TrustedVersion: s.Versions.Trusted}
	if s.Versions.Canary != nil {
		v.Canary = s.Versions.Canary.Version
	}
	return v
}

// Same reports whether two views say the same.
func (v AgentView) Same(o AgentView) bool {
	return v.Status == o.Status && v.Why == o.Why && maps.Equal(v.Phases, o.Phases) && maps.Equal(v.Caps, o.Caps) &&
		slices.Equal(v.Approvers, o.Approvers) && v.Namespace == o.Namespace && v.Budgets == o.Budgets &&
		v.TrustedVersion == o.TrustedVersion && v.Canary == o.Canary
}
