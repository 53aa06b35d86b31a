// Command airlock is Airlock's one binary: the local dev stack, the worker,
// and the commands humans and agents use to start and inspect cycles.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/airlockhq/airlock/contract"
)

const usage = `airlock — durable, approved, least-privilege actions for AI agents

Usage:
  airlock dev                         start Temporal, Vault, Kubernetes (kwok) and a worker; run a sample cycle
  airlock worker [flags]              run a worker (TEMPORAL_ADDRESS or TEMPORAL_PROFILE, VAULT_ADDR, VAULT_TOKEN, KUBECONFIG, AIRLOCK_CATALOG)
  airlock approvals [--listen :8080]  serve Slack's interaction endpoint (SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN)
  airlock codec-server [--listen :8081] decrypt payloads for the Temporal UI (VAULT_ADDR, VAULT_TOKEN, AIRLOCK_CODEC_TOKEN)
  airlock bootstrap                   dev/demo setup for a catalog: Vault policies, token roles, agent keys, namespaces (docker-compose runs it)
  airlock mcp --agent <id> [--http :8090]  serve the agent's actions as MCP tools (stdio, or streamable HTTP)
  airlock cycle start -f req.json     propose a cycle (JSON CycleRequest); --wait prints its result
  airlock cycle show <workflow-id>    show a cycle's status and actions (id: cycle/<agent>/<cycle-id>)
  airlock cycle pending               list actions waiting for a human decision
  airlock cycle list [--query Q]      find cycles, e.g. --query 'AirlockAgent="sample" AND AirlockOutcome="denied"'
  airlock cycle audit <id> [--json]   print and verify a cycle's hash-chained thought trail; --file F verifies an export
                                      --infra --vault-audit-log F --k8s-audit-log F joins it with Vault's and the apiserver's audit logs
  airlock approve <cycle> [--action N] --approver <id>   approve a waiting action (same check as Slack)
  airlock deny <cycle> [--action N] --approver <id>      deny it (or stop it during a veto window)
  airlock agent list                  the catalog's agents with their live status and phases (AIRLOCK_CATALOG)
  airlock agent show <id>             status, phase per class, counters, recent transitions
  airlock agent kill <id> --reason R --by <approver>     kill switch: refuse new cycles, cancel running ones, delete Jobs, revoke credentials
  airlock agent resume <id> --by U1 --by U2              bring a killed agent back, in shadow (two distinct approvers)
  airlock agent promote <id> --class write --by U1 [--by U2] [--override --reason ...]
                                     promote a class one phase when its gate is met (two approvers for autonomous or an override)

Run "airlock <command> -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "airlock:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "worker":
		return runWorker(ctx, args[1:], stderr)
	case "approvals":
		return runApprovals(ctx, args[1:], stderr)
	case "codec-server":
		return runCodecServer(ctx, args[1:], stderr)
	case "cycle":
		if len(args) < 2 {
			return errors.New("cycle: want start or show")
		}
		switch args[1] {
		case "start":
			return runCycleStart(ctx, args[2:], stdout)
		case "show":
			return runCycleShow(ctx, args[2:], stdout)
		case "pending":
			return runPending(ctx, args[2:], stdout)
		case "audit":
			return runAudit(ctx, args[2:], stdout)
		case "list":
			return runList(ctx, args[2:], stdout)
		}
		return fmt.Errorf("cycle: unknown command %q (want start, show, pending, audit or list)", args[1])
	case "approve":
		return runDecide(ctx, contract.DecisionApprove, args[1:], stdout)
	case "deny":
		return runDecide(ctx, contract.DecisionDeny, args[1:], stdout)
	case "agent":
		return runAgent(ctx, args[1:], stdout)
	case "bootstrap":
		return runBootstrap(ctx, args[1:], stdout)
	case "mcp":
		return runMCP(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// newLogger logs JSON by default, as a worker in a cluster should; text is
// easier to read in a terminal.
func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// Usage of the Temporal connection flags, shared by every command.
const (
	temporalAddressUsage   = "Temporal frontend host:port; overrides TEMPORAL_ADDRESS and the temporal.toml profile (TEMPORAL_PROFILE). Default 127.0.0.1:7233. TLS and API key: TEMPORAL_TLS_*, TEMPORAL_API_KEY"
	temporalNamespaceUsage = "Temporal namespace; overrides TEMPORAL_NAMESPACE and the temporal.toml profile. Default: default"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
