package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAgentBudgetsDefaultAndValidate(t *testing.T) {
	withBudgets := func(b string) string {
		return strings.Replace(testCatalog, "    phases: {read: autonomous, write: autonomous}\n",
			"    phases: {read: autonomous, write: autonomous}\n    budgets: "+b+"\n", 1)
	}
	tests := map[string]struct {
		budgets string
		want    Budgets
		errs    []string
	}{
		"none: the defaults": {"{}", Budgets{ActionsPerHour: 120, RunningJobs: 10, PendingApprovals: 5, ApprovalRequestsPerHour: 30}, nil},
		"some set, 0 is the default": {"{pending_approvals: 1, running_jobs: 0, actions_per_hour: 1000}",
			Budgets{ActionsPerHour: 1000, RunningJobs: 10, PendingApprovals: 1, ApprovalRequestsPerHour: 30}, nil},
		"negative": {"{running_jobs: -1, approval_requests_per_hour: -2}", Budgets{}, []string{
			"agents[0] (bot).budgets.running_jobs: must not be negative (0 takes the default)",
			"agents[0] (bot).budgets.approval_requests_per_hour: must not be negative",
		}},
		"unknown budget": {"{jobs: 3}", Budgets{}, []string{`unknown field "jobs"`}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cat, err := Parse("t.yaml", []byte(withBudgets(tc.budgets)))
			if len(tc.errs) > 0 {
				require.Error(t, err)
				for _, e := range tc.errs {
					assert.Contains(t, err.Error(), e)
				}
				return
			}
			require.NoError(t, err)
			ag, _ := cat.Agent("bot")
			assert.Equal(t, tc.want, ag.Budgets)
		})
	}
}

func TestBudgetCheckNamesTheFirstExhaustedBudget(t *testing.T) {
	b := Budgets{ActionsPerHour: 3, RunningJobs: 2, PendingApprovals: 1, ApprovalRequestsPerHour: 4}
	tests := map[string]struct {
		kind BudgetKind
		use  BudgetUse
		want string // "" admits
	}{
		"run within budget":      {BudgetRun, BudgetUse{RunningJobs: 1, ActionsLastHour: 2, PendingApprovals: 9}, ""},
		"running_jobs first":     {BudgetRun, BudgetUse{RunningJobs: 2, ActionsLastHour: 3}, `budget "running_jobs" exhausted: 2 of 2 Jobs already run for agent x`},
		"actions_per_hour":       {BudgetRun, BudgetUse{RunningJobs: 0, ActionsLastHour: 3}, `budget "actions_per_hour" exhausted: agent x already started 3 of 3 actions in the last hour`},
		"approval within budget": {BudgetApproval, BudgetUse{ApprovalRequestsLastHour: 3, RunningJobs: 9}, ""},
		"pending_approvals first": {BudgetApproval, BudgetUse{PendingApprovals: 1, ApprovalRequestsLastHour: 4},
			`budget "pending_approvals" exhausted: 1 of 1 approvals already wait for agent x`},
		"approval_requests_per_hour": {BudgetApproval, BudgetUse{ApprovalRequestsLastHour: 4},
			`budget "approval_requests_per_hour" exhausted: agent x already asked for 4 of 4 approvals in the last hour`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			be := b.Check("x", tc.kind, tc.use)
			if tc.want == "" {
				assert.Nil(t, be)
				return
			}
			require.NotNil(t, be)
			assert.Equal(t, tc.want, be.Error())
			assert.Equal(t, be.Limit, b.Limit(be.Budget))
		})
	}
	assert.NotNil(t, Budgets{}.Check("x", BudgetApproval, BudgetUse{PendingApprovals: DefaultPendingApprovals}), "zero limits are the defaults")
}

func TestCompareUrgencyPutsCriticalFirstThenOldest(t *testing.T) {
	assert.Negative(t, CompareUrgency(RiskCritical, t0(5), RiskLow, t0(1)))
	assert.Positive(t, CompareUrgency(RiskMedium, t0(5), RiskHigh, t0(1)))
	assert.Negative(t, CompareUrgency(RiskHigh, t0(1), RiskHigh, t0(5)), "same risk: the older first")
}

// t0 is a start time n minutes into a fixed day.
func t0(n int) time.Time { return time.Date(2026, 11, 29, 10, n, 0, 0, time.UTC) }
