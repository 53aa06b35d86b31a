package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/worker"
)

// newCycleCmd groups the commands on cycles.
func newCycleCmd() *cobra.Command {
	cmd := newGroupCmd(&cobra.Command{
		Use:   "cycle",
		Short: "Start, find, inspect and audit agent cycles",
		Long: `A cycle is one agent reasoning cycle: its thoughts and the actions it
proposes, run as the Temporal workflow cycle/<agent>/<cycle-id>.`,
	})
	cmd.AddCommand(newCycleStartCmd(), newCycleShowCmd(), newCyclePendingCmd(), newCycleListCmd(), newCycleAuditCmd())
	return cmd
}

// clientFlags are shared by commands that talk to Temporal.
type clientFlags struct {
	address, namespace string
	// catalog, when set, makes the starter validate requests before
	// starting them.
	catalog string
	// completionCatalog names agents and approvers for shell completion
	// only: commands that never start a cycle have no use for validation.
	completionCatalog string
	// tel traces the Temporal client when a cycle start joins the agent's
	// trace (traceparent.go).
	tel *telemetry.Telemetry
}

func (c *clientFlags) register(fs *pflag.FlagSet) {
	// Empty flags leave the connection to Temporal's environment
	// configuration (worker.ClientConfig): TEMPORAL_* variables, then the
	// temporal.toml profile, then 127.0.0.1:7233 and "default".
	fs.StringVar(&c.address, "temporal-address", "", temporalAddressUsage)
	fs.StringVar(&c.namespace, "namespace", "", temporalNamespaceUsage)
}

// registerCatalog adds --catalog (default AIRLOCK_CATALOG) with a usage
// that says what this command does with it; starter loads it when set.
func (c *clientFlags) registerCatalog(cmd *cobra.Command, usage string) {
	cmd.Flags().StringVar(&c.catalog, "catalog", os.Getenv("AIRLOCK_CATALOG"), usage)
	_ = cmd.MarkFlagFilename("catalog", "yaml", "yml")
}

// registerCompletionCatalog adds --catalog (default AIRLOCK_CATALOG) to a
// command that only completes agent ids and approvers from it.
func (c *clientFlags) registerCompletionCatalog(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.completionCatalog, "catalog", os.Getenv("AIRLOCK_CATALOG"), catalogCompletionUsage)
	_ = cmd.MarkFlagFilename("catalog", "yaml", "yml")
}

// acceptUnusedCatalog keeps --catalog working, hidden, on commands that
// never used it, so scripts written for the old CLI still run.
func acceptUnusedCatalog(cmd *cobra.Command) {
	var unused string
	cmd.Flags().StringVar(&unused, "catalog", "", catalogUnusedUsage)
	// Hidden, not deprecated: cobra prints deprecation notes to stdout,
	// which would corrupt --json output.
	_ = cmd.Flags().MarkHidden("catalog")
}

func (c *clientFlags) starter(ctx context.Context, extra ...starter.Option) (*starter.Client, func(), error) {
	opts := extra
	if c.catalog != "" {
		cat, err := policy.LoadFile(c.catalog)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, starter.WithCatalog(cat))
	}
	cc := worker.ClientConfig{Address: c.address, Namespace: c.namespace, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Telemetry: c.tel}
	// Payloads are encrypted by workers; reading them needs the same Transit
	// key. Without Vault credentials the CLI still works on plain payloads.
	if os.Getenv("VAULT_TOKEN") != "" && os.Getenv("AIRLOCK_PLAIN_PAYLOADS") != "true" {
		cod, err := worker.NewCodec(ctx, worker.CodecFromEnv(), false)
		if err != nil {
			return nil, nil, err
		}
		cc.Codec = cod
	}
	tc, err := worker.Dial(ctx, cc)
	if err != nil {
		return nil, nil, err
	}
	return starter.New(tc, opts...), tc.Close, nil
}

type cycleStartOptions struct {
	clientFlags
	file        string
	wait        bool
	traceparent string
}

