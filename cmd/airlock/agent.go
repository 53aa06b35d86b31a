package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
)

// runAgent dispatches `airlock agent list|show|history|kill|resume|promote`.
func runAgent(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("agent: want list, show, history, kill, resume or promote")
	}
	switch args[0] {
	case "list":
		return runAgentList(ctx, args[1:], stdout)
	case "show":
		return runAgentShow(ctx, args[1:], stdout)
	case "kill":
		return runAgentKill(ctx, args[1:], stdout)
	case "resume":
		return runAgentResume(ctx, args[1:], stdout)
	case "promote":
		return runAgentPromote(ctx, args[1:], stdout)
	case "history":
		return runAgentHistory(ctx, args[1:], stdout)
	}
	return fmt.Errorf("agent: unknown command %q (want list, show, history, kill, resume or promote)", args[0])
}

// multiFlag collects a repeated flag (--by U1 --by U2).
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runAgentList(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("agent list", flag.ContinueOnError)
	cf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cf.catalog == "" {
		return errors.New("agent list: the catalog names the agents: set AIRLOCK_CATALOG or --catalog")
	}
	cat, err := policy.LoadFile(cf.catalog)
	if err != nil {
		return err
	}
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tSTATUS\tREAD\tWRITE\tCYCLES\tVIOLATIONS\tSINCE")
	for _, id := range cat.AgentIDs() {
		ag, _ := cat.Agent(id)
		s, err := st.AgentState(ctx, id)
		switch {
		case errors.Is(err, starter.ErrNoAgentState):
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", id, "active (no cycle yet)",
				ag.Phases[policy.ClassRead], ag.Phases[policy.ClassWrite], 0, 0, "-")
		case err != nil:
			fmt.Fprintf(tw, "%s\tunknown: %v\t\t\t\t\t\n", id, err)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", id, s.Status, s.Phases[policy.ClassRead], s.Phases[policy.ClassWrite],
				s.Counters.Cycles, s.Counters.Violations, s.Since.UTC().Format(time.RFC3339))
		}
	}
	return tw.Flush()
}

func runAgentShow(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("agent show", flag.ContinueOnError)
	cf.register(fs)
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("agent show: want one agent id")
	}
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	s, err := st.AgentState(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	printAgent(stdout, s)
	return nil
}

// printAgent prints an agent's state as `agent show` does.
func printAgent(w io.Writer, s contract.AgentState) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "agent\t%s (workflow %s, run %d)\n", s.AgentID, contract.AgentWorkflowID(s.AgentID), s.Runs+1)
	status := string(s.Status)
	if !s.Since.IsZero() {
		status += " since " + s.Since.UTC().Format(time.RFC3339)
	}
	if s.Why != "" {
		status += ": " + s.Why
	}
	fmt.Fprintf(tw, "status\t%s\n", status)
	fmt.Fprintf(tw, "phases\t%s (caps: %s)\n", phaseList(s.Phases), phaseList(s.Caps))
	fmt.Fprintf(tw, "approvers\t%s\n", strings.Join(s.Approvers, ", "))
	c := s.Counters
	fmt.Fprintf(tw, "cycles\t%d%s\n", c.Cycles, countList(c.Outcomes))
	fmt.Fprintf(tw, "actions\t%s\n", strings.TrimPrefix(countList(c.Actions), " "))
	fmt.Fprintf(tw, "humans\t%d approved, %d denied\n", c.Approvals, c.Denials)
	fmt.Fprintf(tw, "violations\t%d (and %d unverified requests claiming this agent)\n", c.Violations, c.Unverified)
	fmt.Fprintf(tw, "budgets\t%s\n", budgetList(s.Budget, time.Now()))
	refused := "0"
	if len(c.BudgetRefusals) > 0 {
		refused = strings.TrimSuffix(strings.TrimPrefix(countList(c.BudgetRefusals), " ("), ")")
	}
	fmt.Fprintf(tw, "refused\t%s (over budget, never queued)\n", refused)
	if k := s.LastKill; k != nil {
		fmt.Fprintf(tw, "last kill\t%d cycles canceled, %d Jobs deleted, %d agent tokens revoked with every token and lease under them (%d sweeps)\n",
			len(k.CyclesCanceled), len(k.JobsDeleted), len(k.RevokedAccessors), k.Passes)
	}
	tw.Flush()
	printTrust(w, s)
	printVersions(w, s)
	fmt.Fprintln(w, "transitions (oldest first):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, t := range s.Transitions {
		by := strings.Join(t.By, ",")
		if by == "" {
			by = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\tby %s\t%s\n", t.At.UTC().Format(time.RFC3339), t.Kind, t.To, phaseList(t.Phases), by, t.Why)
	}
	tw.Flush()
}

