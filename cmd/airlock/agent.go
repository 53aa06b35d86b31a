package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
)

// newAgentCmd groups the commands on agents' lifecycle and trust.
func newAgentCmd() *cobra.Command {
	cmd := newGroupCmd(&cobra.Command{
		Use:   "agent",
		Short: "List agents, show their trust state and history, kill, resume or promote them",
		Long: `Each agent has a lifecycle workflow (agent/<id>) holding its status, its trust
phase per action class, its counters and budgets. These commands read it and
send it the kill, resume and promote requests the agent's approvers make.`,
	})
	cmd.AddCommand(newAgentListCmd(), newAgentShowCmd(), newAgentKillCmd(), newAgentResumeCmd(), newAgentPromoteCmd(), newAgentHistoryCmd())
	return cmd
}

func newAgentListCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the catalog's agents with their live status and phases",
		Long: `List every agent in the catalog with its live status, read and write phases,
cycle count and policy violations. Agents that never ran show the catalog's
phases.`,
		Example: `  AIRLOCK_CATALOG=deploy/catalog.yaml airlock agent list
  airlock agent list --catalog deploy/catalog.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgentList(cmd.Context(), cf, cmd.OutOrStdout())
		},
	}
	cf.register(cmd.Flags())
	cf.registerCatalog(cmd, "catalog whose agents are listed (required; env AIRLOCK_CATALOG)")
	return cmd
}

func runAgentList(ctx context.Context, cf clientFlags, stdout io.Writer) error {
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

func newAgentShowCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "show <agent-id>",
		Short: "Show an agent's status, phases, counters, budgets, evidence and transitions",
		Long: `Show an agent's lifecycle state: status, trust phase per class (and the
catalog's caps), counters, budget use, the evidence against each class's next
promotion gate, promotions waiting for approvers, and every transition.`,
		Example: `  airlock agent show sample`,
		Args:    exactArgs(1, "one agent id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgentShow(cmd.Context(), cf, args[0], cmd.OutOrStdout())
		},
		ValidArgsFunction: completeAgents(&cf),
	}
	cf.register(cmd.Flags())
	cf.registerCompletionCatalog(cmd)
	return cmd
}

func runAgentShow(ctx context.Context, cf clientFlags, id string, stdout io.Writer) error {
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	s, err := st.AgentState(ctx, id)
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

type agentKillOptions struct {
	clientFlags
	reason, by string
}

func newAgentKillCmd() *cobra.Command {
	var o agentKillOptions
	cmd := &cobra.Command{
		Use:   "kill <agent-id> --reason <why> --by <approver>",
		Short: "Kill switch: refuse new cycles, cancel running ones, delete Jobs, revoke credentials",
		Long: `Kill an agent at once: its lifecycle workflow refuses new cycles, its running
cycles are cancelled, its Jobs deleted and its Vault token tree revoked (every
action token and lease under it). Prints what was stopped and how long it took.
Whoever kills must be one of the agent's approvers; "agent resume" brings it
back.`,
		Example: `  airlock agent kill sample --reason "runaway scaling" --by U0APPROVER1`,
		Args:    exactArgs(1, "one agent id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgentKill(cmd.Context(), o, args[0], cmd.OutOrStdout())
		},
		ValidArgsFunction: completeAgents(&o.clientFlags),
	}
	o.register(cmd.Flags())
	o.registerCompletionCatalog(cmd)
	cmd.Flags().StringVar(&o.reason, "reason", "", "why the agent is killed (required; recorded in the agent's transitions)")
	cmd.Flags().StringVar(&o.by, "by", "", "who kills: one of the agent's approvers (required)")
	_ = cmd.RegisterFlagCompletionFunc("by", completeApprovers(&o.clientFlags, firstArg))
	_ = cmd.RegisterFlagCompletionFunc("reason", cobra.NoFileCompletions)
	return cmd
}

func runAgentKill(ctx context.Context, o agentKillOptions, id string, stdout io.Writer) error {
	if o.reason == "" || o.by == "" {
		return errors.New("agent kill: want <agent-id> --reason <why> --by <approver>")
	}
	st, done, err := o.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	rep, err := st.Kill(ctx, id, contract.KillRequest{Reason: o.reason, By: o.by, Via: "cli"})
	total := time.Since(start)
	if err != nil {
		return fmt.Errorf("agent kill %s: %w", id, err)
	}
	fmt.Fprintf(stdout, "agent %s killed by %s: new cycles are refused\n", id, o.by)
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

type agentResumeOptions struct {
	clientFlags
	by     []string
	reason string
}

func newAgentResumeCmd() *cobra.Command {
	var o agentResumeOptions
	cmd := &cobra.Command{
		Use:   "resume <agent-id> --by <approver> --by <another approver>",
		Short: "Bring a killed agent back, in shadow, with two distinct approvers",
		Long: fmt.Sprintf(`Resume a killed agent. It comes back in the shadow phase for every class and
