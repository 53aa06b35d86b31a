package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/policy"
)

// Dynamic shell completion. Cobra's `airlock completion bash|zsh|fish|powershell`
// scripts call back into the binary (`airlock __complete ...`), which runs
// these after parsing the flags typed so far. A completion that cannot
// answer (no catalog, Temporal unreachable) offers nothing rather than an
// error: the shell has nowhere to show one.

// completionTimeout bounds a completion that asks Temporal, so a shell
// never hangs on Tab.
const completionTimeout = 2 * time.Second

// completeAgents offers the catalog's agent ids for a command's one
// positional argument.
func completeAgents(cf *clientFlags) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return agentCompletions(cf.completionCatalog, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// agentCompletions are the agent ids in the catalog at path that start
// with toComplete; none without a readable catalog.
func agentCompletions(path, toComplete string) []cobra.Completion {
	if path == "" {
		return nil
	}
	cat, err := policy.LoadFile(path)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, id := range cat.AgentIDs() {
		if strings.HasPrefix(id, toComplete) {
			ag, _ := cat.Agent(id)
			out = append(out, cobra.CompletionWithDesc(id, "owner "+ag.Owner))
		}
	}
	return out
}

// completeApprovers offers the approvers the catalog lists for the agent
// that agentOf finds in the positional arguments.
func completeApprovers(cf *clientFlags, agentOf func(args []string) string) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		agent := agentOf(args)
		if agent == "" || cf.completionCatalog == "" {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cat, err := policy.LoadFile(cf.completionCatalog)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ag, ok := cat.Agent(agent)
		if !ok {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, a := range ag.Approvers {
			if strings.HasPrefix(a, toComplete) {
				out = append(out, a)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// firstArg is the agent id of `agent kill|resume|promote <agent-id>`.
func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// agentOfCycle is the agent of `approve|deny <cycle-id>`: the id is
// cycle/<agent>/<cycle-id>, with or without the cycle/ prefix.
func agentOfCycle(args []string) string {
	if len(args) == 0 {
		return ""
	}
	parts := strings.Split(strings.TrimPrefix(args[0], "cycle/"), "/")
	if len(parts) != 2 {
		return ""
	}
	return parts[0]
}

// completeCycles offers cycle ids from Temporal: those waiting for a
// decision (approve, deny) or the most recent ones (show, audit).
func completeCycles(cf *clientFlags, waitingOnly bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		st, done, err := cf.starter(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer done()
		var out []cobra.Completion
		add := func(id, desc string) {
			if strings.HasPrefix(id, toComplete) || strings.HasPrefix(strings.TrimPrefix(id, "cycle/"), toComplete) {
				out = append(out, cobra.CompletionWithDesc(id, desc))
			}
		}
		if waitingOnly {
			waiting, err := st.Waiting(ctx, 0)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			for _, w := range waiting {
				add(w.WorkflowID, string(w.Risk)+" risk, waiting since "+w.Started.Local().Format(time.DateTime))
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
		cycles, err := st.List(ctx, "", 50)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		for _, c := range cycles {
			add(c.WorkflowID, c.Status+" "+c.Outcome)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
