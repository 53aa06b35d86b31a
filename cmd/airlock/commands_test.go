package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/infraaudit"
	"github.com/airlockhq/airlock/policy"
)

// runCLI runs one command line in-process, as main does.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// commandTree is every command a user can reach, with cobra's own help and
// completion commands, as Execute would add them.
func commandTree(t *testing.T) []*cobra.Command {
	t.Helper()
	root := newRootCmd()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var all []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		all = append(all, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return all
}

// path is the command line that reaches cmd, without the binary's name.
func path(cmd *cobra.Command) []string {
	var p []string
	for c := cmd; c.HasParent(); c = c.Parent() {
		p = append([]string{c.Name()}, p...)
	}
	return p
}

func TestEveryCommandDescribesItselfAndItsFlags(t *testing.T) {
	t.Setenv("AIRLOCK_CATALOG", "")
	type seen struct {
		name     string
		commands []string
	}
	usages := map[string]*seen{}
	tree := commandTree(t)
	require.Greater(t, len(tree), 20, "the tree holds every command")
	for _, cmd := range tree {
		assert.NotEmpty(t, cmd.Short, "%q has no Short", cmd.CommandPath())
		assert.NotEmpty(t, cmd.Long, "%q has no Long", cmd.CommandPath())
		cobras := slices.Contains([]string{"completion", "help"}, firstOr(path(cmd), ""))
		cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
			assert.NotEmpty(t, f.Usage, "%s --%s has no usage", cmd.CommandPath(), f.Name)
			if f.Name == "help" || cobras {
				return // cobra's own: "help for <command>", completion's --no-descriptions
			}
			s := usages[f.Usage]
			if s == nil {
				s = &seen{name: f.Name}
				usages[f.Usage] = s
			}
			assert.Equal(t, s.name, f.Name, "--%s and --%s share the usage %q", s.name, f.Name, f.Usage)
			s.commands = append(s.commands, cmd.CommandPath())
		})
	}
	for usage, s := range usages {
		if len(s.commands) > 1 && !slices.Contains(sharedUsages, usage) {
			t.Errorf("--%s has the same usage on %v: say what it does on each, or make it a shared usage constant: %q", s.name, s.commands, usage)
		}
	}
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

func TestHelpExitsZeroForEveryCommand(t *testing.T) {
	for _, cmd := range commandTree(t) {
		args := append(path(cmd), "--help")
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, _, err := runCLI(t, args...)
			require.NoError(t, err)
			assert.Contains(t, out, "Usage:")
			assert.Contains(t, out, strings.TrimSpace(strings.SplitN(cmd.Long, "\n", 2)[0]), "help shows the command's description")
		})
	}
}

func TestUnknownFlagFailsEveryCommand(t *testing.T) {
	for _, cmd := range commandTree(t) {
		args := append(path(cmd), "--no-such-flag")
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, _, err := runCLI(t, args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "unknown flag: --no-such-flag")
			assert.Contains(t, err.Error(), "Run '"+cmd.CommandPath()+" --help' for usage.")
		})
	}
}