func newCycleStartCmd() *cobra.Command {
	var o cycleStartOptions
	cmd := &cobra.Command{
		Use:   "start -f <request.json>",
		Short: "Propose a cycle from a JSON CycleRequest",
		Long: `Start the AgentCycle workflow for a CycleRequest (schema/cycle-request.schema.json).

An unsigned request is signed as its agent with the agent's own Vault token:
AIRLOCK_AGENT_VAULT_TOKEN, else VAULT_TOKEN (at VAULT_ADDR). Starting the same
agent and cycle id twice starts one cycle.`,
		Example: `  airlock cycle start -f examples/cycle-request.json --wait
  node examples/sign-request.mjs req.json | airlock cycle start -f -
  airlock cycle start -f req.json --traceparent 00-<trace-id>-<span-id>-01   # the cycle joins the agent's trace`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCycleStart(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.register(cmd.Flags())
	o.registerCatalog(cmd, "catalog to validate the request against before starting it (env AIRLOCK_CATALOG); the worker validates again")
	cmd.Flags().StringVarP(&o.file, "file", "f", "", "cycle request JSON file ('-' for stdin; required)")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "wait for the cycle to finish, print its result, and exit non-zero unless it succeeded")
	cmd.Flags().StringVar(&o.traceparent, "traceparent", os.Getenv("TRACEPARENT"), "the agent's W3C traceparent: the cycle joins the agent's trace, exported to OTEL_EXPORTER_OTLP_* when set (env TRACEPARENT)")
	_ = cmd.MarkFlagFilename("file", "json")
	return cmd
}

func runCycleStart(ctx context.Context, o cycleStartOptions, stdout, stderr io.Writer) error {
	if o.file == "" {
		return errors.New("cycle start: -f/--file <request.json> is required")
	}
	req, err := readRequest(o.file)
	if err != nil {
		return err
	}
	ctx, opts, flush, err := joinTrace(ctx, o.traceparent, &o.clientFlags, stderr)
	if err != nil {
		return err
	}
	defer flush()
	if req.Signature == nil {
		signer, err := agentSigner(req.AgentID)
		if err != nil {
			return err
		}
		opts = append(opts, starter.WithSigner(signer))
	}
	st, done, err := o.starter(ctx, opts...)
	if err != nil {
		return err
	}
	defer done()
	run, err := st.Start(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "started %s (run %s)\n", run.WorkflowID, run.RunID)
	if !o.wait {
		return nil
	}
	res, err := run.Get(ctx)
	if err != nil {
		return fmt.Errorf("cycle %s: %w", run.WorkflowID, err)
	}
	printResult(stdout, res)
	if res.Outcome != contract.OutcomeSucceeded {
		return fmt.Errorf("cycle %s: %s", run.WorkflowID, res.Outcome)
	}
	return nil
}

// agentSigner signs as the agent with the agent's own Vault token:
// AIRLOCK_AGENT_VAULT_TOKEN, else VAULT_TOKEN (at VAULT_ADDR). Vault decides
// whether that token may sign as agentID: an agent's token reaches only its
// own key (transit/sign/airlock-agent-<id>).
func agentSigner(agentID string) (*vault.Signer, error) {
	tok := envOr("AIRLOCK_AGENT_VAULT_TOKEN", os.Getenv("VAULT_TOKEN"))
	if tok == "" {
		return nil, fmt.Errorf("cycle start: the request is unsigned and there is no Vault token to sign it as agent %s: "+
			"log in to Vault as the agent and set AIRLOCK_AGENT_VAULT_TOKEN or VAULT_TOKEN (README: Signing a cycle request), or pass a signed request", agentID)
	}
	return vault.NewSigner(vault.Config{Address: os.Getenv("VAULT_ADDR"), Token: tok})
}

func readRequest(path string) (contract.CycleRequest, error) {
	var req contract.CycleRequest
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return req, fmt.Errorf("read request: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("parse request %s: %w", path, err)
	}
	return req, nil
}

func newCycleShowCmd() *cobra.Command {
	var cf clientFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show <workflow-id>",
		Short: "Show a cycle's outcome and each action's mode, Job, lease accessor and output",
		Long: `Show a cycle's status and actions. The id is the workflow id
cycle/<agent>/<cycle-id>; the cycle/ prefix may be left out. Works on running
and finished cycles.`,
		Example: `  airlock cycle show cycle/sample/example-1
  airlock cycle show sample/example-1 --json`,
		Args: exactArgs(1, "one workflow id (cycle/<agent>/<cycle-id>)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCycleShow(cmd.Context(), cf, args[0], asJSON, cmd.OutOrStdout())
		},
		ValidArgsFunction: completeCycles(&cf, false),
	}
	cf.register(cmd.Flags())
	acceptUnusedCatalog(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the CycleResult as JSON instead of a table")
	return cmd
}

func runCycleShow(ctx context.Context, cf clientFlags, id string, asJSON bool, stdout io.Writer) error {
	if !strings.HasPrefix(id, "cycle/") {
		id = "cycle/" + id // accept <agent>/<cycle-id>
	}
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := st.Status(ctx, id)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printResult(stdout, res)
	return nil
}

func printResult(w io.Writer, res contract.CycleResult) {
	outcome := string(res.Outcome)
	if outcome == "" {
		outcome = "running"
	}
	fmt.Fprintf(w, "cycle    %s\noutcome  %s\n", res.WorkflowID, outcome)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tTYPE\tMODE\tOUTCOME\tJOB\tLEASE ACCESSOR\tOUTPUT / ERROR")
	for _, a := range res.Actions {
		job := "-"
		if a.Job != nil {
			job = a.Job.Namespace + "/" + a.Job.Name
		}
		detail := a.Output
		if a.DryRun != "" {
			detail = "dry-run: " + a.DryRun
		}
		if a.Error != "" {
			detail = a.Error
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Index, a.Type, a.Decision.Mode, a.Outcome, job, orDash(a.LeaseAccessor), oneLine(detail))
		if rb := a.Rollback; rb != nil {
			fmt.Fprintf(tw, "\t↳ rollback %s\t%s\t%s\t%s\t%s\t%s\n", rb.Type, rb.Decision.Mode, rb.Outcome, rb.Job.Namespace+"/"+rb.Job.Name, orDash(rb.LeaseAccessor), oneLine(rb.Output+rb.Error))
		}
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
