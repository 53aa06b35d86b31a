package workflows

import (
	"time"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/policy"
)

// The Agent workflow's contract: one long-running workflow per agent, id
// agent/<id>, holding the agent's live state. The catalog stays the policy
// (which actions, the phase caps, the approvers); this workflow is the
// state (status, current phases, counters, transitions).
const (
	// AgentWorkflowName is the registered name of the Agent workflow.
	AgentWorkflowName = activities.AgentWorkflowName
	// QueryAgentState returns the AgentState.
	QueryAgentState = activities.AgentQueryState
	// SignalReportCycle carries a CycleReport (counted once per cycle).
	SignalReportCycle = activities.AgentSignalReportCycle
	// UpdateReportCycle takes a CycleReport as an Update, as workers sent
	// it before reports became signals (idempotent per cycle).
	UpdateReportCycle = activities.AgentUpdateReportCycle
	// UpdateKill takes a KillRequest; it returns a KillReport once the
	// agent's cycles, Jobs and credentials are gone.
	UpdateKill = "kill"
	// UpdateResume takes a ResumeRequest.
	UpdateResume = "resume"
	// SignalAgentCatalog carries a new AgentSeed when the catalog changed.
	SignalAgentCatalog = activities.AgentSignalCatalog
	// UpdateReserve takes a ReserveRequest and answers a ReserveResult;
	// over budget it fails with ErrTypeBudgetExhausted (details:
	// policy.BudgetError).
	UpdateReserve = activities.AgentUpdateReserve
	// SignalRelease carries a BudgetHold to give back (releasing what is
	// not held changes nothing).
	SignalRelease = activities.AgentSignalRelease
)

// AgentWorkflowID is the workflow id of an agent's Agent workflow.
func AgentWorkflowID(agentID string) string { return activities.AgentWorkflowID(agentID) }

// AgentStatus is whether an agent may run cycles: only active agents do.
type AgentStatus = activities.AgentStatus

const (
	AgentActive    = activities.AgentActive
	AgentSuspended = activities.AgentSuspended
	AgentKilled    = activities.AgentKilled
)

// AgentSeed is what the catalog says: first phases (and their caps),
// approvers, namespace.
type AgentSeed = activities.AgentSeed

// CycleReport is what a cycle tells its agent when it ends.
type CycleReport = activities.CycleReport

// ReportCycleResult says whether a report was counted or was a repeat.
type ReportCycleResult = activities.ReportCycleOutput

// KillReport is what the kill switch stopped and when it was all gone.
type KillReport = activities.KillAgentOutput

// BudgetHold names a running Job or a pending approval held against the
// agent's budgets; ReserveRequest asks for one, ReserveResult answers.
type (
	BudgetHold     = activities.BudgetHold
	ReserveRequest = activities.ReserveRequest
	ReserveResult  = activities.ReserveResult
)

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

// Bounds of what the state keeps.
const (
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
	// Budget is what the agent holds against its budgets.
	Budget AgentBudget `json:"budget"`
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
