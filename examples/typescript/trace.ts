// Joining the agent's trace. An agent that traces its LLM calls hands its
// span on as a W3C traceparent (TRACEPARENT, and TRACESTATE if any); put in
// the workflow start's Temporal header, it makes Airlock's worker spans —
// the workflow, its activities, the Job — descendants of the agent's span:
// the agent's reasoning and the cycle are one trace.
//
// The header is the one Airlock's Go worker reads with the tracing
// interceptor of go.temporal.io/sdk/contrib/opentelemetry: key
// "_tracer-data", a Payload the default payload converter makes of a JSON
// object of W3C propagation fields, {"traceparent": "00-…", "tracestate":
// "…"} (metadata encoding "json/plain"). Headers do not go through the
// payload codec on either side (the Go interceptor's EncodeHeaders is off),
// so it travels in the clear: trace ids only, nothing secret.
import { defaultPayloadConverter, type WorkflowClientInterceptor } from "@temporalio/client";

/** The Temporal header the Go SDK's OpenTelemetry interceptor reads. */
export const TRACER_HEADER = "_tracer-data";

// Version 00 only, lower-case hex, flags 00..03: what the worker's W3C
// propagator accepts. It refuses anything else with an error that fails the
// workflow task, so an unusable header must never leave the agent.
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[0-3]$/;

/**
 * checkTraceparent says what is wrong with tp as a W3C traceparent, or
 * returns undefined when the worker will accept it.
 */
export function checkTraceparent(tp: string): string | undefined {
  const m = TRACEPARENT.exec(tp);
  const shown = JSON.stringify(tp.length > 80 ? tp.slice(0, 80) + "…" : tp);
  if (!m) return `invalid traceparent ${shown}: want 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`;
  if (/^0+$/.test(m[1]) || /^0+$/.test(m[2])) return `invalid traceparent ${shown}: an all-zero trace or span id`;
  return undefined;
}

/**
 * traceInterceptor puts the agent's trace context on every workflow it
 * starts. Check traceparent with checkTraceparent first. A malformed
 * tracestate is harmless: the worker drops it and keeps the traceparent.
 */
export function traceInterceptor(traceparent: string, tracestate?: string): WorkflowClientInterceptor {
  const fields: Record<string, string> = { traceparent };
  if (tracestate) fields.tracestate = tracestate;
  const header = defaultPayloadConverter.toPayload(fields);
  return {
    startWithDetails: (input, next) => next({ ...input, headers: { ...input.headers, [TRACER_HEADER]: header } }),
    signalWithStart: (input, next) => next({ ...input, headers: { ...input.headers, [TRACER_HEADER]: header } }),
  };
}
