// Sign an Airlock cycle request as its agent, from any JavaScript runtime
// (node >= 18): canonicalize it (README: "Signing a cycle request from any
// language"), sign the bytes with the agent's Vault Transit key, and print
// the request with its signature.
//
//   VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=<the agent's own token> \
//     node examples/sign-request.mjs examples/cycle-request.json > signed.json
//
// The token is the one the agent got by logging in to Vault as itself
// (AppRole or Kubernetes auth); it can sign with its own key only.

// canonical writes JSON per RFC 8785: keys sorted by UTF-16 code units at
// every depth, no whitespace, strings and numbers as JSON.stringify writes
// them. Objects are written by hand: JSON.stringify would put integer-like
// keys ("9", "10") first whatever order they were sorted in.
export function canonical(v) {
  if (v === null || typeof v !== "object") {
    if (typeof v === "number" && !Number.isFinite(v)) throw new Error("NaN and infinite numbers have no JSON form");
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
}

// canonicalRequest is the exact string the agent signs: the request without
// its signature, every field present (empty values for absent ones). A
// request with a version or a correlation_id is format v2 and carries both
// keys; one without either stays v1, byte for byte.
export function canonicalRequest(req, signedAt) {
  const doc = {
    format: "airlock.cycle-request.v1",
    agent_id: req.agent_id ?? "",
    cycle_id: req.cycle_id ?? "",
    principal: req.principal ?? "",
    signed_at: signedAt,
    thoughts: (req.thoughts ?? []).map((t) => ({ step: t.step ?? 0, content: t.content ?? "", confidence: t.confidence ?? 0 })),
    actions: (req.actions ?? []).map((a) => ({ type: a.type ?? "", params: a.params ?? {}, rationale: a.rationale ?? "" })),
  };
  if (req.version || req.correlation_id) {
    doc.format = "airlock.cycle-request.v2";
    doc.version = req.version ?? "";
    doc.correlation_id = req.correlation_id ?? "";
  }
  return canonical(doc);
}

// sign asks Vault to sign the canonical request with the agent's key.
export async function sign(req, { addr = process.env.VAULT_ADDR, token = process.env.VAULT_TOKEN, now = new Date() } = {}) {
  const signedAt = now.toISOString().replace(/\.\d{3}Z$/, "Z");
  const input = Buffer.from(canonicalRequest(req, signedAt), "utf8").toString("base64");
  const key = "airlock-agent-" + req.agent_id;
  const res = await fetch(`${addr}/v1/transit/sign/${key}`, {
    method: "POST",
    headers: { "X-Vault-Token": token, "Content-Type": "application/json" },
    body: JSON.stringify({ input }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`sign as ${req.agent_id}: HTTP ${res.status}: ${(body.errors ?? []).join("; ")}`);
  const { signature, key_version } = body.data;
  return { ...req, signature: { key, key_version, signed_at: signedAt, signature } };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { readFileSync } = await import("node:fs");
  const req = JSON.parse(readFileSync(process.argv[2] ?? 0, "utf8"));
  process.stdout.write(JSON.stringify(await sign(req), null, 2) + "\n");
}
