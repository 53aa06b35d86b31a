package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

func jsonLease(l Lease) ([]byte, error) { return json.Marshal(l) }

// RoleConfig is the token roles action tokens are created against.
type RoleConfig struct {
	// AllowedPolicies bounds the policies any action token may carry.
	AllowedPolicies []string
	// ReadPolicies bounds the policies of read-only tokens.
	ReadPolicies []string
	// MaxTTL caps every action token. Default: 2h.
	MaxTTL string
}

// EnsureRole creates or updates the broker's token roles. The worker's own
// token needs update on auth/token/roles/<role> for this; production setups
// usually create the roles with Terraform or deploy/vault instead.
func (b *Broker) EnsureRole(ctx context.Context, rc RoleConfig) error {
	if rc.MaxTTL == "" {
		rc.MaxTTL = "2h"
	}
	if err := b.writeRole(ctx, b.role, rc.AllowedPolicies, rc.MaxTTL); err != nil {
		return err
	}
	return b.writeRole(ctx, b.readRole, rc.ReadPolicies, rc.MaxTTL)
}

func (b *Broker) writeRole(ctx context.Context, role string, policies []string, maxTTL string) error {
	if len(policies) == 0 {
		// An empty allow-list would mean "any subset of the caller's": deny instead.
		policies = []string{"airlock-none"}
	}
	_, err := b.client.Logical().WriteWithContext(ctx, "auth/token/roles/"+role, map[string]any{
		"allowed_policies":    strings.Join(policies, ","),
		"disallowed_policies": "root",
		// No action token may ever carry an agent's signer policy: a Job
		// could then sign cycle requests as that agent.
		"disallowed_policies_glob": "airlock-signer-*",
		"orphan":                   false,
		"renewable":                true,
		"token_explicit_max_ttl":   maxTTL,
		"token_type":               "service",
	})
	if err != nil {
		return classify("write token role", err)
	}
	return nil
}

// PutPolicy writes an ACL policy (HCL).
func (b *Broker) PutPolicy(ctx context.Context, name, hcl string) error {
	if err := b.client.Sys().PutPolicyWithContext(ctx, name, hcl); err != nil {
		return classify(fmt.Sprintf("write policy %s", name), err)
	}
	return nil
}
