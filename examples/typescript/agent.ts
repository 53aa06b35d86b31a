// An Airlock agent in TypeScript. It proves who it is the way every agent
// does (README: "Signing a cycle request from any language"): it logs in to
// Vault as itself, signs its cycle request with its own Transit key, then
// starts the AgentCycle workflow by name with the request as plain JSON,
// waits for the result and prints it as one JSON line on stdout.
//
// Payloads go through Airlock's codec server (remote-codec.ts): the request
// is sealed by /encode before it leaves, the result opened by /decode.
//
// Everything comes from the environment; nothing here is a secret:
//   TEMPORAL_ADDRESS     Temporal frontend (default 127.0.0.1:7233)
//   TEMPORAL_NAMESPACE   (default "default")
//   VAULT_ADDR           Vault, where the agent logs in and signs
//   AIRLOCK_AGENT_ROLE_ID, AIRLOCK_AGENT_SECRET_ID
//                        the agent's AppRole login (`make dev` prints how to get them);
//   or AIRLOCK_AGENT_VAULT_TOKEN  a token the agent already got by logging in as itself
//   AIRLOCK_AGENT_APPROLE_MOUNT   (default "approle")
//   AIRLOCK_CODEC_URL    the codec server (`airlock codec-server`), e.g. http://127.0.0.1:8081
//   AIRLOCK_CODEC_TOKEN  its bearer token (unset only for a dev server run with --insecure-no-auth)
//   AIRLOCK_AGENT_ID     (default "sample"), AIRLOCK_CYCLE_ID (default ts-<ms since epoch>)
//   AIRLOCK_ACTION       an action type from the catalog (default "cluster-read")
//   AIRLOCK_ACTION_PARAMS its params as JSON (default {"service":"checkout"})
//   TRACEPARENT          the agent's W3C traceparent (its LLM span), TRACESTATE
//                        optional: the cycle joins that trace (trace.ts); a
//                        malformed one is a warning, the cycle starts anyway
//
// Exit status: 0 when the cycle succeeded, 1 otherwise (the JSON line says why).
import { Client, Connection, WorkflowExecutionAlreadyStartedError, WorkflowFailedError, type WorkflowClientInterceptor } from "@temporalio/client";
// @ts-ignore -- plain JavaScript without type declarations: the reference
// signer every JavaScript agent shares, so the canonical encoding lives in one place.
import { sign as signRequest } from "../sign-request.mjs";
import { describe, RemoteCodec } from "./remote-codec.js";
import { checkTraceparent, traceInterceptor } from "./trace.js";

// The contract (contract/cycle.go, schema/cycle-request.schema.json).
const TASK_QUEUE = "airlock";
const WORKFLOW = "AgentCycle";

interface CycleRequest {
  agent_id: string;
  cycle_id: string;
  principal?: string;
  thoughts?: { step: number; content: string; confidence: number }[];
  actions: { type: string; params?: Record<string, unknown>; rationale?: string }[];
  signature?: { key?: string; key_version: number; signed_at: string; signature: string };
}

// The fields of schema/cycle-result.schema.json this agent reads.
interface CycleResult {
  workflow_id: string;
  outcome: string;
  actions: { index: number; type: string; outcome: string; exit_code?: number; output?: string; error?: string; reason?: string }[];
}

const sign = signRequest as (req: CycleRequest, opts: { addr: string; token: string }) => Promise<CycleRequest>;

function env(name: string, fallback?: string): string {
  const v = process.env[name];
  if (v !== undefined && v !== "") return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`${name} is not set`);
}

async function vault(path: string, token: string | undefined, body: unknown): Promise<any> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (token) headers["X-Vault-Token"] = token;
  let res: Response;
  try {
    res = await fetch(`${env("VAULT_ADDR")}/v1/${path}`, { method: "POST", headers, body: JSON.stringify(body) });
  } catch (e) {
    throw new Error(`vault ${path} at ${env("VAULT_ADDR")}: ${describe(e)}`);
  }
  const text = await res.text();
  // Vault's errors name the problem without echoing credentials.
  if (!res.ok) throw new Error(`vault ${path}: HTTP ${res.status}: ${text.trim().slice(0, 200)}`);
  return text ? JSON.parse(text) : {};
}