// Mistakes are refused before anything dials Temporal or Vault, with a
// message that says what was wanted.
func TestBadCommandLinesFailClearly(t *testing.T) {
	t.Setenv("AIRLOCK_APPROVER", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus" for "airlock"`},
		{[]string{"cycle", "shwo"}, `unknown command "shwo" for "airlock cycle" (did you mean show?)`},
		{[]string{"agent", "bogus"}, `unknown command "bogus" for "airlock agent"`},
		{[]string{"cycle", "show"}, "cycle show: want one workflow id (cycle/<agent>/<cycle-id>), got 0 arguments"},
		{[]string{"cycle", "show", "a/b", "c/d"}, "cycle show: want one workflow id (cycle/<agent>/<cycle-id>), got 2 arguments"},
		{[]string{"cycle", "audit", "a/b", "c/d"}, "cycle audit: want one cycle id, got 2 arguments"},
		{[]string{"cycle", "audit"}, "cycle audit: want one cycle id, or --file <trail.jsonl>"},
		{[]string{"cycle", "start"}, "cycle start: -f/--file <request.json> is required"},
		{[]string{"cycle", "start", "req.json"}, `cycle start: takes no arguments, got ["req.json"]`},
		{[]string{"cycle", "pending", "now"}, "cycle pending: takes no arguments"},
		{[]string{"approve"}, "approve: want one cycle id (cycle/<agent>/<cycle-id>), got 0 arguments"},
		{[]string{"deny", "sample/c-1"}, "deny: --approver (or AIRLOCK_APPROVER) is required"},
		{[]string{"agent", "kill", "sample", "--by", "U1"}, "agent kill: want <agent-id> --reason <why> --by <approver>"},
		{[]string{"agent", "promote", "sample", "--by", "U1"}, "agent promote: want <agent-id> --class read|write (or --version <canary>)"},
		{[]string{"agent", "resume"}, "agent resume: want one agent id, got 0 arguments"},
		{[]string{"agent", "list", "--catalog", ""}, "agent list: the catalog names the agents: set AIRLOCK_CATALOG or --catalog"},
		{[]string{"bootstrap", "--catalog", ""}, "bootstrap: no catalog: set AIRLOCK_CATALOG or --catalog"},
		{[]string{"codec-server", "extra"}, `codec-server: takes no arguments, got ["extra"]`},
		{[]string{"mcp", "extra"}, `mcp: takes no arguments, got ["extra"]`},
		{[]string{"mcp", "--agent", "sample", "--catalog", ""}, "mcp: the catalog is required: --catalog or AIRLOCK_CATALOG"},
		{[]string{"mcp", "--wait", "soon"}, `invalid argument "soon" for "--wait"`},
		{[]string{"mcp", "-agent", "sample"}, "long flags take two dashes: --agent"},
		{[]string{"worker", "--kube-qps", "fast"}, `invalid argument "fast" for "--kube-qps"`},
		// Go's flag package took -catalog; pflag does not, and says so.
		{[]string{"agent", "list", "-catalog", "c.yaml"}, "long flags take two dashes: --catalog"},
		{[]string{"cycle", "list", "-limit=5"}, "long flags take two dashes: --limit=5"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// A bare group prints its help, as kubectl and helm do.
func TestGroupAloneShowsItsCommands(t *testing.T) {
	out, _, err := runCLI(t, "agent")
	require.NoError(t, err)
	for _, sub := range []string{"list", "show", "kill", "resume", "promote"} {
		assert.Contains(t, out, "  "+sub+" ")
	}
}

// Scripts written for the old CLI pass --catalog to commands that never
// read it: they keep working.
func TestUnusedCatalogFlagStillAccepted(t *testing.T) {
	trail := filepath.Join(t.TempDir(), "trail.jsonl")
	require.NoError(t, os.WriteFile(trail, nil, 0o600))
	out, _, err := runCLI(t, "cycle", "audit", "--catalog", "deploy/catalog.yaml", "--file", trail)
	// The flag is accepted: the command runs, verifies the (empty) chain and
	// refuses only the missing chain-head signature.
	require.ErrorIs(t, err, infraaudit.ErrSignature)
	assert.Equal(t, "audit trail of "+trail+"\n\n", out[:len("audit trail of "+trail+"\n\n")], "nothing but the trail on stdout")
	assert.Contains(t, out, "chain verified: 0 entries")
	help, _, err := runCLI(t, "cycle", "audit", "--help")
	require.NoError(t, err)
	assert.NotContains(t, help, "--catalog", "a flag the command does not use is not advertised")
}

func TestCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash":       "complete -o default -F __start_airlock airlock",
		"zsh":        "#compdef airlock",
		"fish":       "complete -c airlock ",
		"powershell": "Register-ArgumentCompleter -CommandName 'airlock'",
	} {
		t.Run(shell, func(t *testing.T) {
			out, _, err := runCLI(t, "completion", shell)
			require.NoError(t, err)
			assert.Contains(t, out, marker)
		})
	}
}

// complete asks the binary for completions as the shell scripts do and
// returns the offered values (descriptions dropped).
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	out, _, err := runCLI(t, append([]string{cobra.ShellCompRequestCmd}, args...)...)
	require.NoError(t, err)
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, ":") {
			break // the directive
		}
		v, _, _ := strings.Cut(line, "\t")
		got = append(got, v)
	}
	return got
}

func TestDynamicCompletion(t *testing.T) {
	const catalog = "../../deploy/catalog.yaml"
	cat, err := policy.LoadFile(catalog)
	require.NoError(t, err)
	require.NotEmpty(t, cat.AgentIDs())
	agent := cat.AgentIDs()[0]
	ag, _ := cat.Agent(agent)
	require.NotEmpty(t, ag.Approvers)

	t.Setenv("AIRLOCK_CATALOG", catalog)
	assert.Equal(t, cat.AgentIDs(), complete(t, "agent", "show", ""), "agent ids from AIRLOCK_CATALOG")
	assert.Equal(t, []string{agent}, complete(t, "agent", "kill", agent[:len(agent)-1]), "only ids with the typed prefix")
	assert.Equal(t, ag.Approvers, complete(t, "agent", "kill", agent, "--by", ""))
	assert.Equal(t, ag.Approvers, complete(t, "approve", "cycle/"+agent+"/c-1", "--approver", ""))
	assert.Equal(t, ag.Approvers, complete(t, "deny", agent+"/c-1", "--approver", ""))
	assert.Equal(t, []string{"read", "write"}, complete(t, "agent", "promote", agent, "--class", ""))
	assert.Equal(t, []string{"json", "text"}, complete(t, "worker", "--log-format", ""))
	assert.Equal(t, cat.AgentIDs(), complete(t, "mcp", "--agent", ""), "mcp serves one of the catalog's agents")

	t.Setenv("AIRLOCK_CATALOG", "")
	assert.Empty(t, complete(t, "agent", "show", ""), "no catalog, no guesses")
	assert.Equal(t, cat.AgentIDs(), complete(t, "agent", "resume", "--catalog", catalog, ""), "--catalog names the catalog")
}
