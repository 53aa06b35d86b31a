package infraaudit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/vault"
)

// HeadVerifier checks an audit-head signature (vault.AuditSigner).
type HeadVerifier interface {
	Key() string
	Verify(ctx context.Context, msg []byte, signature string) (version int, err error)
}

// ErrSignature wraps every reason a trail's signatures do not prove it.
var ErrSignature = errors.New("audit trail signature")

// VerifySignatures checks the trail's chain and its chain-head signatures
// with Vault Transit, prints what they prove, and fails closed (see
// contract.VerifyAuditSignatures). The verifier is made (newVerifier) only
// when there is a signature to check. workflowID "" takes the trail's own.
func VerifySignatures(ctx context.Context, w io.Writer, newVerifier func() (HeadVerifier, error), trail []contract.AuditEntry, workflowID string) error {
	var v HeadVerifier
	r, err := contract.VerifyAuditSignatures(trail, workflowID, func(msg []byte, sig string) (int, error) {
		if v == nil {
			var err error
			if v, err = newVerifier(); err != nil {
				return 0, err
			}
		}
		return v.Verify(ctx, msg, sig)
	})
	if err != nil {
		fmt.Fprintf(w, "chain head signature: NOT VALID: %v\n", err)
		return fmt.Errorf("%w: %w", ErrSignature, err)
	}
	fmt.Fprintf(w, "chain head signed by transit key %s version %d: valid (entry %d of %d; %d signatures checked)\n",
		v.Key(), r.Last.KeyVersion, r.Last.HeadSeq, len(trail), r.Signed)
	if len(r.Unsigned) > 0 {
		fmt.Fprintf(w, "note: %d decision-time head(s) could not be signed (entries %v); the final signature covers them\n", len(r.Unsigned), r.Unsigned)
	}
	return nil
}

// VaultVerifier verifies with VAULT_ADDR and VAULT_TOKEN (a token with
// update on transit/verify/airlock-audit: deploy/vault/airlock-auditor.hcl).
func VaultVerifier() (HeadVerifier, error) {
	if os.Getenv("VAULT_ADDR") == "" {
		return nil, fmt.Errorf("verify audit signature: set VAULT_ADDR and VAULT_TOKEN (a token allowed transit/verify/%s)", vault.AuditKeyName)
	}
	return vault.NewAuditVerifier(vault.Config{})
}

// Run is `airlock cycle audit --infra`: it verifies the trail (chain and
// signature) and prints its joined timeline with whichever of the two
// logs is given.
func Run(ctx context.Context, w io.Writer, workflowID string, trail []contract.AuditEntry, vaultLogPath, kubeLogPath string) error {
	opts := Options{}
	for _, f := range []struct {
		path string
		dst  *io.Reader
	}{{vaultLogPath, &opts.VaultLog}, {kubeLogPath, &opts.KubeLog}} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return fmt.Errorf("infra audit: %w", err)
		}
		defer fh.Close()
		*f.dst = fh
	}
	if workflowID == "" && len(trail) > 0 {
		workflowID = trailWorkflowID(trail)
	}
	rep, err := Build(workflowID, trail, opts)
	if err != nil {
		return err
	}
	if err := rep.Print(w); err != nil {
		return err
	}
	return VerifySignatures(ctx, w, VaultVerifier, trail, workflowID)
}

// trailWorkflowID names the cycle of an exported trail: its signatures
// say, else its first entry's agent and cycle.
func trailWorkflowID(trail []contract.AuditEntry) string {
	for _, e := range trail {
		if id, _ := e.Data["workflow_id"].(string); e.Kind == contract.AuditSignature && id != "" {
			return id
		}
	}
	agent, _ := trail[0].Data["agent"].(string)
	cycle, _ := trail[0].Data["cycle"].(string)
	return "cycle/" + agent + "/" + cycle
}