// agentToken logs in to Vault as the agent (AppRole), unless it already did.
// The token can sign as this agent and nothing else of Airlock's.
async function agentToken(): Promise<{ token: string; done: () => Promise<void> }> {
  const given = process.env.AIRLOCK_AGENT_VAULT_TOKEN;
  if (given) return { token: given, done: async () => {} };
  const roleID = process.env.AIRLOCK_AGENT_ROLE_ID;
  const secretID = process.env.AIRLOCK_AGENT_SECRET_ID;
  if (!roleID || !secretID) {
    throw new Error("no agent identity: set AIRLOCK_AGENT_ROLE_ID and AIRLOCK_AGENT_SECRET_ID (the agent's AppRole), or AIRLOCK_AGENT_VAULT_TOKEN");
  }
  const mount = env("AIRLOCK_AGENT_APPROLE_MOUNT", "approle");
  const login = await vault(`auth/${mount}/login`, undefined, { role_id: roleID, secret_id: secretID });
  const token: string | undefined = login.auth?.client_token;
  if (!token) throw new Error(`vault auth/${mount}/login: no token in the answer`);
  // Signing is all the token is for: revoke it once the request is signed.
  return { token, done: () => vault("auth/token/revoke-self", token, {}).then(() => {}) };
}

// joinTrace gives the client the agent's trace context, if it has one.
function joinTrace(): WorkflowClientInterceptor[] {
  const tp = process.env.TRACEPARENT;
  if (!tp) return [];
  const problem = checkTraceparent(tp);
  if (problem) {
    // A trace header never fails a cycle (as for `airlock cycle start`).
    console.error(`warning: ${problem}; the cycle starts in a trace of its own`);
    return [];
  }
  return [traceInterceptor(tp, process.env.TRACESTATE)];
}

function request(): CycleRequest {
  const agent = env("AIRLOCK_AGENT_ID", "sample");
  const action = env("AIRLOCK_ACTION", "cluster-read");
  let params: Record<string, unknown>;
  try {
    params = JSON.parse(env("AIRLOCK_ACTION_PARAMS", '{"service":"checkout"}'));
  } catch (e) {
    throw new Error(`AIRLOCK_ACTION_PARAMS is not JSON: ${(e as Error).message}`);
  }
  return {
    agent_id: agent,
    cycle_id: env("AIRLOCK_CYCLE_ID", `ts-${Date.now()}`),
    principal: `agent:${agent}`,
    thoughts: [{ step: 1, content: `Inspect with ${action} before deciding anything (TypeScript agent).`, confidence: 0.9 }],
    actions: [{ type: action, params, rationale: "a read first: it has no side effects" }],
  };
}

async function main(): Promise<number> {
  const codec = new RemoteCodec({ url: env("AIRLOCK_CODEC_URL"), token: process.env.AIRLOCK_CODEC_TOKEN });
  const login = await agentToken();
  let signed: CycleRequest;
  try {
    signed = await sign(request(), { addr: env("VAULT_ADDR"), token: login.token });
  } finally {
    await login.done();
  }

  const connection = await Connection.connect({ address: env("TEMPORAL_ADDRESS", "127.0.0.1:7233") });
  try {
    const client = new Client({
      connection,
      namespace: env("TEMPORAL_NAMESPACE", "default"),
      dataConverter: { payloadCodecs: [codec] },
      interceptors: { workflow: joinTrace() },
    });
    // The workflow id is fixed by the signed request: starting the same
    // cycle twice gives the same cycle, never a second run.
    const workflowId = `cycle/${signed.agent_id}/${signed.cycle_id}`;
    let handle;
    try {
      handle = await client.workflow.start(WORKFLOW, {
        taskQueue: TASK_QUEUE,
        workflowId,
        args: [signed],
        workflowIdReusePolicy: "REJECT_DUPLICATE",
        workflowIdConflictPolicy: "USE_EXISTING",
      });
    } catch (e) {
      if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
      handle = client.workflow.getHandle(workflowId);
    }
    console.error(`started ${workflowId}`);

    let res: CycleResult;
    try {
      res = (await handle.result()) as CycleResult;
    } catch (e) {
      if (!(e instanceof WorkflowFailedError)) throw e;
      // A refused request (unsigned, impersonation, not in the catalog)
      // fails the cycle; the failure's message was decoded through /decode too.
      const cause = e.cause as { type?: string; message?: string } | undefined;
      print({ workflow_id: workflowId, outcome: "failed", error: [cause?.type, cause?.message ?? e.message].filter(Boolean).join(": "), codec: codec.calls });
      return 1;
    }
    print({
      workflow_id: res.workflow_id,
      outcome: res.outcome,
      actions: res.actions.map((a) => ({
        index: a.index, type: a.type, outcome: a.outcome, exit_code: a.exit_code ?? 0, output: a.output ?? "", error: a.error ?? "",
      })),
      codec: codec.calls,
    });
    return res.outcome === "succeeded" ? 0 : 1;
  } finally {
    await connection.close();
  }
}

function print(v: unknown): void {
  process.stdout.write(JSON.stringify(v) + "\n");
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`agent: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
