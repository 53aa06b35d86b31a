# Airlock auditor: verify cycle audit-trail signatures, never sign.
path "transit/verify/airlock-audit" {
  capabilities = ["update"]
}
