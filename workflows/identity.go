package workflows

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
)

// CanonicalFormat names the canonical encoding of a cycle request; it is
// part of the signed bytes and changes whenever the signed fields do.
const CanonicalFormat = "airlock.cycle-request.v1"

// MaxSignatureSkew is how far a request's signed_at may be from the moment
// the Temporal server started its cycle, either way. It bounds how long a
// copied request stays usable.
const MaxSignatureSkew = 5 * time.Minute

// AuditIdentity entries record who a request was verified to come from, or
// why it was refused.
const AuditIdentity = "identity"

// CanonicalRequest is the exact byte string an agent signs: the request
// without its signature, as RFC 8785 (JSON Canonicalization Scheme) JSON:
//
//   - one object with exactly the keys actions, agent_id, cycle_id, format
//     (CanonicalFormat), principal, signed_at, thoughts; every thought has
//     exactly confidence, content, step; every action exactly params,
//     rationale, type. Absent values are written as their empty value:
//     "" for strings, [] for thoughts, {} for params, 0 for numbers.
//   - signed_at is the signature's signed_at string as sent ("" if none).
//   - object keys sorted by their UTF-16 code units, at every depth;
//     no whitespace outside strings.
//   - strings as JSON.stringify writes them: only ", \ and control
//     characters are escaped (\b \t \n \f \r, others \u00xx in lowercase
//     hex); everything else, including <, >, & and U+2028, is raw UTF-8.
//   - numbers are IEEE 754 doubles written as ECMAScript's
//     Number.prototype.toString (JSON.stringify): 3, 0.9, 1e+21, 1e-7;
//     -0 is 0; NaN and infinities are refused.
//
// It is deterministic (no map order, no clock), so a workflow may call it.
func CanonicalRequest(req CycleRequest) ([]byte, error) {
	thoughts := make([]any, 0, len(req.Thoughts))
	for _, t := range req.Thoughts {
		thoughts = append(thoughts, map[string]any{"step": t.Step, "content": t.Content, "confidence": t.Confidence})
	}
	actions := make([]any, 0, len(req.Actions))
	for _, a := range req.Actions {
		params := map[string]any{}
		for k, v := range a.Params {
			params[k] = v
		}
		actions = append(actions, map[string]any{"type": a.Type, "params": params, "rationale": a.Rationale})
	}
	signedAt := ""
	if req.Signature != nil {
		signedAt = req.Signature.SignedAt
	}
	doc := map[string]any{
		"format": CanonicalFormat, "agent_id": req.AgentID, "cycle_id": req.CycleID, "principal": req.Principal,
		"signed_at": signedAt, "thoughts": thoughts, "actions": actions,
	}
	// A JSON round trip gives the values the worker decodes (numbers as
	// float64, structs as objects), whatever Go types the agent used.
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("canonical request: %w", err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("canonical request: %w", err)
	}
	var b bytes.Buffer
	if err := writeCanonical(&b, v); err != nil {
		return nil, fmt.Errorf("canonical request: %w", err)
	}
	return b.Bytes(), nil
}

func writeCanonical(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case float64:
		s, err := ecmaNumber(v)
		if err != nil {
			return err
		}
		b.WriteString(s)
	case string:
		writeCanonicalString(b, v)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCanonical(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(x, y string) int {
			return slices.Compare(utf16.Encode([]rune(x)), utf16.Encode([]rune(y)))
		})
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonicalString(b, k)
			b.WriteByte(':')
			if err := writeCanonical(b, v[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("unsupported value of type %T", v)
	}
	return nil
}

func writeCanonicalString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[r>>4])
				b.WriteByte(hex[r&0xf])
			} else {
				b.WriteRune(r) // invalid UTF-8 becomes U+FFFD, as JSON decoding does
			}
		}
	}
	b.WriteByte('"')
}

// ecmaNumber formats f as ECMAScript's Number.prototype.toString does
// (RFC 8785 section 3.2.2.3): the shortest digits that round-trip, in
// plain notation for exponents from -7 to 20, else d.ddde±x.
func ecmaNumber(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", errors.New("NaN and infinite numbers have no JSON form")
	}
	if f == 0 {
		return "0", nil
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	mant, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
	digits := strings.Replace(mant, ".", "", 1)
	e, err := strconv.Atoi(exp)
	if err != nil {
		return "", err
	}
	k, n := len(digits), e+1 // value = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		return sign + digits + strings.Repeat("0", n-k), nil
	case 0 < n && n <= 21:
		return sign + digits[:n] + "." + digits[n:], nil
	case -6 < n && n <= 0:
		return sign + "0." + strings.Repeat("0", -n) + digits, nil
	}
	es := "+"
	if n-1 < 0 {
		es = "-"
	}
	m := digits[:1]
	if k > 1 {
		m += "." + digits[1:]
	}
	return sign + m + "e" + es + strconv.Itoa(abs(n-1)), nil
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

