// Command airlock is Airlock's one binary: the local dev stack, the worker,
// and the commands humans and agents use to start and inspect cycles.
//
// Each command group has its own file with one newXCmd constructor per
// command; the constructor binds flags to an options struct and its RunE
// hands them to the runX function that does the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "airlock:", err)
		os.Exit(1)
	}
}

// run executes one airlock command line. Tests call it in-process; its
// error is what main prints before exiting 1. Help is not an error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

func newRootCmd() *cobra.Command {
	root := newGroupCmd(&cobra.Command{
		Use:   "airlock",
		Short: "Durable, approved, least-privilege actions for AI agents",
		Long: `airlock — durable, approved, least-privilege actions for AI agents.

Every agent reasoning cycle is a Temporal workflow: each action leases scoped
Vault credentials, runs as an isolated Kubernetes Job, and waits for a human
where the agent's trust phase (shadow, advisory, supervised, autonomous) says so.

Commands that talk to Temporal read TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE or a
temporal.toml profile (TEMPORAL_PROFILE); --temporal-address and --namespace
override them. Secrets (VAULT_TOKEN, SLACK_*, AIRLOCK_CODEC_TOKEN) come from the
environment only, never from flags.`,
		Example: `  airlock dev                                   # local stack and a sample cycle
  airlock cycle start -f examples/cycle-request.json --wait
  airlock cycle pending
  airlock approve cycle/advisor/c-1 --approver U0APPROVER1
  source <(airlock completion bash)             # shell completion`,
	})
	// Errors are printed once, by main; usage only on --help.
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(
		newDevCmd(),
		newWorkerCmd(),
		newApprovalsCmd(),
		newCodecServerCmd(),
		newBootstrapCmd(),
		newMCPCmd(),
		newCycleCmd(),
		newApproveCmd(),
		newDenyCmd(),
		newAgentCmd(),
	)
	return root
}

// newGroupCmd makes cmd a command group: alone it prints its help; with an
// argument that names no subcommand it fails, where cobra would print help
// and exit 0.
func newGroupCmd(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
		}
		return usageError(cmd, errors.New(msg))
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	cmd.ValidArgsFunction = cobra.NoFileCompletions
	cmd.SuggestionsMinimumDistance = 2 // cobra's default, which SuggestionsFor does not apply
	return cmd
}

// usageError points a caller who got a command's syntax wrong at its help.
func usageError(cmd *cobra.Command, err error) error {
	return fmt.Errorf("%w\nRun '%s --help' for usage.", err, cmd.CommandPath())
}

// flagError explains a bad flag. Go's flag package, which this CLI used
// before cobra, accepted long flags with one dash (-catalog); pflag reads
// that as shorthands, so name the two-dash spelling.
func flagError(cmd *cobra.Command, err error) error {
	var ne *pflag.NotExistError
	if errors.As(err, &ne) {
		name, _, _ := strings.Cut(ne.GetSpecifiedShortnames(), "=")
		if len(name) > 1 && cmd.Flags().Lookup(name) != nil {
			err = fmt.Errorf("%w: long flags take two dashes: --%s", err, ne.GetSpecifiedShortnames())
		}
	}
	return usageError(cmd, err)
}

// exactArgs wants n positional arguments, described by what.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError(cmd, fmt.Errorf("%s: want %s, got %d arguments", cmdName(cmd), what, len(args)))
		}
		return nil
	}
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError(cmd, fmt.Errorf("%s: takes no arguments, got %q", cmdName(cmd), args))
	}
	return nil
}

// cmdName is the command's path without the binary's name, as errors
// (which main prefixes with "airlock:") name it.
func cmdName(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// newLogger logs JSON by default, as a worker in a cluster should; text is
// easier to read in a terminal.
func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// Usages of flags that mean the same on every command that has them; the
// command tree test allows only these to repeat.
const (
	temporalAddressUsage   = "Temporal frontend host:port; overrides TEMPORAL_ADDRESS and the temporal.toml profile (TEMPORAL_PROFILE). Default 127.0.0.1:7233. TLS and API key: TEMPORAL_TLS_*, TEMPORAL_API_KEY"
	temporalNamespaceUsage = "Temporal namespace; overrides TEMPORAL_NAMESPACE and the temporal.toml profile. Default: default"
	logFormatUsage         = "log format: json (for log collectors) or text (for a terminal) (env AIRLOCK_LOG_FORMAT)"
	kubeconfigUsage        = "kubeconfig path; empty = in-cluster (env KUBECONFIG)"
	vaultAddrUsage         = "Vault address (env VAULT_ADDR); the token comes from VAULT_TOKEN only"
	catalogCompletionUsage = "agent and action catalog YAML, used only to complete agent ids and approvers in the shell (env AIRLOCK_CATALOG)"
	catalogUnusedUsage     = "unused by this command; accepted so existing scripts keep working"
)

// sharedUsages lists the usages above for the command tree test.
var sharedUsages = []string{temporalAddressUsage, temporalNamespaceUsage, logFormatUsage, kubeconfigUsage, vaultAddrUsage, catalogCompletionUsage, catalogUnusedUsage}

// addLogFormat registers --log-format, completed with its two values.
func addLogFormat(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "log-format", envOr("AIRLOCK_LOG_FORMAT", "json"), logFormatUsage)
	_ = cmd.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{"json", "text"}, cobra.ShellCompDirectiveNoFileComp))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
