package devstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/vault/api"
)

// Audit log files in the stack's Dir (Stack.VaultAuditLog, Stack.KubeAuditLog).
const (
	vaultAuditFile      = "vault-audit.log"
	kubeAuditFile       = "kube-apiserver-audit.log"
	kubeAuditPolicyFile = "kube-audit-policy.yaml"
)

// enableVaultAudit turns on Vault's file audit device (once; a persistent
// Vault keeps it) writing to path. Vault HMACs tokens and secret values in
// it; accessors are logged in clear (hmac_accessor=false, and the token
// mount does not HMAC the "accessor" request key) so that a cycle's
// action tokens — recorded in its trail by accessor — can be followed
// through the log: an accessor authenticates nothing. With a file device
// enabled Vault refuses requests it cannot log.
func enableVaultAudit(ctx context.Context, addr, token, path string) error {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.Timeout = 5 * time.Second
	c, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	c.SetToken(token)
	devices, err := c.Sys().ListAuditWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list audit devices: %w", err)
	}
	if _, ok := devices["file/"]; !ok {
		if err := c.Sys().EnableAuditWithOptionsWithContext(ctx, "file", &api.EnableAuditOptions{
			Type: "file", Description: "Airlock dev audit log",
			Options: map[string]string{"file_path": path, "hmac_accessor": "false", "mode": "0600"},
		}); err != nil {
			return fmt.Errorf("enable file audit device: %w", err)
		}
	}
	if _, err := c.Logical().WriteWithContext(ctx, "sys/auth/token/tune", map[string]any{
		"audit_non_hmac_request_keys": []string{"accessor"},
	}); err != nil {
		return fmt.Errorf("tune token auth for audit: %w", err)
	}
	return nil
}

// KubeAuditPolicy is the dev stack's apiserver audit policy: every request
// at Metadata (who, verb, object, response code — never a body), so
// Secrets are at Metadata too, and nothing at RequestResponse. It records
// every namespace because the stack does not know its agent namespaces
// when it starts; deploy/kubernetes/audit-policy.yaml names them.
// Left out: noise no action causes (leases, events, health checks) and
// watches.
const KubeAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    verbs: [watch]
  - level: None
    resources:
      - {group: coordination.k8s.io, resources: [leases]}
      - {group: "", resources: [events]}
      - {group: events.k8s.io, resources: [events]}
  - level: None
    nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version", "/openapi*", "/api*", "/metrics"]
  - level: Metadata
`

// kubeAuditArgs writes the audit policy and returns the apiserver flags
// that log to Stack.KubeAuditLog.
func (s *Stack) kubeAuditArgs() ([]string, error) {
	policy := filepath.Join(s.Dir, kubeAuditPolicyFile)
	if err := os.WriteFile(policy, []byte(KubeAuditPolicy), 0o600); err != nil {
		return nil, fmt.Errorf("write audit policy: %w", err)
	}
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + s.KubeAuditLog,
		"--audit-log-format=json",
		"--audit-log-maxsize=0", // no rotation: one file per stack
	}, nil
}
