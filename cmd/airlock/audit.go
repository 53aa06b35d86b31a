package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/infraaudit"
)

// errAuditBroken makes `cycle audit` exit non-zero on a broken chain.
var errAuditBroken = errors.New("audit trail does not verify")

type auditOptions struct {
	clientFlags
	asJSON bool
	file   string
	// infra joins the trail with the Vault and apiserver audit logs
	// (vaultLog, k8sLog) instead of printing it.
	infra            bool
	vaultLog, k8sLog string
}

func newCycleAuditCmd() *cobra.Command {
	var o auditOptions
	cmd := &cobra.Command{
		Use:   "audit <workflow-id> | --file <trail.jsonl>",
		Short: "Print and verify a cycle's hash-chained audit trail",
		Long: `Print a cycle's audit trail — every thought, decision, lease accessor and
result, in order — and verify its hash chain and the Vault Transit signature
of its head. Exits non-zero when the chain or the signature does not verify.
--json exports the trail as JSON lines; --file verifies such an export offline,
without Temporal (the signature check still asks Vault).

--infra prints one timeline of the trail and what the infrastructure recorded
about the cycle: the Vault file audit device's entries for its action tokens
(issue, use, renew, revoke) and the kube-apiserver's audit events of its Jobs,
Pods, Secrets and NetworkPolicies. Give --vault-audit-log, --k8s-audit-log or
both (deploy/vault/AUDIT.md).`,
		Example: `  airlock cycle audit cycle/advisor/c-1
  airlock cycle audit cycle/advisor/c-1 --json > trail.jsonl
  airlock cycle audit --file trail.jsonl
  airlock cycle audit cycle/advisor/c-1 --infra --vault-audit-log vault-audit.log --k8s-audit-log kube-audit.log`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError(cmd, fmt.Errorf("cycle audit: want one cycle id, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAudit(cmd.Context(), o, args, cmd.OutOrStdout())
		},
		ValidArgsFunction: completeCycles(&o.clientFlags, false),
	}
	o.register(cmd.Flags())
	acceptUnusedCatalog(cmd)
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the trail as JSON lines (for export) instead of a verified table")
	cmd.Flags().StringVar(&o.file, "file", "", "verify and print an exported JSON-lines trail instead of asking Temporal")
	cmd.Flags().BoolVar(&o.infra, "infra", false, "join the trail with the Vault and apiserver audit logs of its tokens and objects")
	cmd.Flags().StringVar(&o.vaultLog, "vault-audit-log", os.Getenv("AIRLOCK_VAULT_AUDIT_LOG"), "Vault file audit device log, for --infra (env AIRLOCK_VAULT_AUDIT_LOG)")
	cmd.Flags().StringVar(&o.k8sLog, "k8s-audit-log", os.Getenv("AIRLOCK_K8S_AUDIT_LOG"), "kube-apiserver audit log (JSON), for --infra (env AIRLOCK_K8S_AUDIT_LOG)")
	_ = cmd.MarkFlagFilename("file", "jsonl", "json")
	_ = cmd.MarkFlagFilename("vault-audit-log")
	_ = cmd.MarkFlagFilename("k8s-audit-log")
	return cmd
}

// runAudit prints a cycle's thought audit trail and verifies its hash
// chain and its chain-head signature (Vault Transit); --json exports it as
// JSON lines; --file verifies an export; --infra joins it with the Vault
// and apiserver audit logs (package infraaudit).
func runAudit(ctx context.Context, o auditOptions, args []string, stdout io.Writer) error {
	var trail []contract.AuditEntry
	var source, workflowID string
	switch {
	case o.file != "":
		t, err := readTrail(o.file)
		if err != nil {
			return err
		}
		trail, source = t, o.file
	case len(args) == 1:
		id := args[0]
		if !strings.HasPrefix(id, "cycle/") {
			id = "cycle/" + id
		}
		st, done, err := o.starter(ctx)
		if err != nil {
			return err
		}
		defer done()
		if trail, err = st.Audit(ctx, id); err != nil {
			return err
		}
		source, workflowID = id, id
	default:
		return errors.New("cycle audit: want one cycle id, or --file <trail.jsonl>")
	}
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range trail {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	if o.infra {
		return infraaudit.Run(ctx, stdout, workflowID, trail, o.vaultLog, o.k8sLog)
	}
	printTrail(stdout, source, trail)
	if b := contract.VerifyAudit(trail); b != nil {
		fmt.Fprintf(stdout, "\nBROKEN at entry %d: %s\nentries from %d on cannot be trusted\n", b.Seq, b.Reason, b.Seq)
		return fmt.Errorf("%w: entry %d: %s", errAuditBroken, b.Seq, b.Reason)
	}
	fmt.Fprintf(stdout, "\nchain verified: %d entries", len(trail))
	if n := len(trail); n > 0 {
		fmt.Fprintf(stdout, ", head %s", trail[n-1].Hash[:16])
	}
	fmt.Fprintln(stdout)
	return infraaudit.VerifySignatures(ctx, stdout, infraaudit.VaultVerifier, trail, workflowID)
}

func readTrail(path string) ([]contract.AuditEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read trail: %w", err)
	}
	defer f.Close()
	var out []contract.AuditEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var e contract.AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

func printTrail(w io.Writer, source string, trail []contract.AuditEntry) {
	fmt.Fprintf(w, "audit trail of %s\n\n", source)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tACTION\tWHAT\tDETAILS")
	for _, e := range trail {
		action := "-"
		if e.Action != nil {
			action = fmt.Sprint(*e.Action)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.At.Local().Format(time.TimeOnly), e.Kind, action, oneLine(e.Summary), details(e.Data))
	}
	tw.Flush()
}

// details renders an entry's data as sorted key=value pairs.
func details(d map[string]any) string {
	keys := make([]string, 0, len(d))
	for k, v := range d {
		if v == nil || v == "" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v, _ := json.Marshal(d[k])
		parts[i] = k + "=" + strings.Trim(string(v), `"`)
	}
	return oneLine(strings.Join(parts, " "))
}

func newCycleListCmd() *cobra.Command {
	var cf clientFlags
	var query string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Find cycles with a Temporal visibility query",
		Long: `List cycles, filtered by a Temporal visibility query over
Airlock's search attributes: AirlockAgent, AirlockPhase, AirlockOutcome,
AirlockRisk (and Temporal's own, such as ExecutionStatus and StartTime).`,
		Example: `  airlock cycle list
  airlock cycle list --query 'AirlockAgent="sample" AND AirlockOutcome="denied"' --limit 10`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runList(cmd.Context(), cf, query, limit, cmd.OutOrStdout())
		},
	}
	cf.register(cmd.Flags())
	acceptUnusedCatalog(cmd)
	cmd.Flags().StringVar(&query, "query", "", `visibility query, e.g. 'AirlockAgent="sample" AND AirlockOutcome="denied"'`)
	cmd.Flags().IntVar(&limit, "limit", 50, "list at most this many cycles")
	_ = cmd.RegisterFlagCompletionFunc("query", cobra.NoFileCompletions)
	return cmd
}

func runList(ctx context.Context, cf clientFlags, query string, limit int, stdout io.Writer) error {
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	cycles, err := st.List(ctx, query, limit)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CYCLE\tSTATUS\tAGENT\tPHASE\tRISK\tOUTCOME\tSTARTED")
	for _, c := range cycles {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.WorkflowID, c.Status, orDash(c.Agent), orDash(c.Phase), orDash(c.Risk), orDash(c.Outcome), c.StartTime.Local().Format(time.DateTime))
	}
	return tw.Flush()
}
