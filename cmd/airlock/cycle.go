package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/worker"
)

// clientFlags are shared by commands that talk to Temporal.
type clientFlags struct {
	address, namespace, catalog string
	tel                         *telemetry.Telemetry // tracing, when joining a trace (traceparent.go)
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	// Empty flags leave the connection to Temporal's environment
	// configuration (worker.ClientConfig): TEMPORAL_* variables, then the
	// temporal.toml profile, then 127.0.0.1:7233 and "default".
	fs.StringVar(&c.address, "temporal-address", "", temporalAddressUsage)
	fs.StringVar(&c.namespace, "namespace", "", temporalNamespaceUsage)
	fs.StringVar(&c.catalog, "catalog", os.Getenv("AIRLOCK_CATALOG"), "catalog to validate against before starting (env AIRLOCK_CATALOG)")
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

func runCycleStart(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("cycle start", flag.ContinueOnError)
	cf.register(fs)
	file := fs.String("f", "", "cycle request JSON file ('-' for stdin)")
	wait := fs.Bool("wait", false, "wait for the cycle to finish and print its result")
	traceparent := fs.String("traceparent", os.Getenv("TRACEPARENT"), "the agent's W3C traceparent: the cycle joins the agent's trace (env TRACEPARENT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("cycle start: -f <request.json> is required")
	}
	req, err := readRequest(*file)
	if err != nil {
		return err
	}
	ctx, opts, flush, err := joinTrace(ctx, *traceparent, &cf, os.Stderr)
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
	st, done, err := cf.starter(ctx, opts...)
	if err != nil {
		return err
	}
	defer done()
	run, err := st.Start(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "started %s (run %s)\n", run.WorkflowID, run.RunID)
	if !*wait {
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

func runCycleShow(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("cycle show", flag.ContinueOnError)
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("cycle show: want one workflow id (cycle/<agent>/<cycle-id>)")
	}
	id := fs.Arg(0)
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
	if *asJSON {
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
