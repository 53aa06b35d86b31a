package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockhq/airlock/contract"
)

// runDecide implements `airlock approve|deny <cycle> [--action N]`. It goes
// through the same validated Update as a Slack click.
func runDecide(ctx context.Context, kind contract.DecisionKind, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet(string(kind), flag.ContinueOnError)
	cf.register(fs)
	action := fs.Int("action", -1, "action index (default: the only action waiting)")
	approver := fs.String("approver", os.Getenv("AIRLOCK_APPROVER"), "your approver id as listed in the catalog (env AIRLOCK_APPROVER)")
	comment := fs.String("comment", "", "optional comment recorded with the decision")
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%s: want one cycle id (cycle/<agent>/<cycle-id>)", kind)
	}
	if *approver == "" {
		return fmt.Errorf("%s: --approver (or AIRLOCK_APPROVER) is required", kind)
	}
	id := fs.Arg(0)
	if !strings.HasPrefix(id, "cycle/") {
		id = "cycle/" + id
	}
	st, done, err := cf.starter(ctx)
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
		if *action == -1 || pending[i].Action.Index == *action {
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
		Approver: *approver, Via: "cli", Comment: *comment,
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

func runPending(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("cycle pending", flag.ContinueOnError)
	cf.register(fs)
	details := fs.Bool("details", false, "query each waiting cycle for its actions (one query per cycle; the default lists from visibility only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	if !*details {
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

// reorder moves flags before positional arguments so `approve <id> --action 1`
// works with the standard flag package.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}
