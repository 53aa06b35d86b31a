# Airlock agent tokens: parents of the agent's action tokens.
path "auth/token/create/airlock-action" {
  capabilities = ["update"]
}
path "auth/token/create/airlock-action-read" {
  capabilities = ["update"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
