// Package devsetup prepares a development or test stack for Airlock: the
// Vault policies and token role action tokens are issued under, each
// agent's namespace, and each agent's own Vault identity (signing key,
// signer policy, AppRole). On a real installation these come from deploy/.
package devsetup

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
)

// PolicyHCL is the development ACL policy written for a catalog policy name:
// it can only read (or, for names ending in "-write", update) the KV paths
// under secret/data/airlock/<name>/.
// Actions with a vault_db_role also get read on "<mount>/creds/<role>".
func PolicyHCL(name string, dbRoles []string) string {
	caps := `["read"]`
	if strings.HasSuffix(name, "-write") {
		caps = `["read", "create", "update"]`
	}
	hcl := fmt.Sprintf("path \"secret/data/airlock/%s/*\" {\n  capabilities = %s\n}\n", name, caps)
	for _, r := range dbRoles {
		mount, role, _ := strings.Cut(r, "/")
		hcl += fmt.Sprintf("path \"%s/creds/%s\" {\n  capabilities = [\"read\"]\n}\n", mount, role)
	}
	return hcl
}

// Prepare writes a dev policy for every Vault policy the catalog names, the
// broker's token role allowing exactly those, and bootstraps each agent's
// namespace. It is idempotent.
func Prepare(ctx context.Context, cat *policy.Catalog, broker *vault.Broker, jobs *k8s.Runner) error {
	var names, read []string
	dbRoles := map[string][]string{}
	for _, a := range cat.Actions {
		names = append(names, a.VaultPolicies...)
		if a.VaultDBRole != "" {
			for _, p := range a.VaultPolicies {
				dbRoles[p] = append(dbRoles[p], a.VaultDBRole)
			}
		}
		if a.Class == policy.ClassRead {
			read = append(read, a.VaultPolicies...)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	slices.Sort(read)
	read = slices.Compact(read)
	for _, n := range names {
		if err := broker.PutPolicy(ctx, n, PolicyHCL(n, dbRoles[n])); err != nil {
			return err
		}
	}
	if err := broker.EnsureRole(ctx, vault.RoleConfig{AllowedPolicies: names, ReadPolicies: read}); err != nil {
		return err
	}
	if err := broker.EnsureAgentRole(ctx, vault.AgentRoleConfig{}); err != nil {
		return err
	}
	if err := broker.EnsureAuditKey(ctx); err != nil {
		return err
	}
	for _, id := range cat.AgentIDs() {
		ag, _ := cat.Agent(id)
		q := k8s.Quota{Pods: ag.Quota.Pods, CPU: ag.Quota.CPU, Memory: ag.Quota.Memory}
		if err := jobs.EnsureNamespace(ctx, ag.Namespace, ag.ID, q); err != nil {
			return fmt.Errorf("bootstrap namespace %s: %w", ag.Namespace, err)
		}
	}
	_, err := AgentIdentities(ctx, cat, broker)
	return err
}

// AgentIdentities gives every agent of the catalog its own Vault identity:
// an ed25519 Transit signing key (transit/keys/airlock-agent-<id>), a
// signer policy allowing only transit/sign with that key, and an AppRole
// role (auth/approle/role/airlock-agent-<id>) whose tokens carry that
// policy. The agent logs in with the role id and a secret id and signs its
// cycle requests; the worker only verifies. It is idempotent.
func AgentIdentities(ctx context.Context, cat *policy.Catalog, broker *vault.Broker) (map[string]vault.AgentIdentity, error) {
	out := map[string]vault.AgentIdentity{}
	for _, id := range cat.AgentIDs() {
		ai, err := broker.EnsureAgentIdentity(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("agent identity %s: %w", id, err)
		}
		out[id] = ai
	}
	return out, nil
}
