// A Temporal PayloadCodec that encodes and decodes through Airlock's codec
// server (`airlock codec-server`), speaking Temporal's remote codec
// protocol: POST <url>/encode or <url>/decode with {"payloads":[…]} in
// protobuf JSON (bytes as base64), "Authorization: Bearer <token>".
//
// Airlock's payloads are sealed with data keys from Vault Transit; this
// process holds no Vault token for them. Through this codec the cycle
// request leaves the process encrypted, like a Go agent's, and the result
// comes back readable.
import type { DataConverter, Payload } from "@temporalio/client";

type PayloadCodec = NonNullable<DataConverter["payloadCodecs"]>[number];

interface WirePayload {
  metadata?: Record<string, string>;
  data?: string;
}

const b64 = (b: Uint8Array | null | undefined): string => Buffer.from(b ?? []).toString("base64");
const bytes = (s: string | undefined): Uint8Array => new Uint8Array(Buffer.from(s ?? "", "base64"));

function toWire(p: Payload): WirePayload {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {})) metadata[k] = b64(v);
  return { metadata, data: b64(p.data) };
}

function fromWire(p: WirePayload): Payload {
  const metadata: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {})) metadata[k] = bytes(v);
  return { metadata, data: bytes(p.data) };
}

export interface RemoteCodecOptions {
  /** The codec server's base URL, e.g. http://127.0.0.1:8081. */
  url: string;
  /** Its bearer token (AIRLOCK_CODEC_TOKEN); empty only for a dev server run with --insecure-no-auth. */
  token?: string;
  /** Bounds each call. Default: 10 s. */
  timeoutMs?: number;
}

export class RemoteCodec implements PayloadCodec {
  /** How many payloads went through /encode and /decode: the agent reports it. */
  readonly calls = { encode: 0, decode: 0 };
  private readonly url: string;

  constructor(private readonly opts: RemoteCodecOptions) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw new Error(`codec server URL ${JSON.stringify(opts.url)} is not a URL (set AIRLOCK_CODEC_URL, e.g. http://127.0.0.1:8081)`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`codec server URL must be http(s), got ${u.protocol}`);
    this.url = u.href.replace(/\/+$/, "");
  }

  encode(payloads: Payload[]): Promise<Payload[]> {
    return this.call("encode", payloads);
  }

  decode(payloads: Payload[]): Promise<Payload[]> {
    return this.call("decode", payloads);
  }

  private async call(op: "encode" | "decode", payloads: Payload[]): Promise<Payload[]> {
    if (payloads.length === 0) return payloads;
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.opts.token) headers.Authorization = `Bearer ${this.opts.token}`;
    let res: Response;
    try {
      res = await fetch(`${this.url}/${op}`, {
        method: "POST",
        headers,
        body: JSON.stringify({ payloads: payloads.map(toWire) }),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
      });
    } catch (e) {
      throw new Error(`codec server /${op} at ${this.url}: ${describe(e)}`);
    }
    if (!res.ok) {
      // The server's answer names the problem (unauthorized, bad payload); it never echoes the token.
      const why = (await res.text()).trim().slice(0, 200);
      throw new Error(`codec server /${op}: HTTP ${res.status}: ${why}`);
    }
    const body = (await res.json()) as { payloads?: WirePayload[] };
    const out = (body.payloads ?? []).map(fromWire);
    if (out.length !== payloads.length) throw new Error(`codec server /${op}: sent ${payloads.length} payloads, got ${out.length} back`);
    this.calls[op] += payloads.length;
    return out;
  }
}

// describe names a network failure: fetch's own message is just "fetch failed".
export function describe(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  return [err.message, err.cause?.code ?? err.cause?.message].filter(Boolean).join(": ");
}
