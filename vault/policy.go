package vault

import (
	"fmt"
	"strings"
)

// WorkerPolicyConfig names what the worker's own policy must reach.
type WorkerPolicyConfig struct {
	// ActionRole is the token role of action tokens. Default: DefaultTokenRole.
	ActionRole string
	// AgentRole is the token role of agent tokens. Default: DefaultAgentRole.
	AgentRole string
	// Registry is AgentConfig.Registry. Default: DefaultAgentRegistry.
	Registry string
}

// WorkerPolicyHCL is the least-privilege policy of the worker's own token
// for the broker: create agent tokens (and, for Broker.IssueToken, action
// tokens), look up, renew and revoke tokens by accessor and leases by id,
// and keep the agent-token registry. It reads no secret: dynamic and KV
// secrets are read with the action's own token (Broker.As). Transit, used
// by the payload codec, needs its own paths; the Transit paths here are
// verify on the agents' signing keys (never sign) and sign with the audit
// key (AuditKeyName).
func WorkerPolicyHCL(c WorkerPolicyConfig) string {
	if c.ActionRole == "" {
		c.ActionRole = DefaultTokenRole
	}
	if c.AgentRole == "" {
		c.AgentRole = DefaultAgentRole
	}
	if c.Registry == "" {
		c.Registry = DefaultAgentRegistry
	}
	mount, path, _ := strings.Cut(strings.Trim(c.Registry, "/"), "/")
	return fmt.Sprintf(`# Airlock worker: credential broker.
path "auth/token/create/%[1]s" {
  capabilities = ["update"]
}
path "auth/token/create/%[2]s" {
  capabilities = ["update"]
}
path "auth/token/create/%[2]s-read" {
  capabilities = ["update"]
}
path "auth/token/lookup-accessor" {
  capabilities = ["update"]
}
path "auth/token/renew-accessor" {
  capabilities = ["update"]
}
path "auth/token/revoke-accessor" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "sys/leases/lookup" {
  capabilities = ["update"]
}
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/leases/revoke" {
  capabilities = ["update"]
}
# Agent-token registry: accessors only, never tokens.
path "%[3]s/data/%[4]s/*" {
  capabilities = ["create", "update"]
}
path "%[3]s/metadata/%[4]s/*" {
  capabilities = ["list", "delete"]
}
# Verified agent identity: check cycle-request signatures, never sign.
path "%[5]s/verify/%[6]s*" {
  capabilities = ["update"]
}
# Tamper-evident audit trails: sign each cycle's chain head.
path "%[5]s/sign/%[7]s" {
  capabilities = ["update"]
}
`, c.AgentRole, c.ActionRole, mount, path, DefaultTransitMount, AgentKeyPrefix, AuditKeyName)
}
