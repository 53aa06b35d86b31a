# Airlock payload codec: envelope encryption of Temporal payloads with data
# keys from Transit. Attach to the worker, the approvals server, and the CLI
# users who may read cycles. A decrypt-only variant (drop the datakey path)
# suits the codec server that serves the Temporal UI.
path "transit/datakey/plaintext/airlock-payloads" {
  capabilities = ["update"]
}
path "transit/decrypt/airlock-payloads" {
  capabilities = ["update"]
}
