package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// CanonicalFormat names the canonical encoding of a cycle request; it is
// part of the signed bytes and changes whenever the signed fields do.
const CanonicalFormat = "airlock.cycle-request.v1"

// CanonicalFormatV2 is the encoding of a request that carries a version or
// a correlation_id: v1's keys plus "version" and "correlation_id" (both,
// "" for the absent one). A request without either is encoded as v1, byte
// for byte, so every signer, recorded history and running cycle from
// before versions stays valid. The format name is signed, so neither
// direction can be forged: dropping the fields from a v2 request changes
// the format (and the keys) and its signature no longer verifies; adding
// them to a v1 request does the same.
const CanonicalFormatV2 = "airlock.cycle-request.v2"

// CanonicalFormatOf is the format CanonicalRequest uses for req.
func CanonicalFormatOf(req CycleRequest) string {
	if req.Version != "" || req.CorrelationID != "" {
		return CanonicalFormatV2
	}
	return CanonicalFormat
}

// MaxSignatureSkew is how far a request's signed_at may be from the moment
// the Temporal server started its cycle, either way. It bounds how long a
// copied request stays usable.
const MaxSignatureSkew = 5 * time.Minute

// AuditIdentity entries record who a request was verified to come from, or
// why it was refused.
const AuditIdentity = "identity"

// Signature is an agent's Transit signature over some bytes (the answer of
// transit/sign/airlock-agent-<id>); SignRequest turns it into the
// request's RequestSignature.
type Signature struct {
	// Key is the Transit key that signed, e.g. "airlock-agent-sample".
	Key        string `json:"key"`
	KeyVersion int    `json:"key_version"`
	// Value is Vault's "vault:v<N>:<base64>" form.
	Value string `json:"signature"`
}

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
//   - with a version or a correlation_id, format is CanonicalFormatV2 and
//     the object also has exactly the keys correlation_id and version.
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
		"format": CanonicalFormatOf(req), "agent_id": req.AgentID, "cycle_id": req.CycleID, "principal": req.Principal,
		"signed_at": signedAt, "thoughts": thoughts, "actions": actions,
	}
	if doc["format"] == CanonicalFormatV2 {
		doc["version"], doc["correlation_id"] = req.Version, req.CorrelationID
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