// verifyOptions: verification is one Vault call (≈1 ms), run as a local
// activity like Plan so it adds no server round trip; its result is
// recorded in history. An outage is retried for a while, then the cycle
// fails closed (the agent signs and starts again).
var verifyOptions = workflow.LocalActivityOptions{
	StartToCloseTimeout:    10 * time.Second,
	ScheduleToCloseTimeout: 2 * time.Minute,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        15 * time.Second,
		NonRetryableErrorTypes: []string{activities.ErrTypeInvalidRequest},
	},
}

// identity is who a cycle's request was verified to come from. Only
// verified identities are refused as approvers of their own cycle.
type identity struct {
	signer    string // "agent:<id>"
	principal string // the signed principal, if any
}

// selves are the identities that may not decide on this cycle.
func (id *identity) selves() []string {
	out := []string{id.signer}
	if id.principal != "" && id.principal != id.signer {
		out = append(out, id.principal)
	}
	return out
}

// verify proves, before anything is planned, leased or created, that the
// request was signed by the agent it names (DESIGN invariant 9). A refusal
// is recorded, reported as a policy denial and returned as a non-retryable
// InvalidRequest naming the reason.
func (c *cycle) verify(ctx workflow.Context) error {
	req := c.req
	info := workflow.GetInfo(ctx)
	refuse := func(reason, detail string) error {
		c.record(ctx, AuditIdentity, nil, "request refused: unverified: "+reason, map[string]any{
			"agent": req.AgentID, "reason": reason, "detail": detail,
		})
		c.report(ctx, func(m CycleMetrics) { m.PolicyDenial(context.Background(), req.AgentID, "unverified: "+reason) })
		return activities.Unverified(reason, detail)
	}
	sig := req.Signature
	if sig == nil || sig.Signature == "" {
		return refuse(activities.UnverifiedUnsigned, "the request carries no signature: agent_id alone proves nothing; sign it with the agent's own Vault Transit key")
	}
	signedAt, err := time.Parse(time.RFC3339, sig.SignedAt)
	if err != nil {
		return refuse(activities.UnverifiedMalformed, fmt.Sprintf("signed_at %q is not RFC 3339", sig.SignedAt))
	}
	// The server's start time, not the worker's clock: a backlog of
	// workflow tasks does not make honest requests stale.
	if d := info.WorkflowStartTime.Sub(signedAt); d > MaxSignatureSkew || d < -MaxSignatureSkew {
		return refuse(activities.UnverifiedStale, fmt.Sprintf("signed at %s, cycle started at %s: more than %s apart",
			signedAt.UTC().Format(time.RFC3339), info.WorkflowStartTime.UTC().Format(time.RFC3339), MaxSignatureSkew))
	}
	if want := CycleWorkflowID(req.AgentID, req.CycleID); info.WorkflowExecution.ID != want {
		return refuse(activities.UnverifiedWorkflowID, fmt.Sprintf("a signed cycle runs as workflow %s, not %s", want, info.WorkflowExecution.ID))
	}
	payload, err := CanonicalRequest(req)
	if err != nil {
		return refuse(activities.UnverifiedMalformed, err.Error())
	}
	var a *activities.Activities
	var out activities.VerifyOutput
	vctx := workflow.WithLocalActivityOptions(ctx, verifyOptions)
	err = workflow.ExecuteLocalActivity(vctx, a.VerifyRequest, activities.VerifyInput{
		AgentID: req.AgentID, Payload: payload, Signature: sig.Signature, KeyVersion: sig.KeyVersion, KeyHint: sig.Key,
	}).Get(ctx, &out)
	if err != nil && ctx.Err() != nil {
		return temporal.NewCanceledError()
	}
	if err != nil {
		reason, detail := activities.UnverifiedUnavailable, errorMessage(err)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeInvalidRequest && appErr.HasDetails() {
			_ = appErr.Details(&reason)
			detail = strings.TrimPrefix(appErr.Message(), "unverified: "+reason+": ")
		}
		return refuse(reason, detail)
	}
	c.identity = &identity{signer: out.Signer, principal: req.Principal}
	c.record(ctx, AuditIdentity, nil, "request verified: signed by "+out.Signer, map[string]any{
		"signer": out.Signer, "principal": req.Principal, "key": out.Key, "key_version": out.KeyVersion,
		"signature": sig.Signature, "signed_at": sig.SignedAt, "format": CanonicalFormat,
	})
	return nil
}
