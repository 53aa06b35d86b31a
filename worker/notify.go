package worker

import (
	"context"
	"fmt"
	"log/slog"

	"go.temporal.io/sdk/activity"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
)

// Notifier tells humans about actions that wait for them. The Slack
// notifier (package approval) implements it; LogNotifier stands in when no
// Slack is configured.
type Notifier interface {
	PostApprovalMessage(ctx context.Context, n contract.Notice) (contract.MessageRef, error)
	UpdateApprovalMessage(ctx context.Context, u contract.NoticeUpdate) error
}

// LogNotifier logs, for teams without Slack, the exact command that decides.
type LogNotifier struct{ Logger *slog.Logger }

var _ Notifier = (*LogNotifier)(nil)

// PostApprovalMessage logs how to decide on the action.
func (n *LogNotifier) PostApprovalMessage(ctx context.Context, no contract.Notice) (contract.MessageRef, error) {
	p := no.Pending
	var how string
	switch no.Mode {
	case contract.NoticeApproval:
		how = fmt.Sprintf("airlock approve %s --action %d --approver <id>   (or: airlock deny ...)", p.WorkflowID, p.Action.Index)
	case contract.NoticeVeto:
		how = fmt.Sprintf("runs at %s unless: airlock deny %s --action %d --approver <id>", p.Deadline.Format("15:04:05"), p.WorkflowID, p.Action.Index)
	default:
		how = "feedback only"
	}
	n.logger().InfoContext(ctx, "action needs a human", "mode", no.Mode, "workflow_id", p.WorkflowID,
		"agent", p.AgentID, "action", p.Action.Index, "type", p.Action.Type, "needed", p.Needed, "how", how)
	return contract.MessageRef{}, nil
}

// UpdateApprovalMessage logs the outcome.
func (n *LogNotifier) UpdateApprovalMessage(ctx context.Context, u contract.NoticeUpdate) error {
	n.logger().InfoContext(ctx, "action decided", "workflow_id", u.WorkflowID, "action", u.Index, "status", u.Status, "by", u.DecidedBy)
	return nil
}

func (n *LogNotifier) logger() *slog.Logger {
	if n.Logger != nil {
		return n.Logger
	}
	return slog.Default()
}

// budgetedNotifier asks the agent's budgets (pending_approvals,
// approval_requests_per_hour) before an approval is posted: over budget the
// message activity fails with activities.ErrTypeBudgetExhausted, nothing
// reaches Slack, and the cycle denies the action. Reminders and escalations
// of an approval hold the same hold; other notices ask nothing.
type budgetedNotifier struct {
	Notifier
	acts *activities.Activities
}

func (n budgetedNotifier) PostApprovalMessage(ctx context.Context, no contract.Notice) (contract.MessageRef, error) {
	if no.Mode == contract.NoticeApproval {
		p := no.Pending
		if err := activities.ReserveApproval(ctx, n.acts, p.AgentID, p.WorkflowID, p.Action.Index, p.Deadline); err != nil {
			return contract.MessageRef{}, err
		}
	}
	return n.Notifier.PostApprovalMessage(ctx, no)
}

func registerNotifier(r registry, n Notifier, acts *activities.Activities) {
	if acts != nil {
		n = budgetedNotifier{Notifier: n, acts: acts}
	}
	r.RegisterActivityWithOptions(n.PostApprovalMessage, activity.RegisterOptions{Name: contract.ActivityPostApproval})
	r.RegisterActivityWithOptions(n.UpdateApprovalMessage, activity.RegisterOptions{Name: contract.ActivityUpdateApproval})
	alerter, ok := n.(AgentAlerter)
	if b, wrapped := n.(budgetedNotifier); wrapped {
		alerter, ok = b.Notifier.(AgentAlerter)
	}
	if !ok {
		alerter = &LogNotifier{}
	}
	r.RegisterActivityWithOptions(alerter.PostAgentAlert, activity.RegisterOptions{Name: contract.ActivityPostAgentAlert})
}

// AgentAlerter tells an agent's approvers about a promotion offer or a
// demotion (approval.Notifier posts to Slack; LogNotifier logs). A
// Notifier without it gets LogNotifier's.
type AgentAlerter interface {
	PostAgentAlert(ctx context.Context, a contract.AgentAlert) error
}

// PostAgentAlert logs the alert and, for an offer, the command that
// promotes.
func (l *LogNotifier) PostAgentAlert(ctx context.Context, a contract.AgentAlert) error {
	attrs := []any{"agent", a.AgentID, "kind", a.Kind, "class", a.Class, "from", a.From, "to", a.To, "why", a.Why}
	if a.Kind == contract.AlertPromotionOffered {
		attrs = append(attrs, "promote", fmt.Sprintf("airlock agent promote %s --class %s --by <approver>", a.AgentID, a.Class))
	}
	l.logger().WarnContext(ctx, "agent trust", attrs...)
	return nil
}
