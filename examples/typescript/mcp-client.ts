// An MCP client for Airlock: it starts `airlock mcp --agent <id>` over stdio,
// lists the tools (one per action type the agent may propose), calls one —
// which runs one cycle, signed as the agent — and prints one JSON line:
//   {"tools":[…],"tool":"cluster-read","outcome":"succeeded","exit_code":0,"output":"…","workflow_id":"cycle/…"}
//
// `airlock mcp` reads the same environment as `airlock cycle start`
// (TEMPORAL_ADDRESS, VAULT_ADDR, AIRLOCK_AGENT_VAULT_TOKEN, …); this client
// hands it its own environment and adds nothing, so it holds no secret.
//   AIRLOCK_BIN            the airlock binary (default "airlock" on PATH)
//   AIRLOCK_AGENT_ID       the agent the server acts as (default "sample")
//   AIRLOCK_MCP_TOOL       the tool to call (default "cluster-read")
//   AIRLOCK_ACTION_PARAMS  its params as JSON (default {"service":"checkout"})
//
// Exit status: 0 when the call's cycle succeeded, 1 otherwise.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

function env(name: string, fallback: string): string {
  const v = process.env[name];
  return v === undefined || v === "" ? fallback : v;
}

// The structured result `airlock mcp` gives each call (mcpserver.Result):
// status is the action's outcome, or pending/running.
interface CycleOutcome {
  status?: string;
  exit_code?: number;
  output?: string;
  workflow_id?: string;
}

async function main(): Promise<number> {
  const agent = env("AIRLOCK_AGENT_ID", "sample");
  const tool = env("AIRLOCK_MCP_TOOL", "cluster-read");
  let params: Record<string, unknown>;
  try {
    params = JSON.parse(env("AIRLOCK_ACTION_PARAMS", '{"service":"checkout"}'));
  } catch (e) {
    throw new Error(`AIRLOCK_ACTION_PARAMS is not JSON: ${(e as Error).message}`);
  }
  // The stdio transport passes only a few "safe" variables by default; the
  // server needs the agent's Temporal and Vault settings.
  const childEnv = Object.fromEntries(Object.entries(process.env).filter((kv): kv is [string, string] => kv[1] !== undefined));
  const transport = new StdioClientTransport({
    command: env("AIRLOCK_BIN", "airlock"),
    args: ["mcp", "--agent", agent],
    env: childEnv,
    stderr: "inherit",
  });
  const client = new Client({ name: "airlock-typescript-example", version: "1.0.0" });
  await client.connect(transport);
  try {
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name).sort();
    console.error(`tools: ${names.join(", ")}`);
    if (!names.includes(tool)) {
      print({ tools: names, tool, error: `no tool ${tool} for agent ${agent}` });
      return 1;
    }
    const res = await client.callTool({ name: tool, arguments: { ...params, rationale: "a read first: it has no side effects" } });
    const out = (res.structuredContent ?? {}) as CycleOutcome;
    const text = Array.isArray(res.content)
      ? res.content.flatMap((c: { type: string; text?: string }) => (c.type === "text" && c.text ? [c.text] : [])).join("\n")
      : "";
    print({
      tools: names,
      tool,
      is_error: res.isError === true,
      outcome: out.status ?? "",
      exit_code: out.exit_code ?? 0,
      output: out.output ?? "",
      workflow_id: out.workflow_id ?? "",
      ...(res.isError ? { error: text } : {}),
    });
    return !res.isError && out.status === "succeeded" ? 0 : 1;
  } finally {
    await client.close();
  }
}

function print(v: unknown): void {
  process.stdout.write(JSON.stringify(v) + "\n");
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`mcp-client: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
