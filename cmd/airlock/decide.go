package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/contract"
)

type decideOptions struct {
	clientFlags
	action   int
	approver string
	comment  string
}

func newApproveCmd() *cobra.Command {
	return newDecideCmd(contract.DecisionApprove, &cobra.Command{
		Use:   "approve <cycle-id>",
		Short: "Approve an action waiting for a human, as a Slack click would",
		Long: `Approve an action of a cycle that waits for a human decision. The decision
goes through the same validated Update as a Slack click: you must be one of
the agent's approvers, nobody approves their own request, and critical actions
need a second, distinct approver. The cycle/ prefix may be left out.`,
		Example: `  airlock approve cycle/advisor/c-1 --approver U0APPROVER1
  airlock approve advisor/c-1 --action 1 --approver U0APPROVER1 --comment "checked the diff"`,
	})
}

func newDenyCmd() *cobra.Command {
	return newDecideCmd(contract.DecisionDeny, &cobra.Command{
		Use:   "deny <cycle-id>",
		Short: "Deny a waiting action, or stop one during its veto window",
		Long: `Deny an action of a cycle that waits for a human decision; the action never
runs. For a supervised action in its veto window, deny stops it before it
starts. The cycle/ prefix may be left out.`,
		Example: `  airlock deny cycle/advisor/c-1 --approver U0APPROVER2 --comment "not during the freeze"`,
	})
}

// newDecideCmd completes approve or deny: both take the same flags.
func newDecideCmd(kind contract.DecisionKind, cmd *cobra.Command) *cobra.Command {
	var o decideOptions
	cmd.Args = exactArgs(1, "one cycle id (cycle/<agent>/<cycle-id>)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return runDecide(cmd.Context(), kind, o, args[0], cmd.OutOrStdout())
	}
	cmd.ValidArgsFunction = completeCycles(&o.clientFlags, true)
	o.register(cmd.Flags())
	o.registerCompletionCatalog(cmd)
	cmd.Flags().IntVar(&o.action, "action", -1, fmt.Sprintf("index of the action to %s; -1 = the only action waiting", kind))
	cmd.Flags().StringVar(&o.approver, "approver", os.Getenv("AIRLOCK_APPROVER"), fmt.Sprintf("who decides to %s: your id as listed in the agent's approvers (required; env AIRLOCK_APPROVER)", kind))
	cmd.Flags().StringVar(&o.comment, "comment", "", fmt.Sprintf("optional comment recorded with the %s in the cycle's audit trail", kind))
	_ = cmd.RegisterFlagCompletionFunc("approver", completeApprovers(&o.clientFlags, agentOfCycle))
	_ = cmd.RegisterFlagCompletionFunc("action", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("comment", cobra.NoFileCompletions)
	return cmd
}

// runDecide implements `airlock approve|deny <cycle> [--action N]`. It goes
// through the same validated Update as a Slack click.
func runDecide(ctx context.Context, kind contract.DecisionKind, o decideOptions, id string, stdout io.Writer) error {
	if o.approver == "" {
		return fmt.Errorf("%s: --approver (or AIRLOCK_APPROVER) is required", kind)
	}
	if !strings.HasPrefix(id, "cycle/") {
		id = "cycle/" + id
	}
	st, done, err := o.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	pending, err := st.Pending(ctx, id)
	if err != nil {
		return err
	}
	var target *contract.PendingAction
	for i := range pending {
		if o.action == -1 || pending[i].Action.Index == o.action {
			if target != nil {
				return fmt.Errorf("%s: %d actions wait; choose one with --action", kind, len(pending))
			}
			target = &pending[i]
		}
	}
	if target == nil {
		return fmt.Errorf("%s: no action of %s waits for a decision", kind, id)
	}
	if kind == contract.DecisionDeny && target.Action.Decision.Mode == "veto" {
		kind = contract.DecisionStop
	}
	res, err := st.Decide(ctx, id, contract.Decision{
		ActionIndex: target.Action.Index, ActionHash: target.Action.Hash, Kind: kind,
		Approver: o.approver, Via: "cli", Comment: o.comment,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s action %d (%s) of %s: %s", kind, target.Action.Index, target.Action.Type, id, res.Status)
	if len(res.ApprovedBy) > 0 {
		fmt.Fprintf(stdout, " (approved by %s; %d needed)", strings.Join(res.ApprovedBy, ", "), target.Needed)
	}
	fmt.Fprintln(stdout)
	return nil
}

func newCyclePendingCmd() *cobra.Command {
	var cf clientFlags
	var details bool
	cmd := &cobra.Command{
		Use:   "pending",
		Short: "List cycles with actions waiting for a human decision",
		Long: `List the cycles whose actions wait for approval (or sit in a veto window),
highest risk first, then oldest. By default this reads Temporal visibility
only; --details asks each waiting cycle for its actions, deadlines and rules.`,
		Example: `  airlock cycle pending
  airlock cycle pending --details`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPending(cmd.Context(), cf, details, cmd.OutOrStdout())
		},
	}
	cf.register(cmd.Flags())
	acceptUnusedCatalog(cmd)
	cmd.Flags().BoolVar(&details, "details", false, "query each waiting cycle for its actions (one query per cycle; the default lists from visibility only)")
	return cmd
}

func runPending(ctx context.Context, cf clientFlags, details bool, stdout io.Writer) error {
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	if !details {
		waiting, err := st.Waiting(ctx, 0)
		if err != nil {
			return err
		}
		if len(waiting) == 0 {
			fmt.Fprintln(stdout, "nothing waits for a decision")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CYCLE\tAGENT\tRISK\tPHASE\tSTARTED")
		for _, w := range waiting {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", w.WorkflowID, w.AgentID, w.Risk, w.Phase, w.Started.Local().Format(time.DateTime))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d cycles wait (highest risk first, then oldest); `cycle pending --details` or `cycle show <id>` for their actions\n", len(waiting))
		return nil
	}
	pending, err := st.AllPending(ctx)
	if err != nil {
		return err
	}
	if len(pending) == 0 {
		fmt.Fprintln(stdout, "nothing waits for a decision")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CYCLE\tACTION\tTYPE\tMODE\tRISK\tAPPROVALS\tDEADLINE\tRULE")
	for _, p := range pending {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", p.WorkflowID, p.Action.Index, p.Action.Type,
			p.Action.Decision.Mode, p.Action.Risk, len(p.ApprovedBy), p.Needed,
			p.Deadline.Local().Format(time.DateTime), p.Action.Decision.Rule)
	}
	return tw.Flush()
}