earns its trust again. Needs %d distinct approvers of the agent (repeat --by).`, contract.ResumeApprovers),
		Example: `  airlock agent resume sample --by U0APPROVER1 --by U0APPROVER2 --reason "root cause fixed"`,
		Args:    exactArgs(1, "one agent id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgentResume(cmd.Context(), o, args[0], cmd.OutOrStdout())
		},
		ValidArgsFunction: completeAgents(&o.clientFlags),
	}
	o.register(cmd.Flags())
	o.registerCompletionCatalog(cmd)
	cmd.Flags().StringArrayVar(&o.by, "by", nil, fmt.Sprintf("an approver of the agent who agrees to resume it; repeat: %d distinct approvers are needed", contract.ResumeApprovers))
	cmd.Flags().StringVar(&o.reason, "reason", "", "why the agent may run again (recorded in the agent's transitions)")
	_ = cmd.RegisterFlagCompletionFunc("by", completeApprovers(&o.clientFlags, firstArg))
	_ = cmd.RegisterFlagCompletionFunc("reason", cobra.NoFileCompletions)
	return cmd
}

func runAgentResume(ctx context.Context, o agentResumeOptions, id string, stdout io.Writer) error {
	st, done, err := o.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	s, err := st.ResumeAgent(ctx, id, contract.ResumeRequest{By: o.by, Reason: o.reason, Via: "cli"})
	if err != nil {
		return fmt.Errorf("agent resume %s: %w", id, err)
	}
	fmt.Fprintf(stdout, "agent %s resumed by %s: %s, %s\n", id, strings.Join(o.by, ", "), s.Status, phaseList(s.Phases))
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

type agentPromoteOptions struct {
	clientFlags
	class    string
	version  string
	notYet   bool
	by       []string
	override bool
	reason   string
}

func newAgentPromoteCmd() *cobra.Command {
	var o agentPromoteOptions
	cmd := &cobra.Command{
		Use:   "promote <agent-id> (--class read|write | --version <canary>) --by <approver>",
		Short: "Promote an action class one trust phase when its evidence gate is met",
		Long: `Promote one action class of an agent one phase (shadow → advisory →
supervised → autonomous), up to the catalog's cap. The class's evidence must
meet its gate ("agent show" prints it). Promotion to autonomous, and any
--override of an unmet gate, needs two distinct approvers: the first --by
records a pending promotion, the second completes it.

--version promotes the agent's canary version to trusted (its agreement with
the trusted version is the gate) and retires the old one. --not-yet declines
an offered promotion: it is offered again once new evidence arrives.`,
		Example: `  airlock agent promote sample --class write --by U0APPROVER1
  airlock agent promote sample --class write --by U0APPROVER1 --by U0APPROVER2 --override --reason "incident drill"
  airlock agent promote sample --version v2 --by U0APPROVER1
  airlock agent promote sample --class write --not-yet --by U0APPROVER1`,
		Args: exactArgs(1, "one agent id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgentPromote(cmd.Context(), o, args[0], cmd.OutOrStdout())
		},
		ValidArgsFunction: completeAgents(&o.clientFlags),
	}
	o.register(cmd.Flags())
	o.registerCompletionCatalog(cmd)
	cmd.Flags().StringVar(&o.class, "class", "", "the action class to promote one phase: read or write (this or --version)")
	cmd.Flags().StringVar(&o.version, "version", "", "promote the agent's canary version to trusted instead (retires the trusted one)")
	cmd.Flags().BoolVar(&o.notYet, "not-yet", false, "decline the offered promotion for now: offered again once new evidence arrives")
	cmd.Flags().StringArrayVar(&o.by, "by", nil, "an approver of the agent who agrees to the promotion; repeat (autonomous and --override need 2 distinct approvers)")
	cmd.Flags().BoolVar(&o.override, "override", false, "promote although the gate is not met (needs --reason and 2 approvers; marked in the record)")
	cmd.Flags().StringVar(&o.reason, "reason", "", "why the gate is overridden (required with --override)")
	_ = cmd.RegisterFlagCompletionFunc("class", cobra.FixedCompletions([]string{string(policy.ClassRead), string(policy.ClassWrite)}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("by", completeApprovers(&o.clientFlags, firstArg))
	_ = cmd.RegisterFlagCompletionFunc("reason", cobra.NoFileCompletions)
	return cmd
}

func runAgentPromote(ctx context.Context, o agentPromoteOptions, id string, stdout io.Writer) error {
	if (o.class == "") == (o.version == "") {
		return errors.New("agent promote: want <agent-id> --class read|write (or --version <canary>) --by <approver> [--not-yet]")
	}
	st, done, err := o.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	p, err := st.Promote(ctx, id, contract.PromoteRequest{Class: policy.Class(o.class), Version: o.version, Decline: o.notYet,
		By: o.by, Override: o.override, Reason: o.reason, Via: "cli"})
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

func newAgentHistoryCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "history <agent-id>",
		Short: "Print an agent's transitions: promotions, demotions, versions, declines",
		Long: `Print every transition in the agent's record, oldest first: promotions (who
approved, overrides), automatic demotions with their reason and evidence
snapshot, canary versions seen and promoted, and offers declined (not yet).`,
		Example: `  airlock agent history sample`,
		Args:    exactArgs(1, "one agent id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgentHistory(cmd.Context(), cf, args[0], cmd.OutOrStdout())
		},
		ValidArgsFunction: completeAgents(&cf),
	}
	cf.register(cmd.Flags())
	cf.registerCompletionCatalog(cmd)
	return cmd
}

func runAgentHistory(ctx context.Context, cf clientFlags, id string, stdout io.Writer) error {
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	s, err := st.AgentState(ctx, id)
	if err != nil {
		return err
	}
	printHistory(stdout, s)
	return nil
}
