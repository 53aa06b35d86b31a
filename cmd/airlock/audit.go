package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/infraaudit"
)

// errAuditBroken makes `cycle audit` exit non-zero on a broken chain.
var errAuditBroken = errors.New("audit trail does not verify")

// runAudit prints a cycle's thought audit trail and verifies its hash
// chain and its chain-head signature (Vault Transit); --json exports it as
// JSON lines; --file verifies an export; --infra joins it with the Vault
// and apiserver audit logs (package infraaudit).
func runAudit(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("cycle audit", flag.ContinueOnError)
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the trail as JSON lines (for export)")
	file := fs.String("file", "", "verify and print an exported JSON-lines trail instead of asking Temporal")
	infra := fs.Bool("infra", false, "join the trail with the Vault and apiserver audit logs of its tokens and objects")
	vaultLog := fs.String("vault-audit-log", os.Getenv("AIRLOCK_VAULT_AUDIT_LOG"), "Vault file audit device log, for --infra (env AIRLOCK_VAULT_AUDIT_LOG)")
	k8sLog := fs.String("k8s-audit-log", os.Getenv("AIRLOCK_K8S_AUDIT_LOG"), "kube-apiserver audit log (JSON), for --infra (env AIRLOCK_K8S_AUDIT_LOG)")
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	var trail []contract.AuditEntry
	var source, workflowID string
	switch {
	case *file != "":
		t, err := readTrail(*file)
		if err != nil {
			return err
		}
		trail, source = t, *file
	case fs.NArg() == 1:
		id := fs.Arg(0)
		if !strings.HasPrefix(id, "cycle/") {
			id = "cycle/" + id
		}
		st, done, err := cf.starter(ctx)
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
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range trail {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	if *infra {
		return infraaudit.Run(ctx, stdout, workflowID, trail, *vaultLog, *k8sLog)
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

func runList(ctx context.Context, args []string, stdout io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("cycle list", flag.ContinueOnError)
	cf.register(fs)
	query := fs.String("query", "", `visibility query, e.g. 'AirlockAgent="sample" AND AirlockOutcome="denied"'`)
	limit := fs.Int("limit", 50, "at most this many cycles")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, done, err := cf.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	cycles, err := st.List(ctx, *query, *limit)
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
