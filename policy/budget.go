package policy

import (
	"fmt"
	"time"
)

// Budgets bound what one agent may do and ask humans for, against runaway
// agents and approval fatigue (OWASP agentic threat T10, "overwhelming the
// human in the loop"). An action over budget is refused, never queued. Zero
// values take the defaults; there is no "unlimited": set a large number.
type Budgets struct {
	// ActionsPerHour bounds the actions started (staged to run) in a
	// sliding hour, rollbacks included. Default: 120.
	ActionsPerHour int `json:"actions_per_hour,omitempty"`
	// RunningJobs bounds the actions running at once, from staging to
	// release. Default: 10 (the default namespace quota's Pods: keep it at
	// or below quota.pods, or the quota holds Pods back before the budget
	// refuses by name).
	RunningJobs int `json:"running_jobs,omitempty"`
	// PendingApprovals bounds the approvals waiting for humans at once.
	// Default: 5.
	PendingApprovals int `json:"pending_approvals,omitempty"`
	// ApprovalRequestsPerHour bounds the approvals asked for in a sliding
	// hour (reminders of one approval are not new requests). Default: 30.
	ApprovalRequestsPerHour int `json:"approval_requests_per_hour,omitempty"`
}

// Defaults of Budgets: an agent acting about every 30 s, a namespace's
// default Pods, and fewer open questions than a human reads at a glance.
const (
	DefaultActionsPerHour          = 120
	DefaultRunningJobs             = 10
	DefaultPendingApprovals        = 5
	DefaultApprovalRequestsPerHour = 30
)

// The budgets' names, as the catalog, errors and `agent show` spell them.
const (
	BudgetActionsPerHour          = "actions_per_hour"
	BudgetRunningJobs             = "running_jobs"
	BudgetPendingApprovals        = "pending_approvals"
	BudgetApprovalRequestsPerHour = "approval_requests_per_hour"
)

// BudgetWindow is the sliding window of the per-hour budgets.
const BudgetWindow = time.Hour

// WithDefaults fills zero values with the defaults.
func (b Budgets) WithDefaults() Budgets {
	if b.ActionsPerHour == 0 {
		b.ActionsPerHour = DefaultActionsPerHour
	}
	if b.RunningJobs == 0 {
		b.RunningJobs = DefaultRunningJobs
	}
	if b.PendingApprovals == 0 {
		b.PendingApprovals = DefaultPendingApprovals
	}
	if b.ApprovalRequestsPerHour == 0 {
		b.ApprovalRequestsPerHour = DefaultApprovalRequestsPerHour
	}
	return b
}

// Limit returns the limit of a budget by name (0 for an unknown name).
func (b Budgets) Limit(name string) int {
	switch name {
	case BudgetActionsPerHour:
		return b.ActionsPerHour
	case BudgetRunningJobs:
		return b.RunningJobs
	case BudgetPendingApprovals:
		return b.PendingApprovals
	case BudgetApprovalRequestsPerHour:
		return b.ApprovalRequestsPerHour
	}
	return 0
}

// BudgetKind is what a budget hold is for.
type BudgetKind string

const (
	// BudgetRun holds a running Job (running_jobs, actions_per_hour).
	BudgetRun BudgetKind = "run"
	// BudgetApproval holds a pending approval (pending_approvals,
	// approval_requests_per_hour).
	BudgetApproval BudgetKind = "approval"
)

// Valid reports whether k is a known kind.
func (k BudgetKind) Valid() bool { return k == BudgetRun || k == BudgetApproval }

// BudgetUse is how much of its budgets an agent uses at one moment.
type BudgetUse struct {
	ActionsLastHour          int `json:"actions_last_hour"`
	RunningJobs              int `json:"running_jobs"`
	PendingApprovals         int `json:"pending_approvals"`
	ApprovalRequestsLastHour int `json:"approval_requests_last_hour"`
}

// Used returns the use of a budget by name.
func (u BudgetUse) Used(name string) int {
	switch name {
	case BudgetActionsPerHour:
		return u.ActionsLastHour
	case BudgetRunningJobs:
		return u.RunningJobs
	case BudgetPendingApprovals:
		return u.PendingApprovals
	case BudgetApprovalRequestsPerHour:
		return u.ApprovalRequestsLastHour
	}
	return 0
}

// BudgetNames lists the budgets in the order they are shown.
var BudgetNames = []string{BudgetRunningJobs, BudgetActionsPerHour, BudgetPendingApprovals, BudgetApprovalRequestsPerHour}

// BudgetError is a refusal: one more would exceed the named budget.
type BudgetError struct {
	Budget  string `json:"budget"`
	AgentID string `json:"agent_id"`
	Used    int    `json:"used"`
	Limit   int    `json:"limit"`
}

func (e *BudgetError) Error() string {
	var what string
	switch e.Budget {
	case BudgetRunningJobs:
		what = fmt.Sprintf("%d of %d Jobs already run for agent %s", e.Used, e.Limit, e.AgentID)
	case BudgetActionsPerHour:
		what = fmt.Sprintf("agent %s already started %d of %d actions in the last hour", e.AgentID, e.Used, e.Limit)
	case BudgetPendingApprovals:
		what = fmt.Sprintf("%d of %d approvals already wait for agent %s", e.Used, e.Limit, e.AgentID)
	case BudgetApprovalRequestsPerHour:
		what = fmt.Sprintf("agent %s already asked for %d of %d approvals in the last hour", e.AgentID, e.Used, e.Limit)
	default:
		what = fmt.Sprintf("%d of %d used by agent %s", e.Used, e.Limit, e.AgentID)
	}
	return fmt.Sprintf("budget %q exhausted: %s", e.Budget, what)
}

// Check decides whether an agent using use may take one more hold of
// kind: nil, or the first budget it would exceed (running_jobs before
// actions_per_hour, pending_approvals before approval_requests_per_hour).
// Zero limits take the defaults.
func (b Budgets) Check(agentID string, kind BudgetKind, use BudgetUse) *BudgetError {
	b = b.WithDefaults()
	var names []string
	switch kind {
	case BudgetRun:
		names = []string{BudgetRunningJobs, BudgetActionsPerHour}
	case BudgetApproval:
		names = []string{BudgetPendingApprovals, BudgetApprovalRequestsPerHour}
	}
	for _, n := range names {
		if used, limit := use.Used(n), b.Limit(n); used >= limit {
			return &BudgetError{Budget: n, AgentID: agentID, Used: used, Limit: limit}
		}
	}
	return nil
}

func validateBudgets(probs *Problems, at string, b *Budgets) {
	for _, f := range []struct {
		name string
		v    int
	}{
		{BudgetActionsPerHour, b.ActionsPerHour}, {BudgetRunningJobs, b.RunningJobs},
		{BudgetPendingApprovals, b.PendingApprovals}, {BudgetApprovalRequestsPerHour, b.ApprovalRequestsPerHour},
	} {
		if f.v < 0 {
			probs.add("%s.budgets.%s: must not be negative (0 takes the default)", at, f.name)
		}
	}
	*b = b.WithDefaults()
}
