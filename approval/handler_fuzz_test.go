package approval

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/airlockhq/airlock/contract"
)

// Signing modes of FuzzHandler: how the fuzzed request is signed.
const (
	fuzzRawHeaders  = iota // the fuzzed X-Slack-* headers as they are
	fuzzSigned             // correctly signed now with testSecret
	fuzzTampered           // signed, then one body byte changed
	fuzzWrongSecret        // signed now with another secret
	fuzzModes
)

// FuzzHandler throws arbitrary bodies, payloads, button values and
// signature headers at the interaction endpoint. Invariants:
//   - it never panics and never answers 5xx (the Decider never fails here);
//   - a request whose X-Slack-Signature is not the HMAC of its timestamp
//     and body under the signing secret never reaches the Decider;
//   - the Decider is only reached by a well-formed click or reason modal
//     submission, and it decides exactly what it carried (with the typed
//     reason as the comment), for the user who clicked or submitted;
//   - a 200 that decides nothing is only a reason modal's error answer;
//   - an authenticated request sent again (with the signature's hex in any
//     letter case, which is the same signature) is a 409 that decides nothing.
func FuzzHandler(f *testing.F) {
	approve := mustButtonValue(f, contract.DecisionApprove)
	deny := mustButtonValue(f, contract.DecisionDeny)
	reasonMeta := "r1|C0APPROVE|1700000000.000001|" + deny
	stopMeta := "r1||" + "|" + mustButtonValue(f, contract.DecisionStop)
	submission := func(user, callbackID, meta, reason string) string {
		b, _ := json.Marshal(map[string]any{
			"type": "view_submission", "user": map[string]any{"id": user},
			"view": map[string]any{"callback_id": callbackID, "private_metadata": meta, "state": map[string]any{"values": map[string]any{
				blockReason: map[string]any{actionReasonText: map[string]any{"type": "plain_text_input", "value": reason}},
			}}},
		})
		return string(b)
	}
	const form = "application/x-www-form-urlencoded"
	seeds := []struct {
		payload, user, actionID, value, contentType, sig, stamp string
		mode                                                    uint8
		caseMask                                                uint64
	}{
		{"", "U0ALICE", ActionApprove, approve, form, "", "", fuzzSigned, 0},
		{"", "U0ALICE", ActionApprove, approve, form, "", "", fuzzSigned, 0xffff}, // replay with the hex in upper case
		{"", "U0BOB", ActionDeny, deny, form, "", "", fuzzSigned, 0},
		{"", "U0MALLORY", ActionApprove, approve, form, "", "", fuzzSigned, 0},
		{"", "U0ALICE", ActionDeny, approve, form, "", "", fuzzSigned, 0}, // kind mismatch
		{"", "U0ALICE", "other_button", approve, form, "", "", fuzzSigned, 0},
		{"", "", ActionApprove, approve, form, "", "", fuzzSigned, 0},
		{"", "U0ALICE", ActionApprove, "a1|approve|01|" + testHash + "|" + testWF, form, "", "", fuzzSigned, 0},
		{"", "U0ALICE", ActionApprove, approve, "text/plain", "", "", fuzzSigned, 0},
		{"", "U0ALICE", ActionApprove, approve, form, "", "", fuzzTampered, 7},
		{"", "U0ALICE", ActionApprove, approve, form, "", "", fuzzWrongSecret, 0},
		{"", "U0ALICE", ActionApprove, approve, form, "v0=" + strings.Repeat("0", 64), "1700000000", fuzzRawHeaders, 0},
		{"", "U0ALICE", ActionApprove, approve, form, "v0=zz", "-1", fuzzRawHeaders, 0},
		{"", "U0ALICE", ActionApprove, approve, form, "", "9223372036854775807", fuzzRawHeaders, 0},
		{`{"type":"block_actions","user":{"id":"U0ALICE"},"actions":[]}`, "", "", "", form, "", "", fuzzSigned, 0},
		{`{"type":"view_submission","user":{"id":"U0ALICE"}}`, "", "", "", form, "", "", fuzzSigned, 0},
		{`{"type":"block_actions","actions":[{"action_id":"airlock_approve","block_id":"b","value":"` + approve + `"},{"action_id":"airlock_deny","value":"` + deny + `"}],"user":{"id":"U0ALICE"}}`, "", "", "", form, "", "", fuzzSigned, 0},
		{`{"type":"block_actions","actions":[{"action_id":"airlock_approve","value":"` + approve + `"}],"user":{"id":"U0ALICE"}}`, "", "", "", form, "", "", fuzzSigned, 0},
		{`{"type":"block_actions","actions":{"x":1},"message":{"blocks":[{"type":"nope"}]}}`, "", "", "", form, "", "", fuzzSigned, 0},
		{submission("U0BOB", CallbackReason, reasonMeta, "the DB is the bottleneck"), "", "", "", form, "", "", fuzzSigned, 0},
		{submission("U0BOB", CallbackReason, stopMeta, "  change freeze\n"), "", "", "", form, "", "", fuzzSigned, 0xff},
		{submission("U0BOB", CallbackReason, reasonMeta, " \t\n"), "", "", "", form, "", "", fuzzSigned, 0}, // blank reason
		{submission("U0BOB", CallbackReason, "r1|C|1|"+approve, "x"), "", "", "", form, "", "", fuzzSigned, 0},
		{submission("U0BOB", "other_view", reasonMeta, "x"), "", "", "", form, "", "", fuzzSigned, 0},
		{submission("", CallbackReason, reasonMeta, "x"), "", "", "", form, "", "", fuzzSigned, 0},
		{submission("U0BOB", CallbackReason, reasonMeta, "x"), "", "", "", form, "", "", fuzzTampered, 3},
		{`{"type":"view_submission","user":{"id":"U0BOB"},"view":{"callback_id":"airlock_reason","private_metadata":"` + reasonMeta + `","state":{"values":{"airlock_reason":7}}}}`, "", "", "", form, "", "", fuzzSigned, 0},
		{"", "U0ALICE", ActionDenyWithReason, deny, form, "", "", fuzzSigned, 0}, // no notifier here: 400
		{"payload=%7B&payload=x", "", "", "", form, "", "", fuzzSigned, 0},       // a raw form body
		{"%zz", "", "", "", form, "", "", fuzzSigned, 0},
		{"{[", "", "", "", form, "", "", fuzzSigned, 0},
	}
	for _, s := range seeds {
		f.Add(s.payload, s.user, s.actionID, s.value, s.contentType, s.sig, s.stamp, s.mode, s.caseMask)
	}
	f.Fuzz(func(t *testing.T, payload, user, actionID, value, contentType, sigHeader, stampHeader string, mode uint8, caseMask uint64) {
		body := fuzzBody(payload, user, actionID, value)
		now := time.Now()
		switch mode % fuzzModes {
		case fuzzSigned, fuzzTampered:
			stampHeader = strconv.FormatInt(now.Unix(), 10)
			sigHeader = sign(testSecret, now.Unix(), body)
			if mode%fuzzModes == fuzzTampered {
				b := []byte(body)
				if len(b) == 0 {
					b = []byte{0}
				} else {
					b[int(caseMask%uint64(len(b)))] ^= 1 + byte(caseMask>>8)%255
				}
				body = string(b)
			}
		case fuzzWrongSecret:
			stampHeader = strconv.FormatInt(now.Unix(), 10)
			sigHeader = sign(testSecret+"x", now.Unix(), body)
		}
		authentic := validSignature(testSecret, sigHeader, stampHeader, body)

		dec := newFakeDecider(1)
		var workflowIDs []string // ServeHTTP decides synchronously
		h, err := NewHandler(HandlerConfig{
			SigningSecret: testSecret,
			Decider: DeciderFunc(func(ctx context.Context, workflowID string, d contract.Decision) (contract.DecisionResult, error) {
				workflowIDs = append(workflowIDs, workflowID)
				return dec.Decide(ctx, workflowID, d)
			}),
			Clock:  func() time.Time { return now },
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()

		send := func(sig string) (int, string) {
			r := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader(body))
			r.Header.Set("Content-Type", contentType)
			r.Header.Set("X-Slack-Signature", sig)
			r.Header.Set("X-Slack-Request-Timestamp", stampHeader)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code, w.Body.String()
		}
		code, answer := send(sigHeader)
		calls, _, _ := dec.snapshot()

		if code >= 500 {
			t.Fatalf("answered %d; the Decider never fails here (authentic=%v)", code, authentic)
		}
		if !authentic {
			if len(calls) > 0 {
				t.Fatalf("a request without a valid signature reached the Decider: %+v", calls)
			}
			if code != http.StatusUnauthorized && code != http.StatusRequestEntityTooLarge {
				t.Fatalf("unsigned request answered %d, want 401", code)
			}
			return
		}
		switch len(calls) {
		case 0:
			if code < 400 && !isViewErrors(answer) {
				t.Fatalf("answered %d %q without deciding anything", code, answer)
			}
		case 1:
			wantID, want, ok := clickOf(body, contentType)
			if !ok {
				t.Fatalf("the Decider was reached by a request that is not a well-formed click: %q", body)
			}
			if got := calls[0]; got != want || workflowIDs[0] != wantID {
				t.Fatalf("decided %+v on %q, the click carried %+v on %q", got, workflowIDs[0], want, wantID)
			}
			if code != http.StatusOK && code != http.StatusForbidden {
				t.Fatalf("answered %d after a decision, want 200 or 403", code)
			}
		default:
			t.Fatalf("one request, %d decisions", len(calls))
		}
		if code == http.StatusUnauthorized || code == http.StatusRequestEntityTooLarge {
			return // never verified: nothing was remembered
		}

		// The same request again is a replay, whatever the case of its hex.
		if again, _ := send(flipHexCase(sigHeader, caseMask)); again != http.StatusConflict {
			t.Errorf("replayed request (signature %q) answered %d, want 409", flipHexCase(sigHeader, caseMask), again)
		}
		if again, _, _ := dec.snapshot(); len(again) != len(calls) {
			t.Errorf("a replayed request reached the Decider: %d decisions, want %d", len(again), len(calls))
		}
	})
}

// FuzzParseButtonValue: any string either fails to parse or is the
// canonical encoding of what it parses to.
func FuzzParseButtonValue(f *testing.F) {
	for _, k := range []contract.DecisionKind{contract.DecisionApprove, contract.DecisionDeny, contract.DecisionStop, contract.DecisionAgree, contract.DecisionDisagree} {
		f.Add(mustButtonValue(f, k))
	}
	f.Add("a1|approve|-1|h|wf")
	f.Add("a1|approve|+1|h|wf")
	f.Add("a1|approve|0|h|wf|with|bars")
	f.Add("a1|approve|0||wf")
	f.Add("a1|approve|0|h|\x7f")
	f.Add("a2|approve|0|h|wf")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseButtonValue(s)
		if err != nil {
			return
		}
		enc, err := v.Encode()
		if err != nil {
			t.Fatalf("%q parsed to %+v, which does not encode: %v", s, v, err)
		}
		if enc != s {
			t.Fatalf("%q parsed to %+v, which encodes as %q", s, v, enc)
		}
		if ActionID(v.Kind) == "" {
			t.Fatalf("%q parsed to unknown decision %q", s, v.Kind)
		}
	})
}