// budgetList shows each budget's use against its limit at now.
func budgetList(b contract.AgentBudget, now time.Time) string {
	use, limits := b.Use(now), b.Limits.WithDefaults()
	var parts []string
	for _, name := range policy.BudgetNames {
		parts = append(parts, fmt.Sprintf("%s %d/%d", name, use.Used(name), limits.Limit(name)))
	}
	return strings.Join(parts, " · ")
}

func phaseList(m map[policy.Class]policy.Phase) string {
	var parts []string
	for _, cl := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%s", cl, m[cl]))
	}
	return strings.Join(parts, " ")
}

func countList(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func runAgentKill(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("agent kill", flag.ContinueOnError)
	cf.register(fs)
	reason := fs.String("reason", "", "why (required; recorded in the agent's transitions)")
	by := fs.String("by", "", "who kills: one of the agent's approvers (required)")
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 || *reason == "" || *by == "" {
		return errors.New("agent kill: want <agent-id> --reason <why> --by <approver>")
	}
	id := fs.Arg(0)
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	rep, err := st.Kill(ctx, id, contract.KillRequest{Reason: *reason, By: *by, Via: "cli"})
	total := time.Since(start)
	if err != nil {
		return fmt.Errorf("agent kill %s: %w", id, err)
	}
	fmt.Fprintf(stdout, "agent %s killed by %s: new cycles are refused\n", id, *by)
	fmt.Fprintf(stdout, "  cycles canceled:     %d %s\n", len(rep.CyclesCanceled), strings.Join(rep.CyclesCanceled, " "))
	fmt.Fprintf(stdout, "  Jobs deleted:        %d %s\n", len(rep.JobsDeleted), strings.Join(rep.JobsDeleted, " "))
	fmt.Fprintf(stdout, "  token trees revoked: %d (every action token and lease under them)\n", len(rep.RevokedAccessors))
	fmt.Fprintf(stdout, "  call → last Job gone: %s · call → last lease revoked: %s · done after %s (%d sweeps)\n",
		since(start, rep.JobsGoneAt, total), since(start, rep.RevokedAt, total), total.Round(time.Millisecond), rep.Passes)
	return nil
}

// since is at - start, measured across the worker's and this machine's
// clocks; a skew that makes it impossible shows the total instead.
func since(start, at time.Time, total time.Duration) string {
	d := at.Sub(start)
	if at.IsZero() || d < 0 || d > total {
		return "≤ " + total.Round(time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func runAgentResume(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("agent resume", flag.ContinueOnError)
	cf.register(fs)
	var by multiFlag
	fs.Var(&by, "by", fmt.Sprintf("an approver of the agent; repeat: %d distinct approvers are needed", contract.ResumeApprovers))
	reason := fs.String("reason", "", "why (recorded in the agent's transitions)")
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("agent resume: want <agent-id> --by <approver> --by <another approver>")
	}
	id := fs.Arg(0)
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	s, err := st.ResumeAgent(ctx, id, contract.ResumeRequest{By: by, Reason: *reason, Via: "cli"})
	if err != nil {
		return fmt.Errorf("agent resume %s: %w", id, err)
	}
	fmt.Fprintf(stdout, "agent %s resumed by %s: %s, %s\n", id, strings.Join(by, ", "), s.Status, phaseList(s.Phases))
	return nil
}

// printTrust prints, per class, the evidence against the next gate and any
// promotion waiting for humans.
func printTrust(w io.Writer, s contract.AgentState) {
	if len(s.Evidence) == 0 {
		return
	}
	fmt.Fprintln(w, "evidence (since each class entered its phase):")
	now := time.Now()
	for _, cl := range slices.Sorted(maps.Keys(s.Evidence)) {
		ev := s.Evidence[cl]
		g := contract.CheckGate(cl, ev, s.Phases[cl], s.Caps[cl], s.Trust.WithDefaults().Gates, now)
		fmt.Fprintf(w, "  %s %s since %s: %d shadow proposals (%d agree, %d disagree), %d approved, %d denied, %d runs (%d failed, %d stopped, %d rolled back), %d violations\n",
			cl, ev.Phase, ev.Since.UTC().Format(time.RFC3339), ev.ShadowProposals, ev.Feedback.Agree, ev.Feedback.Disagree,
			ev.Approved, ev.Denied, ev.Runs, ev.Failed, ev.Vetoed, ev.Rollbacks, ev.Violations)
		if g.To == "" {
			fmt.Fprintf(w, "    at the catalog's cap (%s): no promotion\n", s.Caps[cl])
			continue
		}
		state := "not met"
		if g.Met {
			state = "met"
		}
		var checks []string
		for _, c := range g.Checks {
			mark := "✗"
			if c.Met {
				mark = "✓"
			}
			checks = append(checks, mark+" "+c.Text)
		}
		fmt.Fprintf(w, "    gate to %s %s: %s\n", g.To, state, strings.Join(checks, "; "))
		if p, ok := s.Promotions[cl]; ok {
			fmt.Fprintf(w, "    promotion to %s %s: %d/%d approvers (%s)\n", p.To, p.Status, len(p.By), p.Needed, strings.Join(p.By, ", "))
		}
	}
}

func runAgentPromote(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("agent promote", flag.ContinueOnError)
	cf.register(fs)
	class := fs.String("class", "", "the action class to promote one phase: read or write")
	version := fs.String("version", "", "promote the agent's canary version to trusted instead (retires the trusted one)")
	notYet := fs.Bool("not-yet", false, "decline the offered promotion for now: offered again once new evidence arrives")
	var by multiFlag
	fs.Var(&by, "by", "an approver of the agent; repeat (autonomous and --override need 2 distinct approvers)")
	override := fs.Bool("override", false, "promote although the gate is not met (needs --reason and 2 approvers; marked in the record)")
	reason := fs.String("reason", "", "why (required with --override)")
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 || (*class == "") == (*version == "") {
		return errors.New("agent promote: want <agent-id> --class read|write (or --version <canary>) --by <approver> [--not-yet]")
	}
	id := fs.Arg(0)
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	p, err := st.Promote(ctx, id, contract.PromoteRequest{Class: policy.Class(*class), Version: *version, Decline: *notYet,
		By: by, Override: *override, Reason: *reason, Via: "cli"})
	if err != nil {
		return fmt.Errorf("agent promote %s: %w", id, err)
	}
	printPromotion(stdout, id, p)
	return nil
}

// printPromotion prints what became of a promote (or not-yet) request.
func printPromotion(w io.Writer, id string, p contract.Promotion) {
	what := fmt.Sprintf("%s actions %s -> %s", p.Class, p.From, p.To)
	if p.Version != "" {
		what = "version " + p.Version + " -> trusted"
	}
	switch p.Status {
	case contract.PromotionPromoted:
		fmt.Fprintf(w, "agent %s: %s promoted by %s\n", id, what, strings.Join(p.By, ", "))
	case contract.PromotionDeclined:
		fmt.Fprintf(w, "agent %s: %s declined (not yet) by %s: offered again once new evidence arrives\n", id, what, strings.Join(p.DeclinedBy, ", "))
	default:
		fmt.Fprintf(w, "agent %s: promotion of %s waits for %d more approver(s) (%d/%d: %s)\n",
			id, what, p.Needed-len(p.By), len(p.By), p.Needed, strings.Join(p.By, ", "))
	}
}

func runAgentHistory(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("agent history", flag.ContinueOnError)
	cf.register(fs)
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("agent history: want one agent id")
	}
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	s, err := st.AgentState(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	printHistory(stdout, s)
	return nil
}
