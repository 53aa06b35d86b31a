# Airlock worker: credential broker.
path "auth/token/create/airlock-agent" {
  capabilities = ["update"]
}
path "auth/token/create/airlock-action" {
  capabilities = ["update"]
}
path "auth/token/create/airlock-action-read" {
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
path "secret/data/airlock/agent-tokens/*" {
  capabilities = ["create", "update"]
}
path "secret/metadata/airlock/agent-tokens/*" {
  capabilities = ["list", "delete"]
}
# Verified agent identity: check cycle-request signatures, never sign.
path "transit/verify/airlock-agent-*" {
  capabilities = ["update"]
}
# Tamper-evident audit trails: sign each cycle's chain head.
path "transit/sign/airlock-audit" {
  capabilities = ["update"]
}
