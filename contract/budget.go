package contract

import (
	"maps"
	"slices"
	"time"

	"github.com/airlockhq/airlock/policy"
)

// Use is the agent's budget use at now: the holds that have not lapsed, by
// kind, and what was counted in the sliding hour. The hour is counted per
// minute: a minute counts while any part of it is within the hour (an
// action counts for 60 to 61 minutes: refusals err on the safe side).
func (b AgentBudget) Use(now time.Time) policy.BudgetUse {
	held := b.Held
	if b.Holds != nil || held == nil {
		held = b.HeldAt(now)
	}
	u := policy.BudgetUse{RunningJobs: held[policy.BudgetRun], PendingApprovals: held[policy.BudgetApproval]}
	u.ActionsLastHour = lastHour(b.Actions, now)
	u.ApprovalRequestsLastHour = lastHour(b.ApprovalRequests, now)
	return u
}

func inHour(m MinuteCount, now time.Time) bool {
	return m.Minute.Add(time.Minute).After(now.Add(-policy.BudgetWindow))
}

func lastHour(ms []MinuteCount, now time.Time) int {
	n := 0
	for _, m := range ms {
		if inHour(m, now) {
			n += m.N
		}
	}
	return n
}

// CountMinute adds one at now to a per-minute count, dropping minutes that
// left the hour (at most 61 are kept).
func CountMinute(ms []MinuteCount, now time.Time) []MinuteCount {
	ms = slices.DeleteFunc(ms, func(m MinuteCount) bool { return !inHour(m, now) })
	minute := now.UTC().Truncate(time.Minute)
	if n := len(ms); n > 0 && ms[n-1].Minute.Equal(minute) {
		ms[n-1].N++
		return ms
	}
	return append(ms, MinuteCount{Minute: minute, N: 1})
}

// HeldAt counts the holds that have not lapsed at now, by kind.
func (b AgentBudget) HeldAt(now time.Time) map[policy.BudgetKind]int {
	n := map[policy.BudgetKind]int{}
	for _, h := range b.Holds {
		if h.Until.After(now) {
			n[h.Kind]++
		}
	}
	return n
}

// Summary is the budget as the state query shows it: holds counted.
func (b AgentBudget) Summary(now time.Time) AgentBudget {
	b = b.Clone()
	b.Held, b.Holds = b.HeldAt(now), nil
	return b
}

// Holding reports whether h is held.
func (b *AgentBudget) Holding(h BudgetHold) bool {
	return slices.ContainsFunc(b.Holds, func(x AgentHold) bool { return SameHold(x, h) })
}

// SameHold reports whether x is the hold h names.
func SameHold(x AgentHold, h BudgetHold) bool {
	return x.WorkflowID == h.WorkflowID && x.Index == h.Index && x.Kind == h.Kind
}

// Drop removes the holds f matches, and the lapsed ones.
func (b *AgentBudget) Drop(now time.Time, f func(AgentHold) bool) {
	b.Holds = slices.DeleteFunc(b.Holds, func(x AgentHold) bool { return f(x) || !x.Until.After(now) })
}

// Clone copies b so the copy shares nothing with it.
func (b AgentBudget) Clone() AgentBudget {
	b.Holds, b.Held = slices.Clone(b.Holds), maps.Clone(b.Held)
	b.Actions, b.ApprovalRequests = slices.Clone(b.Actions), slices.Clone(b.ApprovalRequests)
	return b
}

// CountRefusals adds a cycle's refusals to the counters.
func (c *AgentCounters) CountRefusals(r map[string]int) {
	if len(r) == 0 {
		return
	}
	if c.BudgetRefusals == nil {
		c.BudgetRefusals = map[string]int{}
	}
	for name, n := range r {
		c.BudgetRefusals[name] += n
	}
}