func mustButtonValue(f *testing.F, k contract.DecisionKind) string {
	v, err := ButtonValue{WorkflowID: testWF, ActionIndex: 0, ActionHash: testHash, Kind: k}.Encode()
	if err != nil {
		f.Fatal(err)
	}
	return v
}

// fuzzBody is the request body: a form around payload when it is given
// (payloads starting with "{" are wrapped, anything else is sent raw), or a
// form around a click built from user, actionID and value.
func fuzzBody(payload, user, actionID, value string) string {
	switch {
	case payload == "":
		b, _ := json.Marshal(map[string]any{
			"type":      "block_actions",
			"user":      map[string]any{"id": user, "username": "someone"},
			"container": map[string]any{"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0APPROVE"},
			"channel":   map[string]any{"id": "C0APPROVE"},
			"actions":   []map[string]any{{"action_id": actionID, "block_id": blockActions, "type": "button", "value": value, "action_ts": "1700000000.000100"}},
		})
		return formBody(string(b))
	case strings.HasPrefix(payload, "{"):
		return formBody(payload)
	default:
		return payload
	}
}

// validSignature is the oracle: sig is "v0=" and the hex of the HMAC of
// "v0:<stamp>:<body>" under secret, and stamp is a number.
func validSignature(secret, sig, stamp, body string) bool {
	hexSig, ok := strings.CutPrefix(sig, "v0=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	if _, err := strconv.ParseInt(stamp, 10, 64); err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + stamp + ":" + body))
	return hmac.Equal(got, mac.Sum(nil))
}

// clickOf independently decodes the decision a body may carry: a form with
// one payload holding a block_actions click by a user on exactly one block
// element (slack-go counts an action with a "block_id" string as one), which
// is one of our buttons with a value this package produced for it.
func clickOf(body, contentType string) (string, contract.Decision, bool) {
	if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(contentType)), "application/x-www-form-urlencoded") {
		return "", contract.Decision{}, false
	}
	form, err := url.ParseQuery(body)
	if err != nil || len(form["payload"]) != 1 {
		return "", contract.Decision{}, false
	}
	var p struct {
		Type string `json:"type"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		Actions []json.RawMessage `json:"actions"`
	}
	if err := json.Unmarshal([]byte(form.Get("payload")), &p); err != nil || p.User.ID == "" {
		return "", contract.Decision{}, false
	}
	if p.Type == "view_submission" {
		return submissionOf(form.Get("payload"), p.User.ID)
	}
	if p.Type != "block_actions" {
		return "", contract.Decision{}, false
	}
	var blockActions []json.RawMessage
	for _, raw := range p.Actions {
		var obj map[string]any
		if json.Unmarshal(raw, &obj) == nil {
			if _, ok := obj["block_id"].(string); ok {
				blockActions = append(blockActions, raw)
			}
		}
	}
	if len(blockActions) != 1 {
		return "", contract.Decision{}, false
	}
	var a struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
	}
	if err := json.Unmarshal(blockActions[0], &a); err != nil {
		return "", contract.Decision{}, false
	}
	kind, known := actionKinds[a.ActionID]
	v, err := ParseButtonValue(a.Value)
	if !known || err != nil || v.Kind != kind {
		return "", contract.Decision{}, false
	}
	return v.WorkflowID, contract.Decision{ActionIndex: v.ActionIndex, ActionHash: v.ActionHash, Kind: kind, Approver: p.User.ID, Via: "slack"}, true
}

// flipHexCase changes the letter case of the hex digits of sig selected by
// mask; hex.DecodeString reads the result as the same bytes.
func flipHexCase(sig string, mask uint64) string {
	b := []byte(sig)
	for i := 3; i < len(b) && mask != 0; i++ {
		c := b[i]
		if mask&1 == 1 {
			switch {
			case c >= 'a' && c <= 'f':
				b[i] = c - 'a' + 'A'
			case c >= 'A' && c <= 'F':
				b[i] = c - 'A' + 'a'
			}
		}
		mask >>= 1
	}
	return string(b)
}

// submissionOf independently decodes the decision a reason modal's
// submission carries: our modal, metadata this package produced, and a
// reason that is not blank nor too long once trimmed.
func submissionOf(payload, user string) (string, contract.Decision, bool) {
	var p struct {
		View struct {
			CallbackID      string `json:"callback_id"`
			PrivateMetadata string `json:"private_metadata"`
			State           struct {
				Values map[string]map[string]struct {
					Value string `json:"value"`
				} `json:"values"`
			} `json:"state"`
		} `json:"view"`
	}
	if err := json.Unmarshal([]byte(payload), &p); err != nil || p.View.CallbackID != CallbackReason {
		return "", contract.Decision{}, false
	}
	m, err := ParseReasonMetadata(p.View.PrivateMetadata)
	if err != nil {
		return "", contract.Decision{}, false
	}
	reason := strings.TrimSpace(p.View.State.Values[blockReason][actionReasonText].Value)
	if reason == "" || !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > MaxComment {
		return "", contract.Decision{}, false
	}
	v := m.Value
	return v.WorkflowID, contract.Decision{ActionIndex: v.ActionIndex, ActionHash: v.ActionHash, Kind: v.Kind, Approver: user, Via: "slack", Comment: reason}, true
}

// isViewErrors reports whether an answer is a modal's response_action
// "errors" (the modal stays open; nothing was decided).
func isViewErrors(body string) bool {
	var r struct {
		ResponseAction string            `json:"response_action"`
		Errors         map[string]string `json:"errors"`
	}
	return json.Unmarshal([]byte(body), &r) == nil && r.ResponseAction == "errors" && r.Errors[blockReason] != ""
}
